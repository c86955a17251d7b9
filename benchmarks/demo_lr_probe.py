"""Would a learning rate per size fix the demo's prediction?

    python benchmarks/demo_lr_probe.py [RUNS] [--lrs 0.003 0.03] [--out DIR]

RUNS is a demo's runs directory (`scaling demo --out RUNS`, or one seed of
`benchmarks/demo_calibration.py --out`); without it the probe first runs `scaling demo --seed
0` into DIR/demo (8 more minutes). The demo trains every size at one learning rate
(1e-2). This retrains eight of its runs, spread over its budgets and sizes, and its holdout at
each other learning rate of ``--lrs`` (each in its own process and directory under DIR; an
interrupted probe resumes and skips what is done), then prints each run's loss per learning
rate, and what the demo's two loss laws predict for the holdout when every probed point keeps
its best loss over the learning rates (as a learning rate tuned per size would give) against
the demo's own points. Not part of CI: about 8 minutes on 2 cores for two learning rates.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from scaling import results
from scaling.config import RunConfig
from scaling.counting import count_params
from scaling.fitting import prepare_points
from scaling.fitting.api import fit_law
from scaling.fitting.points import Points

# (budget, rank of the size within the budget): the small, middle and large sizes of the
# smallest budget, two of the middle one, the three best of the largest.
LOSS_LAWS = ("parametric", "kaplan")
PROBED = [(0, 0), (0, 2), (0, 3), (1, 2), (1, 3), (2, 2), (2, 3), (2, 4)]


def train_at(config_path: Path, lr: float, where: Path) -> float:
    """The final validation loss of the run of ``config_path`` retrained at ``lr``."""
    if not (where / "result.json").exists():
        where.mkdir(parents=True, exist_ok=True)
        config = json.loads(config_path.read_text())
        config["train"]["lr"] = lr
        (where / "config.json").write_text(json.dumps(config))
        command = [sys.executable, "-m", "scaling", "train", str(where / "config.json")]
        subprocess.run(command + ["--no-progress"], check=True, capture_output=True)
    return json.loads((where / "result.json").read_text())["final_eval_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, nargs="?")
    parser.add_argument("--lrs", type=float, nargs="+", default=[3e-3, 3e-2])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="demo-lr-probe-"))
    if args.runs is None:
        args.runs = out / "demo"
        demo = [sys.executable, "-m", "scaling", "demo", "--seed", "0", "--out", str(args.runs)]
        subprocess.run(demo + ["--no-progress"], check=True, capture_output=True)

    frame = results.load(args.runs)
    budgets = sorted(frame["budget"].unique())
    base_lr = float(frame["lr"].iloc[0])
    lrs = sorted({base_lr, *args.lrs})
    probed = []
    for budget_rank, size_rank in PROBED:
        runs = frame[frame["budget"] == budgets[budget_rank]].sort_values("params")
        probed.append(runs.iloc[size_rank])

    print("| run | budget | params | " + " | ".join(f"lr {lr:g}" for lr in lrs) + " |")
    print("|---|---:|---:|" + "---:|" * len(lrs))
    best = {}
    for run in probed:
        config = args.runs / "runs" / run["run_id"] / "config.json"
        losses = {base_lr: float(run["loss"])}
        for lr in args.lrs:
            losses[lr] = train_at(config, lr, out / f"{run['run_id']}-lr{lr:g}")
        best[run["run_id"]] = min(losses.values())
        cells = " | ".join(f"{losses[lr]:.3f}" for lr in lrs)
        print(
            f"| {run['run_id']} | {run['budget']:.0e} | {run['params']:,} | {cells} |", flush=True
        )

    holdout_dir = next((args.runs / "holdout").iterdir())
    holdout = RunConfig.model_validate_json((holdout_dir / "config.json").read_text())
    measured = {base_lr: json.loads((holdout_dir / "result.json").read_text())["final_eval_loss"]}
    for lr in args.lrs:
        measured[lr] = train_at(holdout_dir / "config.json", lr, out / f"holdout-lr{lr:g}")
    cells = " | ".join(f"{measured[lr]:.3f}" for lr in lrs)
    budget = json.loads((args.runs / "summary.json").read_text())["budget"]
    print(f"| holdout | {budget:.0e} | {count_params(holdout.model).total:,} | {cells} |")

    points = prepare_points(frame, source=str(args.runs))
    tuned = points.frame.copy()
    tuned["loss"] = [
        best.get(r, loss) for r, loss in zip(tuned["run_id"], tuned["loss"], strict=True)
    ]
    counts = count_params(holdout.model)
    sizes = {"params": counts.total, "params_nonembedding": counts.non_embedding}
    actual = measured[base_lr]
    print()
    print(f"the holdout at lr {base_lr:g} measured {actual:.3f}; predicted by")
    for label, data in (
        ("the demo's points", points.frame),
        ("each probed point's best lr", tuned),
    ):
        laws = {name: fit_law(name, Points(data, [], "probe"), None) for name in LOSS_LAWS}
        said = [
            f"{name} {float(np.asarray(law.loss(law.sizes(sizes), holdout.train.tokens))):.3f}"
            for name, law in laws.items()
        ]
        print(f"  {label}: {', '.join(said)}")


if __name__ == "__main__":
    main()
