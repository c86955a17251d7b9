"""Does a CPU run survive a busy machine? OpenMP's wait policy, idle and beside a competitor.

    python benchmarks/cpu_threads.py [--steps 200]

Trains one tiny run (30k parameters, 1024-token batches, a checkpoint every 10 steps: the
launcher tests' runs) with `scaling train` in a fresh process, with the cores' threads
(OMP_NUM_THREADS = cores) under each OpenMP wait policy (SETTINGS: libgomp's own, a thread
waiting at the end of a parallel region spins a while then sleeps; ACTIVE, it spins; PASSIVE,
it sleeps) and with one thread, on an idle machine and on one whose every core another
process keeps busy (a shared machine). Each time is the median of three runs; the
ratios are against the unset policy on the idle machine, measured in the same call. Not part
of CI: about 5 minutes.
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


SETTINGS = {  # the environment each run gets beside OMP_NUM_THREADS = cores
    "unset (libgomp: spin a while, then sleep)": {},
    "OMP_WAIT_POLICY=ACTIVE (spin)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "OMP_WAIT_POLICY=PASSIVE (sleep)": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one thread (OMP_NUM_THREADS=1)": {"OMP_NUM_THREADS": "1"},
}


def timed_run(config: Path, out: Path, setting: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env = {**env, "OMP_NUM_THREADS": str(os.cpu_count()), **SETTINGS[setting]}
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
    first = next(iter(SETTINGS))
    timed_run(config, root / "warm", first)  # prepares the corpus once, outside the timing

    def median(setting: str, label: str) -> float:
        return statistics.median(
            timed_run(config, root / f"{label}-{len(times)}-{i}", setting)
            for i in range(args.repeats)
        )

    times = {}
    for label in ("idle", "busy"):
        competitors: list[subprocess.Popen] = []
        if label == "busy":  # every core busy with another job, as on a shared machine
            competitors = [
                subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(os.cpu_count() or 1)
            ]
        try:
            for setting in SETTINGS:
                times[label, setting] = median(setting, label)
        finally:
            for competitor in competitors:
                competitor.kill()
    reference = times["idle", first]
    print(f"| machine | threads | {args.steps} steps, wall (process included) | ratio |")
    print("|---|---|---:|---:|")
    for (label, setting), seconds in times.items():
        print(f"| {label} | {setting} | {seconds:.1f} s | {seconds / reference:.2f} |")


if __name__ == "__main__":
    main()
