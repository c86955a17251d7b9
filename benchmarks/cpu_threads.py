"""Does a CPU run survive a busy machine? OpenMP's wait policy, idle and beside a competitor.

    python benchmarks/cpu_threads.py [--steps 200]

Trains one tiny run (30k parameters, 1024-token batches, a checkpoint every 10 steps: the
launcher tests' runs) with `scaling train` in a fresh process, with the cores' threads
(OMP_NUM_THREADS = cores) under each OpenMP wait policy: ACTIVE (libgomp's default: a thread
that waits at the end of a parallel region spins) and PASSIVE (it sleeps; what `scaling` sets
unless the environment says otherwise), on an idle machine and beside one competing process
that keeps one core busy. Each time is the median of three runs; the ratios are against
ACTIVE on the idle machine, measured in the same call. Not part of CI: about 5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = {
    "model": {"vocab_size": 512, "d_model": 32, "n_layers": 1, "n_heads": 2, "max_seq_len": 64},
    "data": {"source": "builtin:python-stdlib", "max_bytes": 1_500_000, "vocab_size": 512},
    "train": {
        "seq_len": 64,
        "batch_tokens": 1024,
        "micro_batch_size": 8,
        "eval_interval": 0,
        "eval_windows": 16,
        "log_interval": 1,
        "checkpoint_interval": 10,
    },
}


def timed_run(config: Path, out: Path, policy: str) -> float:
    env = {**os.environ, "OMP_WAIT_POLICY": policy, "OMP_NUM_THREADS": str(os.cpu_count())}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "scaling", "train", str(config), "--out", str(out)]
        + ["--no-progress"],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(f"scaling train failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="cpu-threads-"))
    os.environ.setdefault("SCALING_CACHE", str(root / "cache"))
    config = root / "config.json"
    train = {**CONFIG["train"], "tokens": args.steps * 1024}
    config.write_text(json.dumps({**CONFIG, "train": train}))
    timed_run(config, root / "warm", "PASSIVE")  # prepares the corpus once, outside the timing

    def median(policy: str, label: str) -> float:
        return statistics.median(
            timed_run(config, root / f"{label}-{policy}-{i}", policy) for i in range(args.repeats)
        )

    times = {}
    for label in ("idle", "busy"):
        competitor = None
        if label == "busy":  # one process that keeps one core busy, as another job would
            competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            for policy in ("ACTIVE", "PASSIVE"):
                times[label, policy] = median(policy, label)
        finally:
            if competitor is not None:
                competitor.kill()
    reference = times["idle", "ACTIVE"]
    print(f"| machine | OMP_WAIT_POLICY | {args.steps} steps, wall (process included) | ratio |")
    print("|---|---|---:|---:|")
    for (label, policy), seconds in times.items():
        print(f"| {label} | {policy} | {seconds:.1f} s | {seconds / reference:.2f} |")


if __name__ == "__main__":
    main()
