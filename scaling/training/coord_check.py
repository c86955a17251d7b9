"""The coordinate check of µP (Yang et al., Tensor Programs V, §4; microsoft/mup's
``coord_check.py`` at 1981497): train a model a few steps at several widths and watch the size
of each layer's activations. Under µP they keep their size at every width once training has
moved the weights; under the standard parametrization they grow with width (Adam's updates are
as large for a wide matrix as for a narrow one, and a wide layer sums more of them).

Each width is the given config with ``d_model`` changed and every other hidden size kept in
proportion (heads of the same ``head_dim``, the feed-forward at its default ratio), trained with
the run's AdamW and learning rate (no schedule, no clipping, fp32, on the CPU or a GPU) on one fixed
batch of real text, as mup's ``fix_data``: random tokens give gradients that are mostly noise,
whose uncorrelated part shrinks as 1/sqrt(width) and would read as a slope of -1/2 at small
widths. Measured in the forward pass of each step (step 1 is the initialisation): the root mean
square of the embedding output, of each block's attention and feed-forward outputs, and of the
logits; then per layer the slope of log RMS against log width, the mean of log RMS taken over
``seeds`` initialisations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from scaling.config import ModelConfig, TrainConfig
from scaling.model import Transformer
from scaling.training.optimizer import build_optimizer, set_learning_rate


@dataclass
class CoordCheck:
    """RMS of each layer's output: ``rms[layer][step][width]``, each the geometric mean over
    the seeds."""

    parametrization: str
    widths: list[int]
    steps: int
    seeds: int
    rms: dict[str, list[list[float]]]

    def slopes(self, step: int | None = None) -> dict[str, float]:
        """Per layer, the slope of log RMS against log width at ``step`` (1-based, 1 being
        the initialisation; the last by default): 0 when a layer keeps its size."""
        at = (step or self.steps) - 1
        log_widths = np.log(self.widths)
        return {
            layer: float(np.polyfit(log_widths, np.log(values[at]), 1)[0])
            for layer, values in self.rms.items()
        }

    def to_dict(self) -> dict:
        return {
            "parametrization": self.parametrization,
            "widths": self.widths,
            "steps": self.steps,
            "seeds": self.seeds,
            "slopes": self.slopes(),
            "rms": self.rms,
        }

    def figure(self, steps: list[int] | None = None):
        """RMS against width (log-log), one panel per step (first, middle, last by default)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        steps = steps or sorted({1, (self.steps + 1) // 2, self.steps})
        fig, axes = plt.subplots(1, len(steps), figsize=(4 * len(steps), 3.6), sharey=True)
        axes = np.atleast_1d(axes)
        for axis, step in zip(axes, steps, strict=True):
            slopes = self.slopes(step)
            for layer, values in self.rms.items():
                axis.plot(
                    self.widths,
                    values[step - 1],
                    "o-",
                    ms=3,
                    label=f"{layer} ({slopes[layer]:+.2f})",
                )
            axis.set(xscale="log", yscale="log", xlabel="width (d_model)", title=f"step {step}")
            axis.set_xticks(self.widths, [str(w) for w in self.widths])
            axis.minorticks_off()
        axes[0].set_ylabel("RMS of the layer's output")
        axes[-1].legend(fontsize=7, title="layer (slope)", title_fontsize=7)
        fig.suptitle(f"coordinate check: {self.parametrization}")
        fig.tight_layout()
        return fig


def at_width(cfg: ModelConfig, width: int) -> ModelConfig:
    """``cfg`` at ``d_model = width``, its heads of the same size (and the same query heads per
    key/value head) and its feed-forward at the default ratio, so that every hidden size grows
    with the width."""
    if width % cfg.head_dim:
        raise ValueError(f"width {width} is not a multiple of head_dim {cfg.head_dim}")
    heads = width // cfg.head_dim
    group = cfg.n_heads // cfg.kv_heads
    if heads % group:
        raise ValueError(
            f"width {width} gives {heads} heads, not a multiple of {group} per kv head"
        )
    fields = cfg.model_dump()
    fields.update(
        d_model=width,
        n_heads=heads,
        n_kv_heads=heads // group if cfg.n_kv_heads else None,
        d_ff=None,
        d_ff_multiple=min(cfg.d_ff_multiple, cfg.head_dim),
    )
    return ModelConfig.model_validate(fields)


def fixed_batch(tokens: np.ndarray, batch: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` windows of ``seq_len`` + 1 tokens spread evenly through ``tokens``."""
    if len(tokens) < batch * (seq_len + 1):
        raise ValueError(f"{len(tokens):,} tokens are too few for {batch} windows of {seq_len + 1}")
    starts = np.linspace(0, len(tokens) - seq_len - 1, batch).astype(np.int64)
    windows = np.stack([np.asarray(tokens[s : s + seq_len + 1], dtype=np.int64) for s in starts])
    windows = torch.from_numpy(windows)
    return windows[:, :-1], windows[:, 1:]


def coord_check(
    cfg: ModelConfig,
    train: TrainConfig,
    tokens: np.ndarray,
    widths: list[int],
    steps: int = 10,
    batch: int = 8,
    seeds: int = 2,
    on_width: Callable[[int, int], None] | None = None,
    device: torch.device | str = "cpu",
) -> CoordCheck:
    """Train ``cfg`` at each width for ``steps`` steps on one batch of ``tokens`` and record
    the RMS of every layer's output at every step. ``on_width(width, seed)`` is called before
    each training (progress)."""
    if len(widths) < 2 or steps < 1 or seeds < 1:
        raise ValueError("a coordinate check needs two widths or more, a step and a seed")
    x, y = (t.to(device) for t in fixed_batch(tokens, batch, train.seq_len))
    log_rms: dict[str, np.ndarray] = {}
    for column, width in enumerate(widths):
        model_cfg = at_width(cfg, width)
        for seed in range(seeds):
            if on_width:
                on_width(width, seed)
            for layer, values in _train_and_measure(model_cfg, train, x, y, steps, seed).items():
                table = log_rms.setdefault(layer, np.zeros((steps, len(widths), seeds)))
                table[:, column, seed] = np.log(values)
    rms = {layer: np.exp(table.mean(axis=2)).tolist() for layer, table in log_rms.items()}
    return CoordCheck(cfg.parametrization, list(widths), steps, seeds, rms)


def _train_and_measure(
    cfg: ModelConfig, train: TrainConfig, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int
) -> dict[str, list[float]]:
    torch.manual_seed(seed)  # the initialisation is drawn on the CPU: the same on any device
    model = Transformer(cfg).to(x.device)
    optimizer = build_optimizer(model, train, cfg)
    set_learning_rate(optimizer, train.lr)
    seen: dict[str, float] = {}
    layers = {"embedding": model.emb_dropout}
    for i, block in enumerate(model.blocks):
        layers.update({f"block{i}.attn": block.attn, f"block{i}.ffn": block.ffn})
    hooks = [module.register_forward_hook(_recorder(name, seen)) for name, module in layers.items()]
    measured: dict[str, list[float]] = {}
    try:
        for _ in range(steps):
            out = model(x, y)
            seen["logits"] = _rms(out.logits)
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            for layer, value in seen.items():
                measured.setdefault(layer, []).append(value)
    finally:
        for hook in hooks:
            hook.remove()
    return measured


def _rms(tensor: torch.Tensor) -> float:
    return float(tensor.detach().float().pow(2).mean().sqrt())


def _recorder(name: str, seen: dict[str, float]):
    def hook(_module, _args, output):
        seen[name] = _rms(output[0] if isinstance(output, tuple) else output)

    return hook
