"""Does `scaling predict --optimal-schedule` find the schedule Luo et al. published?

    python benchmarks/optimal_schedule.py [--sizes 25M 100M 400M]

For each of the paper's models: the multi-power law at its published parameters
(thu-yao-01-luo/MultiPowerLaw, commit 8da9f19, src/config.py PARAMS), the set-up of its
src/optimization.py (24000 steps, warm-up 2160 from lr 0, peak 3e-4, min lr 1e-10, Adam lr
5e-9, 10000 iterations), optimised by `fitting.optimal_schedule`; compared with the
repository's optimized_schedules/*.npy (bundled every 100th step:
`scaling.published.multipower.optimal_schedules`):

- the largest and mean |difference| of the two schedules' lr at those steps, over the peak;
- the steps where each first falls below half the peak;
- the repository's own objective (ported below: the law without the warm-up's lr changes)
  on our schedule, against its logged "Final Loss" for its schedule;
- the law's final loss of our schedule against the paper's cosine (to 3e-5) and WSD
  (cooldown from step 20000 to 3e-5) runs' schedules, and the constant lr.

About 2 minutes a size on 2 idle cores. Not part of CI.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from scaling.fitting import MultiPowerLaw
from scaling.fitting.optimal_schedule import final_loss, optimal_schedule
from scaling.published import multipower


def their_objective(params: dict[str, float], eta: np.ndarray, peak: float, warmup: int) -> float:
    """src/optimization.py's ``pred`` for the lr ``eta`` after the warm-up: the reductions
    δ from the peak, the warm-up's area as 0.5·peak·warmup, no warm-up term in the drop."""
    L0, A, alpha, B, C, beta, gamma = (params[k] for k in MultiPowerLaw.parameters)
    delta = np.concatenate([[peak - eta[0]], eta[:-1] - eta[1:]])
    lr_sum = np.concatenate([[0.0], np.cumsum(eta) + 0.5 * peak * warmup])
    drop = np.sum(delta * (1 - (1 + C * eta**-gamma * (lr_sum[-1] - lr_sum[:-1])) ** -beta))
    return float(L0 + A * lr_sum[-1] ** -alpha - B * drop)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(multipower.SIZES))
    args = parser.parse_args()
    published = multipower.optimal_schedules()
    setup = published["setup"]
    steps, warmup, peak = setup["steps"], setup["warmup"], setup["peak_lr"]
    print(
        "| model | max |Δlr| / peak | mean |Δlr| / peak | below peak/2 from step (ours, theirs) "
        "| their objective, ours | their objective, theirs (logged) | law: optimal | cosine "
        "| WSD 20000-24000 | constant | wall |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        params = published_params(size)
        law = MultiPowerLaw.from_params(params)
        started = time.perf_counter()
        found = optimal_schedule(
            law,
            steps,
            peak,
            warmup,
            iterations=setup["iterations"],
            min_lr=setup["min_lr"],
            adam_lr=setup["adam_lr"],
            warmup_lr=np.linspace(0, peak, warmup),
        )
        wall = time.perf_counter() - started
        theirs = np.array(published["lr_every_100_steps_from_2160"][size])
        ours = found.lr[warmup:]
        at = list(range(0, len(ours), 100)) + [len(ours) - 1]
        gap = np.abs(ours[at] - theirs) / peak
        half_ours = warmup + int(np.argmax(ours < peak / 2))
        half_theirs = warmup + crossing(np.array(at), theirs, peak / 2)
        law_at = {
            name: final_loss(params, multipower.schedule(name))[0]
            for name in ("cosine_24000", "wsd_20000_24000", "constant_24000")
        }
        print(
            f"| {size} | {gap.max():.2%} | {gap.mean():.3%} | {half_ours}, {half_theirs:.0f} | "
            f"{their_objective(params, ours, peak, warmup):.5f} | "
            f"{published['final_loss_their_objective'][size]:.5f} | {found.loss:.5f} | "
            f"{law_at['cosine_24000']:.5f} | {law_at['wsd_20000_24000']:.5f} | "
            f"{law_at['constant_24000']:.5f} | {wall:.0f} s |",
            flush=True,
        )


def crossing(steps: np.ndarray, lr: np.ndarray, level: float) -> float:
    """The step where the sampled, non-increasing ``lr`` first falls below ``level``, joined
    linearly between the samples either side."""
    i = int(np.argmax(lr < level))
    (s0, s1), (a, b) = steps[i - 1 : i + 1], lr[i - 1 : i + 1]
    return float(s0 + (s1 - s0) * (a - level) / (a - b))


def published_params(size: str) -> dict[str, float]:
    """The paper's fitted parameters for ``size`` (its README and src/config.py PARAMS)."""
    import json
    from importlib.resources import files

    text = (files("scaling.published") / "multipower.json").read_text()
    return json.loads(text)["published_fit"]["params"][size]


if __name__ == "__main__":
    main()
