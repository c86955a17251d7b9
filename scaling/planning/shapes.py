"""Shape search: the (n_layers, d_model, n_heads, n_kv_heads) whose exact parameter count is
closest to a target, under the sweep's shape rules.

Candidates: every depth, and for each the widths (multiples of ``d_model_multiple``, whole
heads of ``head_dim``) whose aspect ratio d_model / n_layers lies in the allowed range and whose
rough size 12·L·d² is within a factor of two of the target. Each is counted exactly
(``scaling.counting``). Among the candidates whose count lies within ``TOLERANCE`` of the
target (or, if none does, within the best achievable error), the one nearest the target aspect
ratio wins: consecutive sizes then grow in depth and width together instead of jumping between
tall and wide shapes with nearly equal counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scaling.config import ConfigError, ModelConfig
from scaling.counting import count_params
from scaling.planning.spec import ShapeRules

TOLERANCE = 0.05  # relative count error within which the aspect ratio decides
MAX_LAYERS = 128


@dataclass(frozen=True)
class Shape:
    config: ModelConfig
    params: int  # under the sweep's size definition
    target: float

    @property
    def error(self) -> float:
        return self.params / self.target - 1


def size_of(cfg: ModelConfig, size: str) -> int:
    counted = count_params(cfg)
    return {
        "total": counted.total,
        "non_embedding": counted.non_embedding,
        "active": counted.active,
    }[size]


def search_shape(
    target: float,
    architecture: dict[str, Any],
    rules: ShapeRules,
    size: str = "total",
    at_least: ModelConfig | None = None,
) -> Shape:
    """The shape closest to ``target`` parameters (by ``size``: total, non_embedding, active).
    ``at_least``: a smaller size's shape that this one may not be shallower or narrower than."""
    low, high = rules.aspect_ratio_range
    step = math.lcm(rules.d_model_multiple, rules.head_dim)
    candidates: list[tuple[float, float, Shape]] = []  # (count error, aspect distance, shape)
    # N ≈ 12·L·d² with d = aspect·L: depths within a factor of 3 of that estimate suffice
    depth = (max(target, 1.0) / (12 * rules.target_aspect**2)) ** (1 / 3)
    for n_layers in range(max(1, int(depth / 3)), min(MAX_LAYERS, int(depth * 3) + 2)):
        rough = math.sqrt(max(target, 1.0) / (12 * n_layers))  # 12·L·d² ≈ non-embedding N
        lo_d = max(step, math.ceil(max(low * n_layers, rough / 2) / step) * step)
        hi_d = max(min(high * n_layers, rough * 2), lo_d)  # a tiny target: the smallest width
        for d_model in range(lo_d, int(hi_d) + 1, step):
            n_heads = d_model // rules.head_dim
            if n_heads % rules.kv_group:
                continue
            fields = {
                **architecture,
                "d_model": d_model,
                "n_layers": n_layers,
                "n_heads": n_heads,
                "n_kv_heads": n_heads // rules.kv_group,
            }
            if rules.ffn_ratio is not None:
                multiple = architecture.get("d_ff_multiple", 64)
                fields["d_ff"] = max(
                    multiple, round(rules.ffn_ratio * d_model / multiple) * multiple
                )
            try:
                cfg = ModelConfig(**fields)
            except ValueError:
                continue
            params = size_of(cfg, size)
            aspect_distance = abs(math.log(d_model / n_layers / rules.target_aspect))
            candidates.append(
                (abs(math.log(params / target)), aspect_distance, Shape(cfg, params, target))
            )
    if not candidates:
        raise ConfigError(
            f"shape search: no shape of about {target:.3g} parameters satisfies the shape rules "
            f"(aspect_ratio_range {rules.aspect_ratio_range}, head_dim {rules.head_dim}, "
            f"d_model_multiple {rules.d_model_multiple})"
        )
    allowed = max(min(c[0] for c in candidates), math.log1p(TOLERANCE))
    return min((c for c in candidates if c[0] <= allowed), key=lambda c: (c[1], c[0]))[2]


def search_shapes(
    targets: list[float], architecture: dict[str, Any], rules: ShapeRules, size: str = "total"
) -> dict[float, Shape]:
    """The shape of each target, each searched on its own: a size's shape never depends on
    which other sizes a sweep has, so adding a budget to a spec leaves existing runs alone."""
    return {t: search_shape(t, architecture, rules, size) for t in set(targets)}


def shrinking_shapes(shapes: list[Shape]) -> list[str]:
    """Where a larger size is shallower or narrower than the next smaller one (for a warning):
    with coarse width steps, a size can trade a layer for width."""
    ordered = sorted(shapes, key=lambda s: s.params)
    notes = []
    for small, large in zip(ordered, ordered[1:], strict=False):
        a, b = small.config, large.config
        if b.n_layers < a.n_layers or b.d_model < a.d_model:
            notes.append(
                f"{large.params:,} parameters is {b.n_layers}×{b.d_model} after "
                f"{small.params:,} at {a.n_layers}×{a.d_model}"
            )
    return notes
