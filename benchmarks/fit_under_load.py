"""Fit speed on a busy machine, with the fits' BLAS limited to one thread (the default) and, for
reference, with OpenBLAS's thread per core.

    python benchmarks/fit_under_load.py [--bootstrap 1000] [--reference-bootstrap 200]

Approach 3 as `scaling fit` runs it (the paper's 4500 starts scored at once, L-BFGS from the
best 64), then the fit with its bootstrap refits, each idle and with a competing process busy
on every core. Targets: busy / idle <= 2 for the fit with its bootstrap; the fit < 2 s idle.
Same points as fit_speed.py (240, Chinchilla's law with 1% noise); the same result either way.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from fit_speed import make_points  # noqa: E402

from scaling.fitting import base  # noqa: E402
from scaling.fitting.parametric import fit_parametric  # noqa: E402


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def burners(n: int) -> list[subprocess.Popen]:
    """``n`` processes spinning on a core each: the competing load."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def measure(df, bootstrap: int) -> dict[str, float]:
    full, law = timed(lambda: fit_parametric(df))
    boot, booted = timed(lambda: fit_parametric(df, bootstrap_samples=bootstrap, seed=0))
    return {"full": full, "bootstrap": boot, "alpha": law.params_["alpha"], "law": booted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--reference-bootstrap", type=int, default=200)
    args = parser.parse_args()
    df = make_points(240)
    cores = os.cpu_count() or 1
    rows = []
    for threads, label, n_boot in (
        (1, "one BLAS thread (default)", args.bootstrap),
        (None, "a BLAS thread per core", args.reference_bootstrap),
    ):
        base.FIT_BLAS_THREADS = threads
        idle = measure(df, n_boot)
        load = burners(cores)
        try:
            busy = measure(df, n_boot)
        finally:
            for process in load:
                process.kill()
                process.wait()
        same = idle["law"].params_ == busy["law"].params_
        rows.append((label, n_boot, idle, busy, same))
    print(f"machine: {platform.machine()}, {cores} cores, {cores} competing processes when busy")
    print("| BLAS in the fits | fit idle / busy | fit + bootstrap idle / busy | busy/idle | same |")
    print("|---|---|---|---|---|")
    for label, n_boot, idle, busy, same in rows:
        print(
            f"| {label} | {idle['full']:.2f} s / {busy['full']:.2f} s | "
            f"{n_boot} refits: {idle['bootstrap']:.1f} s / {busy['bootstrap']:.1f} s | "
            f"{busy['bootstrap'] / idle['bootstrap']:.2f} | {'yes' if same else 'no'} |"
        )
    ours = rows[0]
    print(
        f"\nbusy/idle with one BLAS thread: {ours[3]['bootstrap'] / ours[2]['bootstrap']:.2f} "
        f"(target <= 2); full fit idle {ours[2]['full']:.2f} s (target < 2 s)"
    )


if __name__ == "__main__":
    main()
