"""``--optimum akima`` against the other IsoFLOP estimators on points from a known law, and on
Porian et al. (2024)'s published IsoFLOP points against their published optima and exponents.

    python benchmarks/porian_check.py [--data DIR] [--seeds 5]

Known law: Chinchilla's L(N, D) (E 1.69, A 406.4, B 410.7, α 0.34, β 0.28; a = 0.4516) at 7
budgets 1e18-1e21 on one ladder of sizes 8 a decade, each budget training the sizes within
±half (ln N) of a centre that drifts across the budgets from -drift to +drift off the true
optimum, with Gaussian noise of σ added to each loss; per scenario, the error of a of each
estimator: its mean and its largest over ``--seeds`` draws of the noise.

Published points (only with ``--data``): DIR holds three CSVs exported from their repository's
published summaries (github.com/formll/resolving-scaling-law-discrepancies at
0dc60d91b8a525858a3067fc9e4a46ff5374cc6f, ``data/summary_df*.pickle.xz``, last changed in
859f146). They are not bundled: the repository
states no licence for its data, and the pickles run code when loaded (export them in a sandbox).

- ``porian_published_points.csv``: file, config, flops, n, t, loss. Per configuration and
  budget, the ``data`` frame's ``orig_n``, ``orig_t``, ``orig_loss``: the points their estimator
  takes.
- ``porian_published_optima.csv``: file, config, flops, k, grid_argmin_n (``n_interp[opt_ind]``),
  n_star_median (``median(n_stars)``), n_valid (``len(n_stars)``), n_star_std.
- ``porian_published_fits.csv``: file, config, a, b (``fit_results['bs_median_weighted']``
  ``n_exponent``, ``t_exponent``), a_lo, a_hi (95% from ``bootstrap_weighted``).

Each configuration is fitted with their noise level (``configs.py``: 0.01 for OpenWebText2,
0.002 for RefinedWeb). Printed per configuration: the budgets kept (ours/theirs), the largest
deviation of the noise-free grid argmin and of the median N* from theirs, a against theirs, the
range of a over ``--seeds`` seeds (the replicates' draws; theirs are one draw, seed 42), our
seed-noise interval against theirs, b against theirs, and for contrast a from
``--optimum bootstrap`` and ``parabola``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.fitting.errors import FitError
from scaling.fitting.isoflop import IsoFLOPLaw


def porian_noise(config: str) -> float:
    """The σ their code adds for this configuration's dataset (as their code applies it)."""
    return 0.01 if config.startswith("owt2") else 0.002


CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
TRUE_A = CHINCHILLA["beta"] / (CHINCHILLA["alpha"] + CHINCHILLA["beta"])
SCENARIOS = [  # (half, drift, σ)
    (2.5, 1.2, 0.0),
    (2.5, 1.2, 0.0005),
    (2.5, 1.2, 0.001),
    (1.5, 0.8, 0.0),
    (1.5, 0.8, 0.0005),
    (1.5, 0.8, 0.002),
    (1.5, 0.0, 0.002),
]
ESTIMATORS = ("akima", "bootstrap", "parabola")


def ladder(half: float, drift: float, noise: float, seed: int) -> pd.DataFrame:
    """IsoFLOP points of the known law (see the module's docstring)."""
    p = CHINCHILLA
    rng = np.random.default_rng(seed)
    sizes = 10 ** np.arange(6, 12, 1 / 8)
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    rows, budgets = [], np.logspace(18, 21, 7)
    for C, shift in zip(budgets, np.linspace(-drift, drift, len(budgets)), strict=True):
        centre = np.log(G * (C / 6) ** TRUE_A) + shift
        for N in sizes[np.abs(np.log(sizes) - centre) <= half]:
            D = C / (6 * N)
            loss = p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]
            loss += rng.normal(0, noise)
            rows.append({"params": N, "tokens": D, "flops": C, "budget": C, "loss": loss})
    return pd.DataFrame(rows)


def synthetic(seeds: int) -> None:
    rows = []
    for half, drift, noise in SCENARIOS:
        errors: dict[str, list[float]] = {m: [] for m in ESTIMATORS}
        for seed in range(seeds if noise else 1):
            points = ladder(half, drift, noise, seed)
            for m in ESTIMATORS:
                errors[m].append(IsoFLOPLaw(budget_optimum=m).fit(points).params_["a"] - TRUE_A)
        row = {"±half": half, "drift": drift, "σ": noise, "sizes/budget": len(points) // 7}
        for m, e in errors.items():
            row[f"{m} mean"] = f"{np.mean(e):+.4f}"
            row[f"{m} max |·|"] = f"{np.max(np.abs(e)):.4f}"
        rows.append(row)
    print(f"Error of a (true {TRUE_A:.4f}) on points of a known law, {seeds} draws of the noise")
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(pd.DataFrame(rows).to_string(index=False))
    print()


def fit(points: pd.DataFrame, **settings) -> IsoFLOPLaw | None:
    frame = pd.DataFrame(
        {
            "params": points["n"],
            "tokens": points["t"],
            "flops": points["flops"],
            "budget": points["flops"],
            "loss": points["loss"],
        }
    )
    try:
        return IsoFLOPLaw(flops_per_param_token=6.0, **settings).fit(frame)
    except FitError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="folder of the three CSVs (see above)")
    parser.add_argument("--seeds", type=int, default=5, help="draws of noise, seeds of a")
    args = parser.parse_args()
    start = time.perf_counter()
    synthetic(args.seeds)
    if args.data is None:
        took = time.perf_counter() - start
        print(f"no --data: the published points were not compared; {took:.0f} s")
        return
    points = pd.read_csv(args.data / "porian_published_points.csv")
    optima = pd.read_csv(args.data / "porian_published_optima.csv")
    fits = pd.read_csv(args.data / "porian_published_fits.csv")
    rows = []
    for (name, config), group in points.groupby(["file", "config"], sort=False):
        noise = porian_noise(config)
        law = fit(group, budget_optimum="akima", seed_noise=noise)
        ours = pd.DataFrame(law.details["budgets"]).set_index("budget")
        theirs = optima[(optima["file"] == name) & (optima["config"] == config)]
        theirs = theirs.set_index("flops")
        ours = ours.reindex(theirs.index)
        used = ours["used"].fillna(False).astype(bool)
        kept = theirs["n_star_median"].notna()
        both = used & kept
        grid = (ours["grid_params"][both] / theirs["grid_argmin_n"][both] - 1).abs().max()
        median = (ours["params"][both] / theirs["n_star_median"][both] - 1).abs().max()
        seeds = [
            fit(group, budget_optimum="akima", seed_noise=noise, seed=s).params_["a"]
            for s in range(1, args.seeds)
        ] + [law.params_["a"]]
        published = fits[(fits["file"] == name) & (fits["config"] == config)].iloc[0]
        interval = law.details["seed_noise_intervals"]["a"]
        others = {m: fit(group, budget_optimum=m) for m in ("bootstrap", "parabola")}
        rows.append(
            {
                "config": config,
                "σ": noise,
                "budgets": f"{int(used.sum())}/{int(kept.sum())}",
                "same budgets": bool((used == kept).all()),
                "grid N* dev": f"{grid:.1e}",
                "median N* dev": f"{median:.2%}",
                "a": f"{law.params_['a']:.4f}",
                "a published": f"{published['a']:.4f}",
                "Δa": f"{law.params_['a'] - published['a']:+.4f}",
                f"a over {args.seeds} seeds": f"{min(seeds):.4f}-{max(seeds):.4f}",
                "interval": f"[{interval[0]:.3f}, {interval[1]:.3f}]",
                "published": f"[{published['a_lo']:.3f}, {published['a_hi']:.3f}]",
                "Δb": f"{law.params_['b'] - published['b']:+.4f}",
                **{
                    f"Δa {m}": f"{o.params_['a'] - published['a']:+.4f}" if o else "no fit"
                    for m, o in others.items()
                },
            }
        )
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_string(index=False))
    for column in ("Δa", "Δa bootstrap", "Δa parabola", "Δb"):
        values = pd.to_numeric(table[column], errors="coerce").abs()
        print(f"{column}: mean |·| {values.mean():.4f}, max {values.max():.4f}")
    print(f"{len(table)} configurations; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
