"""The sweep spec (``sweeps/*.toml``): pydantic models, unknown keys rejected.

[sweep]   name, seed, flop_formula, size (total | non_embedding | active), checks
[model]   every ModelConfig field but the size fields, plus the shape rules; vocab_size
          follows the tokenizer of [data] and max_seq_len follows train.seq_len
[data]    DataConfig
[train]   TrainConfig defaults (tokens is set per run; lr and batch_tokens may be
          formulas of N, D and C, or "fit:PATH" to a hyperparameter-law fit file)
[[grid]]  isoflop | fixed | grid | hparams blocks
[launch]  [launch.slurm]: the Slurm executor's resources

Every section is typed: an unknown or mistyped key fails at load, naming file, section, key.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)

from scaling.config import (
    ConfigError,
    DataConfig,
    FlopFormula,
    ModelConfig,
    TrainConfig,
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


Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class BudgetRange(Strict):
    start: Positive
    stop: Positive
    per_decade: Positive = 2

    @model_validator(mode="after")
    def _ordered(self) -> BudgetRange:
        if self.stop < self.start:
            raise ValueError(f"stop ({self.stop:g}) is less than start ({self.start:g})")
        return self


Budgets = list[Positive] | BudgetRange


def _check_centre(centre: str) -> str:
    if centre.startswith("fit:"):
        return centre
    try:
        value = float(centre)
    except ValueError:
        raise ValueError(
            f"centre {centre!r}: a number of tokens per parameter, or fit:PATH"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"centre {centre!r}: tokens per parameter must be positive")
    return centre


Centre = Annotated[str, AfterValidator(_check_centre)]  # tokens per parameter, or fit:PATH


class IsoFLOPGrid(Strict):
    kind: Literal["isoflop"]
    name: str = "isoflop"
    budgets: Budgets = Field(description="a list, or {start, stop, per_decade}")
    sizes: int = Field(5, ge=1, description="model sizes per budget")
    spread: float = Field(4.0, ge=1, description="sizes span centre/spread .. centre·spread")
    centre: Centre = "20"


class FixedGrid(Strict):
    kind: Literal["fixed"]
    name: str = "fixed"
    params: list[Positive] = Field(min_length=1)
    tokens: list[Positive] | None = None
    tokens_per_param: list[Positive] | None = None
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
    centre: Centre = "20"
    lr: list[float] = Field(min_length=1)
    batch_tokens: list[int] | None = None


class CartesianGrid(Strict):
    kind: Literal["grid"]
    name: str = "grid"
    axes: dict[str, list[Any]] = Field(description='e.g. {"train.lr" = [1e-3, 3e-3]}')
    apply_to: str = Field("all", description="'all', or the name of another grid block")
    params: list[Positive] | None = Field(None, description="alone: these sizes ...")
    tokens: list[Positive] | None = Field(None, description="... with these token counts")

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


def _section_model(name: str, source: type[BaseModel], drop: tuple[str, ...], **changed):
    """A strict model with ``source``'s fields (types, defaults, bounds) less ``drop``, and
    ``changed`` fields as (annotation, FieldInfo) pairs: a spec section typed all the way
    down, so a misspelt key fails at load, named with its file and section."""
    fields: dict[str, Any] = {
        key: (info.annotation, info)
        for key, info in source.model_fields.items()
        if key not in drop and key not in changed
    }
    fields.update(changed)
    return create_model(name, __base__=Strict, **fields)


Formula = float | str  # a number, a formula of N, D and C, or "fit:PATH"

ModelSection = _section_model(
    "ModelSection",
    ModelConfig,
    SIZE_FIELDS,
    vocab_size=(int | None, Field(None, ge=2, description="None: the tokenizer's, from [data]")),
    max_seq_len=(int | None, Field(None, ge=1, description="None: train.seq_len")),
    **{key: (info.annotation, info) for key, info in ShapeRules.model_fields.items()},
)
TrainSection = _section_model(
    "TrainSection",
    TrainConfig,
    ("tokens",),
    lr=(Formula, Field(TrainConfig.model_fields["lr"].default)),
    batch_tokens=(int | str, Field(TrainConfig.model_fields["batch_tokens"].default)),
)


class SlurmSection(Strict):
    partition: str | None = None
    account: str | None = None
    cluster: str | None = Field(None, description="submitit's cluster: slurm, local, debug")
    time_min: int = Field(60, ge=1)
    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int | None = Field(None, ge=1, description="None: 8 per GPU")
    mem_gb: int | None = Field(None, ge=1)
    array_parallelism: int = Field(256, ge=1)
    sbatch: dict[str, Any] = Field(default_factory=dict, description="other #SBATCH directives")


class LaunchSection(Strict):
    slurm: SlurmSection = SlurmSection()


def tokenizer_vocab_size(data: DataConfig) -> int | None:
    """The vocabulary the tokenizer of ``data`` produces; None for a tokenizer.json not yet
    there."""
    if data.tokenizer == "bytes":
        return 256
    if data.tokenizer == "bpe":
        return data.vocab_size
    path = Path(data.tokenizer)
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(path)).get_vocab_size()


class SweepSpec(Strict):
    sweep: SweepSection = SweepSection()
    model: ModelSection = ModelSection()
    data: DataConfig = DataConfig()
    train: TrainSection = TrainSection()
    grid: list[Grid] = Field(min_length=1)
    launch: LaunchSection = LaunchSection()

    @model_validator(mode="before")
    @classmethod
    def _no_sizes(cls, raw: Any) -> Any:
        model = raw.get("model", {}) if isinstance(raw, dict) else {}
        sized = [key for key in SIZE_FIELDS if isinstance(model, dict) and key in model]
        if sized:
            raise ValueError(
                f"model.{sized[0]} is chosen by the shape search; set the shape rules "
                f"({', '.join(SHAPE_RULES)}) instead"
            )
        if isinstance(raw, dict) and "tokens" in raw.get("train", {}):
            raise ValueError("train.tokens is set per run by the grids; remove it")
        return raw

    @model_validator(mode="after")
    def _sections(self) -> SweepSpec:
        ShapeRules(**self.shape_fields)
        # One place for each: the window is train.seq_len, the vocabulary the tokenizer's.
        given = self.model.max_seq_len
        if given is not None and given < self.train.seq_len:
            raise ValueError(
                f"model.max_seq_len ({given}) is less than train.seq_len ({self.train.seq_len}); "
                "leave it out: it follows train.seq_len"
            )
        vocab = tokenizer_vocab_size(self.data)
        if self.model.vocab_size is None and vocab is None:
            raise ValueError(
                f"model.vocab_size: the tokenizer {self.data.tokenizer} does not exist yet; "
                "set model.vocab_size"
            )
        if self.model.vocab_size is not None and vocab and self.model.vocab_size < vocab:
            raise ValueError(
                f"model.vocab_size ({self.model.vocab_size}) is smaller than the tokenizer's "
                f"({vocab}); leave it out: it follows [data]"
            )
        ModelConfig(**self.architecture)  # impossible combinations fail here
        names = [g.name for g in self.grid]
        if len(set(names)) != len(names):
            raise ValueError(f"grid names must differ; got {names}")
        for g in self.grid:
            if isinstance(g, CartesianGrid) and g.apply_to not in ("all", *names):
                raise ValueError(f"grid {g.name!r}: apply_to {g.apply_to!r} names no grid")
        return self

    @property
    def shape_fields(self) -> dict[str, Any]:
        return self.model.model_dump(include=set(SHAPE_RULES), exclude_unset=True)

    @property
    def shape(self) -> ShapeRules:
        return ShapeRules(**self.shape_fields)

    @property
    def architecture(self) -> dict[str, Any]:
        """The ModelConfig fields every run shares (sizes come from the shape search)."""
        arch = self.model.model_dump(exclude=set(SHAPE_RULES), exclude_unset=True)
        if arch.get("max_seq_len") is None:
            arch["max_seq_len"] = self.train.seq_len
        if arch.get("vocab_size") is None:
            arch["vocab_size"] = tokenizer_vocab_size(self.data)
        return arch

    @property
    def train_defaults(self) -> dict[str, Any]:
        """The [train] keys the spec sets (the rest take TrainConfig's defaults)."""
        return self.train.model_dump(exclude_unset=True)


def budget_list(budgets: Budgets) -> list[float]:
    if isinstance(budgets, list):
        return sorted(float(b) for b in budgets)
    start, stop = budgets.start, budgets.stop
    n = int(round(math.log10(stop / start) * budgets.per_decade)) + 1
    return [start * (stop / start) ** (i / max(n - 1, 1)) for i in range(n)]


GRID_KINDS = ("isoflop", "fixed", "hparams", "grid")


def load_spec(path: str | Path) -> SweepSpec:
    raw = read_toml(path)
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, path, GRID_KINDS)) from None
