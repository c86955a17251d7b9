"""Peak memory and time of `scaling fit POINTS.csv --law parametric` as the points grow.

    python benchmarks/fit_memory.py [--sizes 20000,200000,1000000] [--seed 0]

For each size, a CSV of (params, tokens, loss) rows drawn from Chinchilla's law with 1% noise
(the points of fit_speed.py, more of them) is fitted by `python -m scaling fit` in a child
process of its own; the child's peak resident memory comes from the operating system
(``os.wait4``'s ru_maxrss), so it counts everything the command does: reading the CSV,
preparing the points, scoring the paper's 4500 starts, L-BFGS from the best 64. Reports wall
time, the child's CPU time (user + system: what the load of other processes sharing the cores
does not inflate), peak RSS and the fitted parameters beside the true ones, and the load
average while each fit ran. Target: peak RSS under 2 GB at 1M rows, growing linearly with
the rows (the starts are scored in blocks of a fixed size, whatever the number of starts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fit_speed import TRUTH, make_points  # noqa: E402

NAMES = ("E", "A", "B", "alpha", "beta")


def fit_in_child(csv: Path) -> tuple[float, float, float, dict]:
    """(wall seconds, CPU seconds, peak RSS in MB, the fit's JSON report) of `scaling fit`
    on ``csv``."""
    command = [sys.executable, "-m", "scaling", "fit", str(csv), "--law", "parametric", "--json"]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # read the pipes in full before reaping the child: wait4 returns this child's own usage
    stdout, stderr = child.stdout.read(), child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"scaling fit on {csv} exited {child.returncode}: {stderr.strip()}")
    peak_mb = usage.ru_maxrss / 1024  # Linux reports kilobytes
    return seconds, usage.ru_utime + usage.ru_stime, peak_mb, json.loads(stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,200000,1000000")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; Chinchilla's law, 1% noise"
    )
    truth = " | ".join(f"{TRUTH[k]:.6g}" for k in NAMES)
    print("| rows | CSV | wall s | CPU s | load | peak RSS | E | A | B | alpha | beta |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| truth | | | | | | {truth} |")
    with tempfile.TemporaryDirectory() as folder:
        for n in sizes:
            csv = Path(folder) / f"points_{n}.csv"
            make_points(n, args.seed).to_csv(csv, index=False)
            seconds, cpu, peak_mb, report = fit_in_child(csv)
            load = os.getloadavg()[1]  # 5-minute average: over most of the fit
            fitted = " | ".join(f"{report['params'][k]:.6g}" for k in NAMES)
            size_mb = csv.stat().st_size / 1e6
            print(
                f"| {n:,} | {size_mb:.1f} MB | {seconds:.1f} | {cpu:.1f} | {load:.1f} | "
                f"{peak_mb:,.0f} MB | {fitted} |",
                flush=True,
            )
            csv.unlink()
    print("\nload: the machine's 5-minute load average when the fit ended (2 cores)")


if __name__ == "__main__":
    main()
