"""Approach 3 by variable projection against the default multistart.

    python benchmarks/fit_varpro.py [--repeats 5] [--laws 40]

Both are ``ParametricLaw(solver=...)`` fitted in this process, alternating (multistart first
in even repeats, varpro first in odd ones), so that a busy moment of the machine falls on both.
Timed: Epoch AI's 245 Chinchilla points and the 240 they fit (the 5 of highest loss dropped),
and points of a known law (``fit_speed.make_points``: 1% noise) at 240, 2,400 and 24,000
points. Reported: the median time of each, multistart/varpro, the objectives, varpro's relative
difference (target: within 1e-8), the largest relative difference of a parameter. Then the
failures: random laws fitted by both, counted where varpro's objective is above the
multistart's by more than 1e-8 relative (worse), below (better), or where one refuses the fit
and the other does not. Two families: terms of 0.1 to 1.5 of the loss at the median point
(as language models have), and "wide", terms up to 150 times that (an E hidden under them).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import pandas as pd
from fit_speed import make_points

from scaling import published
from scaling.fitting import FitError, prepare_points
from scaling.fitting.parametric import SOLVERS, ParametricLaw

TOLERANCE = 1e-8
KINDS = ("same", "worse", "better", "refused by one", "refused by both")


def timed_sets() -> list[tuple[str, object, int]]:
    """(name, points, repeats divisor): the large set runs once per few repeats."""
    epoch = published.load("chinchilla")
    return [
        ("Epoch AI, 245 points", prepare_points(epoch), 1),
        ("Epoch AI, 240 points (5 highest dropped)", prepare_points(epoch, drop_highest=5), 1),
        ("known law, 240 points", make_points(240), 1),
        ("known law, 2,400 points", make_points(2400), 2),
        ("known law, 24,000 points", make_points(24000), 5),
    ]


def race(points, repeats: int) -> dict[str, tuple[list[float], ParametricLaw]]:
    times: dict[str, list[float]] = {m: [] for m in SOLVERS}
    laws: dict[str, ParametricLaw] = {}
    for repeat in range(repeats):
        for solver in SOLVERS if repeat % 2 == 0 else SOLVERS[::-1]:
            start = time.perf_counter()
            laws[solver] = ParametricLaw(solver=solver).fit(points)
            times[solver].append(time.perf_counter() - start)
    return {m: (times[m], laws[m]) for m in SOLVERS}


def random_points(rng: np.random.Generator, wide: bool) -> pd.DataFrame:
    n = int(rng.choice([30, 80, 240, 600]))
    budgets = np.repeat(np.logspace(17, 22, 6), n // 6)
    N = np.sqrt(budgets / 120) * np.exp(rng.uniform(-2, 2, budgets.size))
    D = budgets / (6 * N)
    low, high = (0.05, 1.5) if wide else (0.15, 0.9)
    alpha, beta = rng.uniform(low, high, 2)
    size_a, size_b = rng.uniform(0.1, 1.5, 2) * (np.exp(rng.uniform(-5, 5, 2)) if wide else 1)
    loss = rng.uniform(0.5, 3) + size_a * (np.median(N) / N) ** alpha
    loss = loss + size_b * (np.median(D) / D) ** beta
    noise = rng.choice([0.001, 0.01, 0.03])
    return pd.DataFrame(
        {"params": N, "tokens": D, "loss": loss * np.exp(rng.normal(0, noise, N.size))}
    )


def outcome(points) -> tuple[str, float, dict[str, float]]:
    """(same | worse | better | refused by one | refused by both, varpro's objective relative
    to the multistart's less 1, the seconds of each)."""
    found, seconds = {}, {}
    for solver in SOLVERS:
        start = time.perf_counter()
        try:
            found[solver] = ParametricLaw(solver=solver).fit(points).objective_
        except FitError:
            found[solver] = None
        seconds[solver] = time.perf_counter() - start
    multistart, varpro = found["multistart"], found["varpro"]
    if multistart is None or varpro is None:
        kind = "refused by both" if multistart is varpro else "refused by one"
        return kind, 0.0, seconds
    gap = (varpro - multistart) / multistart
    kind = "worse" if gap > TOLERANCE else "better" if gap < -TOLERANCE else "same"
    return kind, gap, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--laws", type=int, default=40, help="random laws of each family")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; load average {load:.2f}")
    columns = (
        "points", "repeats", "multistart s", "varpro s", "multistart/varpro",
        "objective multistart", "objective varpro", "varpro - multistart (rel.)",
        "parameters (rel.)",
    )  # fmt: skip
    print(f"| {' | '.join(columns)} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, points, divisor in timed_sets():
        repeats = max(1, args.repeats // divisor)
        (ms_times, ms), (vp_times, vp) = race(points, repeats).values()
        ms_s, vp_s = statistics.median(ms_times), statistics.median(vp_times)
        gap = (vp.objective_ - ms.objective_) / ms.objective_
        params = max(abs(vp.params_[k] / ms.params_[k] - 1) for k in ms.params_)
        print(
            f"| {name} | {repeats} | {ms_s:.3f} | {vp_s:.3f} | {ms_s / vp_s:.1f} | "
            f"{ms.objective_:.12g} | {vp.objective_:.12g} | {gap:+.1e} | {params:.1e} |"
        )
    print(f"\nrandom laws, {args.laws} of each family (objectives within {TOLERANCE:g}: same)")
    columns = ("family", *KINDS, "largest gap (rel.)", "multistart s", "varpro s")
    print(f"| {' | '.join(columns)} |")
    print("|---|---|---|---|---|---|---|---|---|")
    for family, wide in (("terms 0.1-1.5 of the loss", False), ("wide: terms up to 150x", True)):
        rng = np.random.default_rng(0)
        counts = dict.fromkeys(KINDS, 0)
        total = dict.fromkeys(SOLVERS, 0.0)
        largest = 0.0
        for _ in range(args.laws):
            kind, gap, seconds = outcome(random_points(rng, wide))
            counts[kind] += 1
            largest = max(largest, gap, key=abs)
            for solver in SOLVERS:
                total[solver] += seconds[solver]
        print(
            f"| {family} | {' | '.join(str(c) for c in counts.values())} | {largest:+.1e} | "
            f"{total['multistart']:.1f} | {total['varpro']:.1f} |"
        )
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
