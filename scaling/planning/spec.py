"""The sweep spec (``sweeps/*.toml``): pydantic models, unknown keys rejected.

[sweep]   name, seed, flop_formula, size (total | non_embedding | active), checks
[model]   every ModelConfig field but the size fields, plus the shape rules
[data]    DataConfig
[train]   TrainConfig defaults (tokens is set per run; lr and batch_tokens may be
          formulas of N, D and C, or "fit:PATH" to a hyperparameter-law fit file)
[[grid]]  isoflop | fixed | grid | hparams blocks
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scaling.config import (
    ConfigError,
    DataConfig,
    FlopFormula,
    ModelConfig,
    describe_validation_error,
    read_toml,
)

SIZE_FIELDS = ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff")
SHAPE_RULES = (
    "head_dim",
    "aspect_ratio",
    "aspect_ratio_range",
    "d_model_multiple",
    "kv_group",
    "ffn_ratio",
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SweepSection(Strict):
    name: str = "sweep"
    seed: int = 0
    flop_formula: FlopFormula = "6N"
    size: Literal["total", "non_embedding", "active"] = "total"
    min_steps: int = Field(20, ge=1, description="warn below this many optimizer steps")
    tokens_per_param_range: tuple[float, float] = (2.0, 200.0)


class ShapeRules(Strict):
    """How the shape search turns a target size into (n_layers, d_model, n_heads, n_kv_heads)."""

    head_dim: int = Field(64, ge=2)
    aspect_ratio: float | None = Field(None, gt=0, description="d_model / n_layers to aim for")
    aspect_ratio_range: tuple[float, float] = (16.0, 256.0)
    d_model_multiple: int = Field(64, ge=1)
    kv_group: int = Field(1, ge=1, description="query heads per key/value head (1 = MHA)")
    ffn_ratio: float | None = Field(None, gt=0, description="d_ff / d_model; None = default")

    @model_validator(mode="after")
    def _consistent(self) -> ShapeRules:
        low, high = self.aspect_ratio_range
        if not 0 < low <= high:
            raise ValueError(f"aspect_ratio_range ({low}, {high}) must have 0 < low <= high")
        if self.aspect_ratio is not None and not low <= self.aspect_ratio <= high:
            raise ValueError(
                f"aspect_ratio ({self.aspect_ratio}) lies outside aspect_ratio_range "
                f"({low}, {high})"
            )
        if self.d_model_multiple % self.head_dim and self.head_dim % self.d_model_multiple:
            raise ValueError(
                f"head_dim ({self.head_dim}) and d_model_multiple ({self.d_model_multiple}) "
                "must divide one another"
            )
        return self

    @property
    def target_aspect(self) -> float:
        low, high = self.aspect_ratio_range
        return self.aspect_ratio or math.sqrt(low * high)


Budgets = list[float] | dict[str, float]


class IsoFLOPGrid(Strict):
    kind: Literal["isoflop"]
    name: str = "isoflop"
    budgets: Budgets = Field(description="a list, or {start, stop, per_decade}")
    sizes: int = Field(5, ge=1, description="model sizes per budget")
    spread: float = Field(4.0, ge=1, description="sizes span centre/spread .. centre·spread")
    centre: str = Field("20", description="tokens per parameter, or fit:PATH of a law")


class FixedGrid(Strict):
    kind: Literal["fixed"]
    name: str = "fixed"
    params: list[float] = Field(min_length=1)
    tokens: list[float] | None = None
    tokens_per_param: list[float] | None = None
    corpus_fractions: list[float] = Field(
        [1.0], description="repetition study: train on this share of the corpus (data.max_bytes)"
    )

    @model_validator(mode="after")
    def _one_token_axis(self) -> FixedGrid:
        if any(not 0 < f <= 1 for f in self.corpus_fractions):
            raise ValueError("corpus_fractions must lie in (0, 1]")
        if (self.tokens is None) == (self.tokens_per_param is None):
            raise ValueError("give exactly one of tokens and tokens_per_param")
        return self


class HparamsGrid(Strict):
    kind: Literal["hparams"]
    name: str = "hparams"
    budgets: Budgets
    centre: str = Field("20", description="tokens per parameter, or fit:PATH of a law")
    lr: list[float] = Field(min_length=1)
    batch_tokens: list[int] | None = None


class CartesianGrid(Strict):
    kind: Literal["grid"]
    name: str = "grid"
    axes: dict[str, list[Any]] = Field(description='e.g. {"train.lr" = [1e-3, 3e-3]}')
    apply_to: str = Field("all", description="'all', or the name of another grid block")
    params: list[float] | None = Field(None, description="alone: these sizes ...")
    tokens: list[float] | None = Field(None, description="... with these token counts")

    @model_validator(mode="after")
    def _axes(self) -> CartesianGrid:
        if not self.axes or any(not values for values in self.axes.values()):
            raise ValueError("axes must name at least one field, each with at least one value")
        for key in self.axes:
            section, _, field = key.partition(".")
            if section not in ("model", "train", "data") or not field:
                raise ValueError(f"axis {key!r}: name fields as model.X, train.X or data.X")
        return self


Grid = Annotated[IsoFLOPGrid | FixedGrid | HparamsGrid | CartesianGrid, Field(discriminator="kind")]


class SweepSpec(Strict):
    sweep: SweepSection = SweepSection()
    model: dict[str, Any] = Field(default_factory=dict)
    data: DataConfig = DataConfig()
    train: dict[str, Any] = Field(default_factory=dict)
    grid: list[Grid] = Field(min_length=1)
    launch: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sections(self) -> SweepSpec:
        sized = [key for key in SIZE_FIELDS if key in self.model]
        if sized:
            raise ValueError(
                f"model.{sized[0]} is chosen by the shape search; set the shape rules "
                f"({', '.join(SHAPE_RULES)}) instead"
            )
        ShapeRules(**self.shape_fields)
        ModelConfig(**self.architecture)  # unknown or impossible fields fail here
        if "tokens" in self.train:
            raise ValueError("train.tokens is set per run by the grids; remove it")
        names = [g.name for g in self.grid]
        if len(set(names)) != len(names):
            raise ValueError(f"grid names must differ; got {names}")
        for g in self.grid:
            if isinstance(g, CartesianGrid) and g.apply_to not in ("all", *names):
                raise ValueError(f"grid {g.name!r}: apply_to {g.apply_to!r} names no grid")
        return self

    @property
    def shape_fields(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k in SHAPE_RULES}

    @property
    def shape(self) -> ShapeRules:
        return ShapeRules(**self.shape_fields)

    @property
    def architecture(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k not in SHAPE_RULES}


def budget_list(budgets: Budgets) -> list[float]:
    if isinstance(budgets, list):
        return sorted(float(b) for b in budgets)
    start, stop = budgets.get("start"), budgets.get("stop")
    per_decade = budgets.get("per_decade", 2)
    if not start or not stop or start <= 0 or stop < start or per_decade <= 0:
        raise ConfigError("grid.budgets: {start, stop, per_decade} with 0 < start <= stop")
    n = int(round(math.log10(stop / start) * per_decade)) + 1
    return [start * (stop / start) ** (i / max(n - 1, 1)) for i in range(n)]


def load_spec(path: str | Path) -> SweepSpec:
    raw = read_toml(path)
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, path)) from None
