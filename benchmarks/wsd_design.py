"""The demo's study at a third of the compute: each size trained once (WSD), its cooldown
branches measured and more of them predicted by a loss-curve law, then the demo's two loss
laws fitted on those points predict the IsoFLOP study's 4x holdout.

    python benchmarks/wsd_design.py --seed 0 --isoflop DIR [--out DIR]

DIR: a finished `scaling demo --seed K --out DIR` (benchmarks/demo_calibration.py runs both).
The design (Hägele et al. 2024, "Scaling Laws and Compute-Optimal Training Beyond Fixed
Training Durations", Section 4: one WSD run per size, its cooldowns as points):

- sizes: the IsoFLOP study's own shapes at the four targets SIZES (its smallest, largest and
  two between), so both designs fit the same models;
- tokens: one count for every size, the most that keeps the whole design (runs and branches)
  within BUDGET_SHARE of the IsoFLOP study's measured training FLOPs;
- measured points: each run's end and its cooldown branches at BRANCHES of its steps (eval
  loss, as every point of the IsoFLOP study);
- predicted points: the lr-annealing law (Tissue et al. 2024) fitted on each run's train-loss
  curve predicts the end of a cooldown at PREDICTED fractions, put on the run's eval scale
  (`fitting.predicted`, ``eval_scale``);
- the fit: the demo's parametric and Kaplan laws (200 bootstraps, weighted by their backtest
  errors, here holding out the largest model as the design has no budgets), at the holdout's
  N and D, against the holdout's measured eval loss. It is fitted twice, with and without the
  predicted points, and both are reported.

Resumable: the runs train in DIR/wsd (the launcher's in-process executor, claims and
checkpoints), and a finished seed's report is kept in DIR/wsd/report.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

SIZES = (7_000, 20_000, 45_000, 123_000)  # targets; the planner picks the IsoFLOP grid's shapes
# Tokens per size ∝ N^-1/2: the small sizes far past their optimum, as the IsoFLOP grid's small
# sizes are (they pin the loss's fall with data), the largest near the grid's own 1e12 point.
# One count for every size (exponent 0) left the data term unseen beyond 1.7M tokens and
# predicted the holdout 4.7% low on seed 0 (BENCHMARKS.md).
TOKENS_EXPONENT = -0.5
BRANCHES = (0.25, 0.5)  # measured cooldown branches, fractions of each run's steps
# Predicted cooldown ends, between the measured ones: a curve law fitted on one run's curve
# predicted other runs of the same size within 0.2-0.7% at 0.5-0.8 of its steps, but 4-6%
# at 0.22 and 4-24% beyond its end (seed 0), so none is asked below 1/4 or past the end.
PREDICTED = (0.375, 0.75)
BUDGET_SHARE = 1 / 3
BOOTSTRAP = 200


def design_spec(seed: int, isoflop_flops: float):
    """The demo's spec (model, data, train sections; the seed) with the IsoFLOP grid replaced
    by one fixed grid per size: size N trained on tokens ∝ N^TOKENS_EXPONENT, scaled so that
    the runs and their branches spend BUDGET_SHARE of ``isoflop_flops`` (6N per token, the
    demo's formula, with N the planned shapes' own counts)."""
    from scaling.demo import demo_spec
    from scaling.planning.plan import plan_sweep
    from scaling.planning.spec import FixedGrid

    spec = demo_spec(False, seed=seed)
    train = spec.train.model_copy(update={"branches": BRANCHES})
    batch = spec.train.batch_tokens

    def with_tokens(tokens: list[int]):
        grids = [
            FixedGrid(kind="fixed", name=f"wsd-{i}", params=[n], tokens=[t])
            for i, (n, t) in enumerate(zip(SIZES, tokens, strict=True))
        ]
        return spec.model_copy(update={"grid": grids, "train": train})

    planned = plan_sweep(with_tokens([1000 * batch] * len(SIZES)), Path("."))
    params = [run["params"] for run in planned.runs]
    # a branch at fraction p adds its cooldown, cooldown_fraction * p of the run's steps
    overhead = 1 + spec.train.cooldown_fraction * sum(BRANCHES)
    shape = [n**TOKENS_EXPONENT for n in params]
    flops_per_unit = 6 * overhead * sum(n * w for n, w in zip(params, shape, strict=True))
    scale = BUDGET_SHARE * isoflop_flops / flops_per_unit
    return with_tokens([int(scale * w // batch * batch) for w in shape])  # whole batches


def train_design(spec, out: Path) -> None:
    from scaling.data import prepare_data
    from scaling.launching.local import InProcessExecutor, LaunchOptions
    from scaling.planning.output import write_plan
    from scaling.planning.plan import plan_sweep

    write_plan(plan_sweep(spec, out), spec, out)
    prepare_data(spec.data, progress=False)
    outcome = InProcessExecutor(out, LaunchOptions(progress=False)).run()
    failed = {run: state for run, state in outcome.items() if state != "done"}
    if failed:
        sys.exit(f"{out}: runs did not finish: {failed}")


def points_with_predictions(out: Path):
    """The design's measured points and, per run, the predicted cooldown ends (each run's
    own lr-annealing fit on its train-loss curve, resampled by blocks of steps)."""
    import pandas as pd

    from scaling import results
    from scaling.fitting import LRAnnealingLaw
    from scaling.fitting.curves import LrCurves, curve_of_run
    from scaling.fitting.predicted import predicted_points
    from scaling.rundir import RunsDir

    directory = RunsDir(out)
    measured = results.load(out).assign(predicted=False)
    frames = [measured]
    for run_id in measured.loc[measured["branch"] == "final", "run_id"]:
        curve = curve_of_run(directory.run(run_id))
        law = LRAnnealingLaw(bootstrap_samples=20, bootstrap_unit="steps", seed=0)
        law.fit(LrCurves([curve], f"{out}/{run_id}"))
        frames.append(predicted_points(law, out, PREDICTED, run_ids=[run_id], measured=False))
    return measured, pd.concat(frames, ignore_index=True)


def predict_holdout(table, source: str, holdout: dict[str, Any], predicted: bool) -> dict:
    """The demo's averaged prediction of the holdout from the points of ``table``."""
    from scaling.demo import LOSS_LAWS
    from scaling.fitting import prepare_points
    from scaling.fitting.api import fit_laws
    from scaling.fitting.averaging import averaged_loss, backtest_weights, paired_intervals

    points = prepare_points(table, source=source, include_predicted=predicted)
    laws = {}
    for name in LOSS_LAWS:
        (outcome,), _ = fit_laws(
            [name], points, None, holdout="largest-params", bootstrap_samples=BOOTSTRAP, seed=0
        )
        laws[name] = outcome.law
    errors = {n: law.details_["backtest"]["loss_mean_abs_rel_error"] for n, law in laws.items()}
    weights = backtest_weights(errors)
    sizes = {k: holdout[k] for k in ("params", "params_nonembedding")}
    averaged = averaged_loss(laws, weights, sizes, holdout["tokens"])
    paired = paired_intervals(laws, weights, sizes, holdout["tokens"]) or averaged["intervals"]
    return {
        "points": len(points),
        "predicted_points": int(table["predicted"].sum()) if predicted else 0,
        "predicted": averaged["loss"],
        "by_law": averaged["by_law"],
        "weights": weights,
        "interval_80": paired[0.8],
        "interval_95": paired[0.95],
        "error": holdout["measured"] / averaged["loss"] - 1,
    }


def isoflop_holdout(isoflop: Path) -> dict[str, Any]:
    """The IsoFLOP study's holdout (its N counts, tokens, measured eval loss) and the FLOPs
    its fitted runs spent."""
    from scaling import results
    from scaling.counting import count_params
    from scaling.rundir import RunsDir

    summary = json.loads((isoflop / "summary.json").read_text())
    config = RunsDir(isoflop).holdout(summary["holdout_run"]).read_config()
    counts = count_params(config.model)
    finals = results.load(isoflop)
    finals = finals[finals["branch"] == "final"]
    return {
        "params": counts.total,
        "params_nonembedding": counts.non_embedding,
        "tokens": config.train.tokens,
        "measured": summary["measured_loss"],
        "isoflop_predicted": summary["predicted_loss"],
        "isoflop_flops": float(finals["flops"].sum()),
    }


def spent_flops(out: Path) -> float:
    """What the design's training cost: each run's FLOPs (result.json's, its own schedule)
    and its branches' cooldowns (``cooldown_flops``, or from the schedule for a result
    written before the trainer recorded it)."""
    from scaling.rundir import RunsDir
    from scaling.schedules import branch_cooldown_steps

    directory = RunsDir(out)
    total = 0.0
    for run_id in directory.read_plan()["run_id"]:
        run = directory.run(run_id)
        result, train = run.read_result(), run.read_config().train
        recorded = [b.get("cooldown_flops") for b in result["branches"]]
        if all(flops is not None for flops in recorded):
            total += result["flops"] + sum(recorded)
        else:
            extra = branch_cooldown_steps(train, result["steps"])
            total += result["flops"] * (1 + extra / result["steps"])
    return total


def run_design(seed: int, isoflop: Path, out: Path | None = None) -> dict[str, Any]:
    """The WSD design's report for ``seed`` beside the IsoFLOP study in ``isoflop``."""
    out = out or isoflop / "wsd"
    report_path = out / "report.json"
    if report_path.is_file():
        return json.loads(report_path.read_text())
    from scaling.rundir import RunsDir

    # the IsoFLOP study's planned FLOPs size the design: it may train before that study ends
    spec = design_spec(seed, float(RunsDir(isoflop).read_plan()["flops"].sum()))
    started = time.perf_counter()
    train_design(spec, out)
    trained = time.perf_counter() - started
    holdout = isoflop_holdout(isoflop)
    measured, table = points_with_predictions(out)
    finals = measured[measured["branch"] == "final"]
    spent = spent_flops(out)
    report = {
        "seed": seed,
        "holdout": holdout,
        "flops": spent,
        "flops_share": spent / holdout["isoflop_flops"],
        "tokens_per_run": int(finals["tokens"].iloc[0]),
        "sizes": sorted(int(n) for n in finals["params"]),
        "measured_only": predict_holdout(measured, str(out), holdout, predicted=False),
        "with_predicted": predict_holdout(table, str(out), holdout, predicted=True),
        "eval_ratios": table.loc[table["predicted"], "eval_ratio"].dropna().unique().tolist(),
        "train_s": trained,
        "wall_s": time.perf_counter() - started,
    }
    report_path.write_text(json.dumps(report, indent=1) + "\n")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--isoflop", type=Path, required=True, help="a finished demo's DIR")
    parser.add_argument("--out", type=Path, default=None, help="default: ISOFLOP/wsd")
    parser.add_argument("--train-only", action="store_true", help="train the design, no more")
    args = parser.parse_args()
    if args.train_only:
        from scaling.rundir import RunsDir

        planned = float(RunsDir(args.isoflop).read_plan()["flops"].sum())
        train_design(design_spec(args.seed, planned), args.out or args.isoflop / "wsd")
        return
    print(json.dumps(run_design(args.seed, args.isoflop, args.out), indent=1))


if __name__ == "__main__":
    main()
