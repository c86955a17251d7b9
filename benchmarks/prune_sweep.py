"""Does `scaling launch --prune` pick the learning rate the whole sweep picks, for less?

    python benchmarks/prune_sweep.py [--out DIR] [--rungs 0.125,0.25,0.5,0.75] [--level 0.8]
                                     [--seed 0] [--name pruned]

The design of sweeps/hparams.toml (an hparams grid: learning rate x batch size at the
budget's 20-tokens-per-parameter size, cosine schedule) at CPU scale: one budget of 1e11
FLOPs, the demo's byte-level tiny model (10k parameters at 100 tokens per parameter, as the
demo centres its grid), five learning rates (hparams.toml's 1e-3..8e-3 doubled twice over,
shifted up x2.5 to where these tiny models train best, the demo's 1e-2) and two batch sizes
(1024 and 2048 tokens). Every step's train loss is logged (`log_interval = 1`): the pruner's
forecasts read it.

Plans the grid twice (OUT/unpruned, OUT/pruned), launches the first plainly and the second
with --prune, each through the CLI in a process of its own, then prints per run the final
eval loss of each launch (or where it was pruned), the FLOPs each spent (the trainer's own
count, from result.json), and the best learning rate of each. Resumable: each launch resumes.
Not part of CI: about 25 minutes on 2 idle cores (the pruned launch, 3 of them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from demo_sections import demo_sections

SPEC = """# sweeps/hparams.toml's design (lr x batch at each budget's centre size) at CPU scale
[sweep]
name = "hparams-cpu"
seed = {seed}
flop_formula = "6N"
size = "total"
min_steps = 20
tokens_per_param_range = [2, 2000]

{demo}[train]
seq_len = 64
micro_batch_size = 16
schedule = "cosine"
warmup_fraction = 0.05
eval_interval = 0
eval_windows = 1024
log_interval = 1
checkpoint_interval = 100

[[grid]]
kind = "hparams"
budgets = [1e11]
centre = "100"
lr = [2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2]
batch_tokens = [1024, 2048]
"""


def scaling(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "scaling", *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        sys.exit(f"scaling {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def outcome(runs: Path) -> dict[str, dict]:
    """run id -> lr, batch, status, final eval loss, FLOPs spent, step reached."""
    rows = {}
    for config in sorted((runs / "runs").glob("*/config.json")):
        train = json.loads(config.read_text())["train"]
        result = json.loads((config.parent / "result.json").read_text())
        rows[config.parent.name] = {
            "lr": train["lr"],
            "batch": train["batch_tokens"],
            "status": result["status"],
            "loss": result.get("final_eval_loss"),
            "flops": result.get("flops", 0.0),
            "steps": result.get("steps"),
        }
    return rows


def best(rows: dict[str, dict]) -> dict:
    done = [r for r in rows.values() if r["status"] == "done"]
    return min(done, key=lambda r: r["loss"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "prune-bench")
    parser.add_argument("--rungs", default="0.125,0.25,0.5,0.75")
    parser.add_argument("--level", default="0.8", help="--prune-level")
    parser.add_argument("--name", default="pruned", help="the pruned launch's folder in OUT")
    parser.add_argument("--seed", type=int, default=0, help="[sweep] seed: another sweep")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    spec = args.out / "spec.toml"
    spec.write_text(SPEC.format(seed=args.seed, demo=demo_sections("model", "data")))
    unpruned, pruned = args.out / "unpruned", args.out / args.name
    for runs in (unpruned, pruned):
        scaling("plan", str(spec), "--out", str(runs))
    print(f"launching {unpruned} (every run to its end)", flush=True)
    scaling("launch", str(unpruned), "--no-progress")
    flags = ["--prune", "--rungs", args.rungs, "--prune-level", args.level]
    print(f"launching {pruned} with {' '.join(flags)}", flush=True)
    print(scaling("launch", str(pruned), *flags, "--no-progress"))

    full, cut = outcome(unpruned), outcome(pruned)
    print("| lr | batch | unpruned: eval loss | pruned launch | FLOPs, unpruned | FLOPs, pruned |")
    print("|---:|---:|---:|---|---:|---:|")
    for run_id in sorted(full, key=lambda r: (full[r]["batch"], full[r]["lr"])):
        a, b = full[run_id], cut[run_id]
        there = f"{b['loss']:.4f}" if b["status"] == "done" else f"pruned at step {b['steps']}"
        print(
            f"| {a['lr']:g} | {a['batch']} | {a['loss']:.4f} | {there} | "
            f"{a['flops']:.3g} | {b['flops']:.3g} |"
        )
    spent = [sum(r["flops"] for r in rows.values()) for rows in (full, cut)]
    lrs = sorted({r["lr"] for r in full.values()})
    chosen, found = best(full), best(cut)
    apart = abs(lrs.index(chosen["lr"]) - lrs.index(found["lr"]))
    print(
        f"\nFLOPs: unpruned {spent[0]:.4g}, pruned {spent[1]:.4g} ({spent[1] / spent[0]:.0%}); "
        f"{sum(r['status'] == 'pruned' for r in cut.values())} of {len(cut)} runs pruned\n"
        f"best: unpruned lr {chosen['lr']:g} batch {chosen['batch']} ({chosen['loss']:.4f}), "
        f"pruned lr {found['lr']:g} batch {found['batch']} ({found['loss']:.4f}): "
        + ("the same lr" if apart == 0 else f"{apart} grid step(s) apart")
    )


if __name__ == "__main__":
    main()
