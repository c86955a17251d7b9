"""Do the loss-curve laws predict a schedule they never saw, on our own trainer's runs?

    nice -n 10 python benchmarks/curve_schedules.py [--steps 1000] [--seed 0] [--out DIR]
        [--figure PATH]

Plans one tiny model (the demo's design: bytes of the Python standard library as tokens,
64-byte windows, 2048-token batches, lr 1e-2, 5% warm-up) under three schedules, constant,
cosine (to 0.1 of the peak) and WSD (a 1 - sqrt cooldown over the last 20%), with one seed, so
the three runs start from the same weights and see the same batches; trains them through the
CLI (`scaling plan`, `scaling launch`: resumable, three at once, one thread each). Then, for
each schedule held out, fits each loss-curve law (`scaling fit --law multi-power`,
`--law lr-annealing`, no bootstrap) on the other two runs' curves (a CSV of run, step, lr,
loss built from the runs directory) and predicts the held-out run's curve from its schedule
alone (`scaling predict --schedule RUNS/runs/<id>/config.json`), each a fresh process.

The loss is the training loss the trainer logs (every step here): one batch's mean loss,
which is noisy. So the table reports, over the held-out run's steps after warm-up, the mean
of |predicted / measured - 1| per logged step and over means of bins of 50 logged steps (the
same bins of both curves), the error of the last bin (the end of the run), and the floor a
perfect prediction would score from the batches' noise alone (σ from consecutive steps).
Prints a markdown table and saves the predicted-beside-measured figure. About 4 minutes on 2
cores (training 2 of them).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from demo_sections import demo_sections

from scaling.fitting import Law
from scaling.fitting.curves import Curve, LrCurves, curves_from_runs
from scaling.rundir import RunsDir

LAWS = ("multi-power", "lr-annealing")
BIN = 50  # logged steps per bin: the noise of a 2048-token batch's loss falls by √50
SPEC = """\
[sweep]
name = "curve-schedules"
seed = {seed}
flop_formula = "6N"
size = "total"

{demo}[train]
seq_len = 64
batch_tokens = 2048
micro_batch_size = 32
lr = 1e-2
warmup_fraction = 0.05
cooldown_fraction = 0.2
cooldown_shape = "1-sqrt"
min_lr_fraction = 0.1
eval_interval = 0
eval_windows = 64
log_interval = 1           # every step's train loss: the curve the laws fit
checkpoint_interval = 250

[[grid]]
kind = "grid"
params = [30000]
tokens = [{tokens}]
axes = {{ "train.schedule" = ["constant", "cosine", "wsd"] }}
"""


def scaling(*args: object) -> str:
    """``python -m scaling ARGS`` in a fresh process; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "scaling", *map(str, args)], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"scaling {' '.join(map(str, args))} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def table_of(curves: list[Curve]) -> pd.DataFrame:
    """Curves as the rows ``run, step, lr, loss`` that `scaling fit` reads: every step's lr,
    the loss where one was logged."""
    frames = []
    for curve in curves:
        loss = np.full(len(curve.lr), np.nan)
        loss[curve.steps] = curve.loss
        steps = np.arange(len(curve.lr))
        frames.append(
            pd.DataFrame({"run": curve.name, "step": steps, "lr": curve.lr, "loss": loss})
        )
    return pd.concat(frames, ignore_index=True)


def bin_means(values: np.ndarray) -> np.ndarray:
    whole = len(values) // BIN * BIN
    return values[:whole].reshape(-1, BIN).mean(axis=1)


def errors(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    binned = bin_means(predicted) / bin_means(measured) - 1
    return {
        "step": float(np.mean(np.abs(predicted / measured - 1))),
        "bins": float(np.mean(np.abs(binned))),
        "end": float(binned[-1]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep the runs here (resumes)")
    parser.add_argument("--figure", type=Path, default=None, help="default: OUT/curve_fits.png")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="curve-schedules-"))
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    spec = out / "spec.toml"
    spec.write_text(
        SPEC.format(seed=args.seed, tokens=args.steps * 2048, demo=demo_sections("model", "data"))
    )
    runs_path = out / "runs"
    scaling("plan", spec, "--out", runs_path)
    # three at once: the launcher gives each one thread of the two cores
    scaling("launch", runs_path, "--max-parallel", 3, "--no-progress")
    trained = time.perf_counter() - started

    runs = RunsDir(runs_path)
    curves = curves_from_runs(runs_path).curves
    configs = {c.name: runs.run(c.name).read_config() for c in curves}
    kind = {name: config.train.schedule for name, config in configs.items()}
    warmup = int(round(configs[curves[0].name].train.warmup_fraction * len(curves[0].lr)))

    fits = out / "fits"
    fits.mkdir(exist_ok=True)
    rows, sigmas, predicted_by = [], [], {law: {} for law in LAWS}
    for held in curves:
        others = [c for c in curves if c is not held]
        pair = fits / f"without-{kind[held.name]}.csv"
        table_of(others).to_csv(pair, index=False)
        after = held.steps >= warmup
        measured = held.loss[after]
        for law in LAWS:
            fit = fits / f"{law}-without-{kind[held.name]}.json"
            if not fit.is_file():
                scaling("fit", pair, "--law", law, "--out", fit, "--json")
            config = runs.run(held.name).config_path
            said = json.loads(scaling("predict", "--fit", fit, "--schedule", config, "--json"))
            curve = np.array([row["loss"] for row in said["predictions"]])
            predicted_by[law][held.name] = Law.from_json(fit)
            rows.append(
                {"held": kind[held.name], "law": law, **errors(curve[held.steps][after], measured)}
            )
        # the noise: σ of one batch's loss from consecutive steps (a smooth trend cancels)
        sigmas.append(float(np.std(np.diff(np.log(measured))) / np.sqrt(2)))

    model, steps = configs[curves[0].name].model, len(curves[0].lr)
    print(
        f"one model ({model.d_model}-wide, {model.n_layers} layers), {steps} steps per run, "
        f"seed {args.seed}; errors over steps {warmup}-{steps - 1} of the held-out run\n"
    )
    print(
        "| held out | law (fitted on the other two) | per logged step | 50-step bins | last bin |"
    )
    print("|---|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['held']} | {row['law']} | {row['step']:.2%} | {row['bins']:.2%} "
            f"| {row['end']:+.2%} |"
        )
    # what a perfect prediction scores against independent noise of σ: E|e| = σ·√(2/π)
    sigma = float(np.mean(sigmas))
    floor = sigma * np.sqrt(2 / np.pi)
    print(
        f"| any | a perfect prediction (batch noise σ = {sigma:.1%}) | {floor:.2%} "
        f"| {floor / np.sqrt(BIN):.2%} | ±{sigma / np.sqrt(BIN):.2%} (1σ) |"
    )
    for law in LAWS:
        mean = np.mean([r["bins"] for r in rows if r["law"] == law])
        print(f"\n{law}: mean over the three held-out schedules {mean:.2%} on 50-step bins", end="")
    print()

    from scaling.plotting import curve_fits

    titles = {name: f"{kind[name]} (held out)" for name in kind}
    figure = curve_fits(LrCurves(curves, str(runs_path)), predicted_by, titles)
    path = args.figure or out / "curve_fits.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    print(f"\nfigure: {path}")
    print(f"wall {time.perf_counter() - started:.0f} s (training {trained:.0f} s); runs in {out}")


if __name__ == "__main__":
    main()
