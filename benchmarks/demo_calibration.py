"""Is the demo's prediction right, and do its intervals mean what they say?

    python benchmarks/demo_calibration.py [--seeds 0 1 2] [--out DIR]

Runs the demo's whole study (`scaling demo --seed K`, each in its own process and runs
directory) for every seed, and prints, per seed, the holdout's measured loss against the
prediction: the relative error and whether the printed 80% and 95% intervals cover it (the
averaged prediction's own, from the laws' bootstraps paired resample by resample), with the
wall time; then the largest error and the coverage counts. Beside them, two alternatives kept
for comparison (BENCHMARKS.md): the mixture intervals the demo printed before (the laws'
bootstrap samples pooled, spanning both forms), and the error of the two laws' plain mean
(equal weights instead of the demo's 1 / backtest error). Each seed is a different study
(other initialisations and data order, so other points and another fit). The FLOPs column is
the training FLOPs of the fitted runs (the holdout, which tests, not counted).

Then the cheaper design of benchmarks/wsd_design.py (each size trained once, WSD, measured
and predicted cooldown branches, at a third of the IsoFLOP study's FLOPs) for the same seeds,
predicting the same holdout run: its FLOPs, and its error with and without the predicted
points. ``--designs isoflop`` runs the IsoFLOP study alone.

An interrupted benchmark resumes: each demo resumes in its own directory. The wall time shown
is that of the pass that finished the demo (kept in the seed's calibration.json); a pass over
a finished demo refits nothing and takes seconds. Not part of CI: 3 seeds take about 25
minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wsd_design


def run_seed(seed: int, out: Path) -> tuple[dict, float | None]:
    """The demo's summary for ``seed`` and the wall time of the pass that finished it."""
    record = out / "calibration.json"
    resumed = (out / "summary.json").is_file()
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "scaling", "demo", "--seed", str(seed), "--out", str(out)]
        + ["--no-progress", "--json"],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"seed {seed}: scaling demo failed ({done.returncode}):\n{done.stderr[-2000:]}")
    if not resumed:
        record.write_text(json.dumps({"wall_s": wall}) + "\n")
    first = json.loads(record.read_text())["wall_s"] if record.is_file() else None
    return json.loads(done.stdout.strip().splitlines()[-1]), first


def covers(interval: list[float] | None, value: float) -> str:
    if not interval:
        return "no interval"
    inside = interval[0] <= value <= interval[1]
    return f"{'yes' if inside else 'no'} [{interval[0]:.3f}, {interval[1]:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here")
    parser.add_argument(
        "--designs", nargs="+", choices=["isoflop", "wsd"], default=["isoflop", "wsd"]
    )
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="demo-calibration-"))

    print(
        "| seed | holdout N | D | predicted | measured | error | 80% covers | 95% covers "
        "| mixture 80% covers | mixture 95% covers | error, equal weights | FLOPs | wall |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|---:|")
    errors, equal_errors = [], []
    counts = {key: 0 for key in ("80", "95", "mixture 80", "mixture 95")}
    for seed in args.seeds:
        summary, wall = run_seed(seed, root / f"seed-{seed}")
        measured, predicted = summary["measured_loss"], summary["predicted_loss"]
        errors.append(measured / predicted - 1)
        by_law = summary["predicted_by_law"]
        equal_errors.append(measured / (sum(by_law.values()) / len(by_law)) - 1)
        cells = {
            "80": covers(summary.get("predicted_interval_80"), measured),
            "95": covers(summary.get("predicted_interval"), measured),
            "mixture 80": covers(summary.get("mixture_interval_80"), measured),
            "mixture 95": covers(summary.get("mixture_interval"), measured),
        }
        for key, cell in cells.items():
            counts[key] += cell.startswith("yes")
        kind = "" if summary.get("interval_kind") == "paired" else " (mixture)"
        print(
            f"| {seed} | {summary['holdout_params']:,} | {summary['holdout_tokens']:,} | "
            f"{predicted:.3f} | {measured:.3f} | {errors[-1]:+.1%} | {cells['80']}{kind} | "
            f"{cells['95']}{kind} | {cells['mixture 80']} | {cells['mixture 95']} | "
            f"{equal_errors[-1]:+.1%} | {training_flops(root / f'seed-{seed}'):.3g} | "
            f"{'-' if wall is None else f'{wall:.0f} s'} |",
            flush=True,
        )
    n = len(args.seeds)
    print()
    print(
        f"largest |error| {max(abs(e) for e in errors):.1%}, mean error {sum(errors) / n:+.1%}; "
        f"80% intervals cover {counts['80']}/{n}, 95% intervals cover {counts['95']}/{n}; "
        f"mixture intervals cover {counts['mixture 80']}/{n} (80%), "
        f"{counts['mixture 95']}/{n} (95%); "
        f"with equal weights largest |error| {max(abs(e) for e in equal_errors):.1%}; "
        f"mean |error| {sum(abs(e) for e in errors) / n:.2%}"
    )
    if "wsd" in args.designs:
        wsd_table(args.seeds, root, errors)


def training_flops(study: Path) -> float:
    """The training FLOPs of a study's fitted runs (branches included), from their results."""
    from scaling import results

    table = results.load(study)
    return float(table.loc[table["branch"] == "final", "flops"].sum())


def training_wall(study: Path) -> float:
    """The wall time its runs' trainings took, branches included (their result.json)."""
    from scaling import results

    table = results.load(study)
    return float(table.loc[table["branch"] == "final", "wall_s"].sum())


def wsd_table(seeds: list[int], root: Path, isoflop_errors: list[float]) -> None:
    """The WSD design beside each seed's IsoFLOP study, predicting the same holdout."""
    print()
    print(
        "| seed | FLOPs | share of IsoFLOP | predicted, measured points | error | 80% covers "
        "| predicted, with predicted points | error | 80% covers | IsoFLOP error | training "
        "| fits |"
    )
    print("|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---:|")
    plain, with_predicted, shares = [], [], []
    for seed, iso_error in zip(seeds, isoflop_errors, strict=True):
        report = wsd_design.run_design(seed, root / f"seed-{seed}")
        measured = report["holdout"]["measured"]
        cells = []
        for key, kept in (("measured_only", plain), ("with_predicted", with_predicted)):
            fit = report[key]
            kept.append(fit["error"])
            cells.append(
                f"{fit['predicted']:.3f} | {fit['error']:+.1%} | "
                f"{covers(fit['interval_80'], measured)}"
            )
        shares.append(report["flops_share"])
        print(
            f"| {seed} | {report['flops']:.3g} | {report['flops_share']:.1%} | {cells[0]} | "
            f"{cells[1]} | {iso_error:+.1%} | {training_wall(root / f'seed-{seed}' / 'wsd'):.0f} s "
            f"| {report['wall_s'] - report['train_s']:.0f} s |",
            flush=True,
        )
    n = len(seeds)

    def mean_abs(values: list[float]) -> str:
        return f"{sum(abs(e) for e in values) / n:.2%}"

    print()
    print(
        f"mean |error| over {n} seeds: IsoFLOP {mean_abs(isoflop_errors)}; WSD design "
        f"{mean_abs(plain)} (measured points), {mean_abs(with_predicted)} (with predicted "
        f"points) at {sum(shares) / n:.1%} of the IsoFLOP study's FLOPs"
    )


if __name__ == "__main__":
    main()
