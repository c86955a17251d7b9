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
(other initialisations and data order, so other points and another fit).

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
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="demo-calibration-"))

    print(
        "| seed | holdout N | D | predicted | measured | error | 80% covers | 95% covers "
        "| mixture 80% covers | mixture 95% covers | error, equal weights | wall |"
    )
    print("|---:|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|")
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
            f"{equal_errors[-1]:+.1%} | {'-' if wall is None else f'{wall:.0f} s'} |",
            flush=True,
        )
    n = len(args.seeds)
    print()
    print(
        f"largest |error| {max(abs(e) for e in errors):.1%}, mean error {sum(errors) / n:+.1%}; "
        f"80% intervals cover {counts['80']}/{n}, 95% intervals cover {counts['95']}/{n}; "
        f"mixture intervals cover {counts['mixture 80']}/{n} (80%), "
        f"{counts['mixture 95']}/{n} (95%); "
        f"with equal weights largest |error| {max(abs(e) for e in equal_errors):.1%}"
    )


if __name__ == "__main__":
    main()
