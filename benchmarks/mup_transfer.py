"""Does the best learning rate transfer across width? Standard parametrization against µP.

    python benchmarks/mup_transfer.py [--out DIR] [--steps 100] [--figure PATH]

Trains a 2-layer model (heads of 16, bytes of the Python standard library as tokens) at 4
widths over an 8x range (32-256) and 7 learning rates a factor of 2 apart, under the standard
parametrization and under µP with base_width 32 (so at width 32 the two are the same model),
with the trainer the sweeps use (its default schedule), and reports each run's final
validation loss, the best learning rate per width, how far it moves across widths (in grid
steps), and the exponent e of a power law lr* ∝ N^e fitted to the best learning rates, each
refined by a parabola through its neighbours in log lr (what an hparams law would fit on such
runs). Every run is its own directory under DIR: an interrupted benchmark resumes. About 15
minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from scaling.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from scaling.counting import count_params

WIDTHS = [32, 64, 128, 256]
LRS = [2.0**k for k in range(-11, -4)]  # 4.9e-4 ... 3.1e-2
DATA = DataConfig(
    source="builtin:python-stdlib", max_bytes=3_000_000, val_fraction=0.05, tokenizer="bytes"
)


def run_config(parametrization: str, width: int, lr: float, steps: int) -> RunConfig:
    mup = {"parametrization": "mup", "base_width": WIDTHS[0]} if parametrization == "mup" else {}
    model = ModelConfig(
        vocab_size=256, d_model=width, n_layers=2, n_heads=width // 16, max_seq_len=64, **mup
    )
    train = TrainConfig(
        tokens=steps * 512,
        batch_tokens=512,
        micro_batch_size=8,
        seq_len=64,
        lr=lr,
        eval_interval=0,
        eval_windows=128,
        log_interval=50,
        checkpoint_interval=100_000,
    )
    return RunConfig(
        run_id=f"{parametrization}-{width}-{lr:g}", model=model, data=DATA, train=train
    )


def final_loss(config: RunConfig, out: Path) -> float:
    from scaling.training.lifecycle import train

    where = out / config.run_id
    if not (where / "result.json").exists():
        train(config, where, progress=False)
    result = json.loads((where / "result.json").read_text())
    return result["final_eval_loss"] if result["status"] == "done" else float("inf")


def refined_optimum(losses: list[float]) -> float:
    """The best lr, refined by a parabola in log2 lr through it and its neighbours."""
    best = int(np.argmin(losses))
    if best in (0, len(LRS) - 1) or not np.isfinite(losses[best - 1 : best + 2]).all():
        return LRS[best]
    x = np.log2(LRS[best - 1 : best + 2])
    a, b, _ = np.polyfit(x, losses[best - 1 : best + 2], 2)
    return float(2.0 ** (-b / (2 * a))) if a > 0 else LRS[best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--figure", type=Path, default=Path("docs/mup_transfer.png"))
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    out = args.out or Path(tempfile.mkdtemp(prefix="mup-transfer-"))
    start = time.perf_counter()
    losses: dict[str, dict[int, list[float]]] = {}
    for parametrization in ("standard", "mup"):
        for width in WIDTHS:
            row = [
                final_loss(run_config(parametrization, width, lr, args.steps), out) for lr in LRS
            ]
            losses.setdefault(parametrization, {})[width] = row
            print(f"{parametrization} {width}: " + " ".join(f"{v:.3f}" for v in row), flush=True)
    wall = time.perf_counter() - start

    params = {w: count_params(run_config("standard", w, 1e-3, 1).model).total for w in WIDTHS}
    print(f"\n{len(WIDTHS) * len(LRS) * 2} runs of {args.steps} steps x 512 tokens, {wall:.0f} s")
    print("\n| width | params | " + " | ".join(f"lr {lr:.2g}" for lr in LRS) + " |")
    print("|---|---:|" + "---:|" * len(LRS))
    for parametrization, table in losses.items():
        for width, row in table.items():
            best = int(np.argmin(row))
            cells = [f"**{v:.3f}**" if i == best else f"{v:.3f}" for i, v in enumerate(row)]
            print(f"| {parametrization} {width} | {params[width]:,} | " + " | ".join(cells) + " |")
    print(
        "\n| parametrization | best lr per width (grid) | refined | moves (grid steps) "
        "| exponent e |"
    )
    print("|---|---|---|---:|---:|")
    for parametrization, table in losses.items():
        grid = [LRS[int(np.argmin(row))] for row in table.values()]
        refined = [refined_optimum(row) for row in table.values()]
        steps_moved = int(round(np.log2(max(grid) / min(grid))))
        exponent = np.polyfit(np.log([params[w] for w in WIDTHS]), np.log(refined), 1)[0]
        print(
            f"| {parametrization} | {', '.join(f'{v:.2g}' for v in grid)} | "
            f"{', '.join(f'{v:.2g}' for v in refined)} | {steps_moved} | {exponent:+.2f} |"
        )
    _figure(losses, args.figure)
    print(f"\nfigure: {args.figure}")


def _figure(losses: dict[str, dict[int, list[float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for axis, (parametrization, table) in zip(axes, losses.items(), strict=True):
        for width, row in table.items():
            finite = [v if np.isfinite(v) else np.nan for v in row]
            axis.plot(LRS, finite, "o-", ms=3, label=f"width {width}")
            axis.plot(LRS[int(np.argmin(row))], min(row), "k*", ms=8)
        axis.set(xscale="log", xlabel="learning rate", title=parametrization)
    axes[0].set_ylabel("validation loss (nats/byte)")
    axes[1].legend(fontsize=8)
    lows = [min(row) for table in losses.values() for row in table.values()]
    axes[0].set_ylim(min(lows) - 0.05, min(lows) + 0.8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
