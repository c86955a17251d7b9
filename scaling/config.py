"""Configuration models (pydantic) and TOML loading.

Every config rejects unknown keys, and every impossible combination raises a
``pydantic.ValidationError`` whose message names the field. The CLI turns such an
error into one line (``ConfigError``) naming the file as well.

This module imports no torch: the counting and planning code use ``ModelConfig``
without building a model.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scaling.errors import ConfigError  # the ground's, named here where configs raise it

Activation = Literal["relu", "gelu", "swiglu"]
Norm = Literal["layernorm", "rmsnorm"]
Position = Literal["rope", "sinusoidal", "learned", "none"]


def round_up(value: float, multiple: int) -> int:
    return int(multiple * math.ceil(value / multiple))


class ModelConfig(BaseModel):
    """A decoder-only transformer, dense or Mixture-of-Experts.

    Size fields: ``d_model``, ``n_layers``, ``n_heads`` (and ``n_kv_heads``, ``d_ff``).
    Everything else is architecture. ``d_ff`` defaults to 4·d_model for ReLU/GELU and to
    the parameter-parity width 8·d_model/3 for SwiGLU, rounded up to ``d_ff_multiple``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab_size: int = Field(50304, ge=2)
    d_model: int = Field(256, ge=1)
    n_layers: int = Field(4, ge=1)
    n_heads: int = Field(4, ge=1)
    n_kv_heads: int | None = Field(None, ge=1, description="None = n_heads (MHA); 1 = MQA")
    d_ff: int | None = Field(None, ge=1, description="None = parity default (see class doc)")
    d_ff_multiple: int = Field(64, ge=1)
    activation: Activation = "gelu"
    norm: Norm = "layernorm"
    norm_eps: float = Field(1e-5, gt=0)
    position: Position = "rope"
    rope_theta: float = Field(10000.0, gt=0)
    max_seq_len: int = Field(1024, ge=1)
    qk_norm: bool = False
    bias: bool = False
    tie_embeddings: bool = True
    dropout: float = Field(0.0, ge=0, lt=1, description="residual dropout")
    attn_dropout: float = Field(0.0, ge=0, lt=1)
    embed_dropout: float = Field(0.0, ge=0, lt=1)
    init_std: float = Field(0.02, gt=0)
    scaled_residual_init: bool = Field(
        True, description="GPT-2: std/sqrt(2·n_layers) on out-projections"
    )

    # How init, multipliers and learning rates scale with width and depth
    # (scaling.model.parametrization): µP transfers the lr tuned at base_width across width,
    # CompleteP also across depth from base_depth.
    parametrization: Literal["standard", "mup", "completep"] = "standard"
    base_width: int | None = Field(None, ge=1, description="mup, completep: the tuned width")
    base_depth: int | None = Field(None, ge=1, description="completep: the tuned depth")
    base_head_dim: int | None = Field(
        None, ge=1, description="mup: the head dim at base width; None = this model's"
    )
    mup_input_alpha: float = Field(1.0, gt=0, description="mup: embedding output multiplier")
    mup_output_alpha: float = Field(1.0, gt=0, description="mup: logits multiplier at base")

    # Mixture-of-Experts (n_experts = 0: dense)
    n_experts: int = Field(0, ge=0)
    top_k: int = Field(2, ge=1)
    moe_every: int = Field(1, ge=1, description="layer i is MoE when (i+1) % moe_every == 0")
    granularity: int = Field(1, ge=1, description="expert d_ff = d_ff / granularity")
    n_shared_experts: int = Field(0, ge=0)
    aux_loss_coef: float = Field(0.01, ge=0)
    z_loss_coef: float = Field(1e-3, ge=0)
    router_bias_rate: float = Field(0.0, ge=0, description="aux-loss-free balancing; 0 = off")

    @model_validator(mode="after")
    def _check_shapes(self) -> ModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})"
            )
        if self.kv_heads > self.n_heads or self.n_heads % self.kv_heads:
            raise ValueError(f"n_kv_heads ({self.kv_heads}) must divide n_heads ({self.n_heads})")
        if self.position == "rope" and self.head_dim % 2:
            raise ValueError(f"position = 'rope' needs an even head_dim, got {self.head_dim}")
        if self.n_experts:
            if self.top_k > self.n_experts:
                raise ValueError(
                    f"top_k ({self.top_k}) must be at most n_experts ({self.n_experts})"
                )
            if self.moe_every > self.n_layers:
                raise ValueError(
                    f"moe_every ({self.moe_every}) exceeds n_layers ({self.n_layers}): no MoE layer"
                )
            if self.ff_dim % self.granularity:
                raise ValueError(
                    f"granularity ({self.granularity}) must divide d_ff ({self.ff_dim})"
                )
        elif self.n_shared_experts or self.router_bias_rate:
            raise ValueError("n_shared_experts and router_bias_rate need n_experts > 0")
        self._check_parametrization()
        return self

    def _check_parametrization(self) -> None:
        kind = self.parametrization
        if kind != "standard" and self.base_width is None:
            raise ValueError(
                f"parametrization {kind!r} needs base_width: the width whose learning rate and "
                "initialisation transfer (e.g. the width of the lr sweep)"
            )
        if kind == "completep" and self.base_depth is None:
            raise ValueError("parametrization 'completep' needs base_depth: the tuned depth")
        unused = [
            name
            for name, needs in (("base_width", "mup"), ("base_depth", "completep"))
            if getattr(self, name) is not None and kind not in (needs, "completep")
        ]
        if unused:
            raise ValueError(
                f"{unused[0]} is set but parametrization is {kind!r}, which does not use it"
            )

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ff_dim(self) -> int:
        """The dense feed-forward width (the resolved ``d_ff``)."""
        if self.d_ff is not None:
            return self.d_ff
        width = 8 * self.d_model / 3 if self.activation == "swiglu" else 4 * self.d_model
        return round_up(width, self.d_ff_multiple)

    @property
    def expert_dim(self) -> int:
        return self.ff_dim // self.granularity

    def is_moe_layer(self, layer: int) -> bool:
        return self.n_experts > 0 and (layer + 1) % self.moe_every == 0

    @property
    def n_moe_layers(self) -> int:
        return sum(self.is_moe_layer(i) for i in range(self.n_layers))


BRANCH_MISMATCHES = ("list_type", "dict_type", "model_type", "model_attributes_type")


def describe_validation_error(
    err: ValidationError, source: str | Path, tags: tuple[str, ...] = ()
) -> str:
    """One line: ``source: field: message`` for the first error (and a count of the rest).
    Of a union's errors, those that only say the input is not of a branch's type are passed
    over; the field path drops pydantic's branch names and the ``tags`` of tagged unions."""
    errors = err.errors()
    meaningful = [e for e in errors if e["type"] not in BRANCH_MISMATCHES] or errors
    first = meaningful[0]
    field = ""
    previous = None
    for part in first["loc"]:
        if isinstance(part, int):
            field += f"[{part}]"
        elif "[" in part or (isinstance(previous, int) and part in tags):
            pass  # a union branch ("list[constrained-float]") or a tag ("isoflop")
        else:
            field += f".{part}" if field else part
        previous = part
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "literal_error":
        message = f"got {first['input']!r}; " + message
    elif first["type"] == "union_tag_invalid":
        message = f"got {first['input'].get('kind')!r}; " + message
    rest = len(meaningful) - 1
    more = f" (and {rest} more)" if rest else ""
    # A cross-field check has no location; its message names the fields itself.
    return f"{source}: {field + ': ' if field else ''}{message}{more}"


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None


def load_section(
    cls: type[BaseModel],
    path: str | Path | None,
    section: str,
    overrides: dict[str, Any] | None = None,
    overrides_source: str = "--set",
) -> Any:
    """A config of type ``cls`` from the ``[section]`` table of a TOML file, or from its top
    level when the file has no tables at all; ``overrides`` win. Raises ``ConfigError``."""
    fields: dict[str, Any] = {}
    source = overrides_source
    if path is not None:
        raw = read_toml(path)
        if section in raw:
            fields.update(raw[section])
            source = f"{path}: [{section}]"
        elif not any(isinstance(value, dict) for value in raw.values()):
            fields.update(raw)
            source = str(path)
    fields.update(overrides or {})
    try:
        return cls.model_validate(fields)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, source)) from None


def load_model_config(path: str | Path) -> ModelConfig:
    """A ``ModelConfig`` from a TOML file: top-level keys, or a ``[model]`` table."""
    return load_section(ModelConfig, path, "model")


class DataConfig(BaseModel):
    """Where the text comes from, how it is split, and how it is tokenized.

    ``source``: ``builtin:python-stdlib`` (the running interpreter's standard library, no
    download), a file, a directory (searched recursively), a glob, or ``hf:NAME[:split]``.
    Files: plain text (each file one document), ``.jsonl`` (each line one document, text in
    ``text_field``) and ``.parquet`` (each row one document, column ``text_field``).
    ``tokenizer``: ``bpe`` (byte-level BPE trained here on the training split, ``vocab_size``
    tokens), ``bytes`` (the 256 byte values; NUL ends a document) or a path to a
    ``tokenizer.json``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = "builtin:python-stdlib"
    include_tests: bool = Field(False, description="builtin:python-stdlib: add its test folders")
    text_field: str = "text"
    extensions: tuple[str, ...] = (".txt", ".md", ".rst", ".py", ".jsonl", ".parquet")
    max_bytes: int | None = Field(None, ge=1, description="stop reading after this many bytes")
    val_fraction: float = Field(0.02, gt=0, lt=1)
    tokenizer: str = "bpe"
    vocab_size: int = Field(4096, ge=1)

    @model_validator(mode="after")
    def _check_tokenizer(self) -> DataConfig:
        if self.tokenizer == "bpe" and self.vocab_size < 257:
            raise ValueError(
                f"vocab_size ({self.vocab_size}) is too small for byte-level BPE: it needs the "
                "256 byte values and an end-of-document token, so at least 257"
            )
        return self


Schedule = Literal["cosine", "linear", "constant", "wsd"]
CooldownShape = Literal["linear", "cosine", "1-sqrt"]
FlopFormula = Literal["6N", "6N_nonembedding", "chinchilla", "exact"]


class TrainConfig(BaseModel):
    """One training run: budget, batch, optimizer, schedule, precision and bookkeeping.

    The run ends after ``tokens // batch_tokens`` optimizer steps (whole steps; the tokens
    actually trained are reported). ``batch_tokens`` is the global batch, the same for any
    number of processes; gradient accumulation follows from ``micro_batch_size``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens: int = Field(2_000_000, ge=1, description="token budget of the run")
    batch_tokens: int = Field(16_384, ge=1, description="global batch in tokens")
    micro_batch_size: int = Field(8, ge=1, description="sequences per process per micro-step")
    seq_len: int = Field(256, ge=1)
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = Field(1e-8, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    decay_norms_and_embeddings: bool = False
    warmup_steps: int | None = Field(None, ge=0, description="None: warmup_fraction of steps")
    warmup_fraction: float = Field(0.02, ge=0, lt=1)
    schedule: Schedule = "cosine"
    min_lr_fraction: float = Field(0.1, ge=0, le=1, description="cosine/linear end, × peak")
    cooldown_fraction: float = Field(0.2, gt=0, le=1, description="WSD: share of a run or branch")
    cooldown_shape: CooldownShape = "1-sqrt"
    branches: tuple[float, ...] = Field(
        (), description="WSD: extra cooldown branches at these fractions of the budget"
    )
    grad_clip: float = Field(1.0, ge=0, description="0 = no clipping")
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    activation_checkpointing: bool = False
    parallelism: Literal["auto", "ddp", "fsdp"] = "auto"
    eval_interval: int = Field(50, ge=0, description="steps between evals; 0 = only at the end")
    eval_windows: int = Field(32, ge=1, description="validation windows, shared across a sweep")
    log_interval: int = Field(10, ge=1)
    checkpoint_interval: int = Field(100, ge=1)
    collective_timeout_s: float = Field(
        1800.0,
        gt=0,
        description="how long a process waits in a collective (a lost process of a "
        "multi-process run is noticed by the others after this long)",
    )
    seed: int = 0
    flop_formula: FlopFormula = "6N"
    trackers: tuple[Literal["tensorboard", "wandb"], ...] = ()
    divergence_factor: float = Field(3.0, gt=1, description="loss above factor × best is bad")
    divergence_patience: int = Field(3, ge=1, description="bad evaluations in a row to stop")

    @model_validator(mode="after")
    def _check_batch(self) -> TrainConfig:
        if self.batch_tokens % self.seq_len:
            raise ValueError(
                f"batch_tokens ({self.batch_tokens}) must be a multiple of seq_len ({self.seq_len})"
            )
        if self.tokens < self.batch_tokens:
            raise ValueError(
                f"tokens ({self.tokens}) is less than one optimizer step of batch_tokens "
                f"({self.batch_tokens})"
            )
        if self.branches and self.schedule != "wsd":
            raise ValueError("branches need schedule = 'wsd'")
        if any(not 0 < b < 1 for b in self.branches):
            raise ValueError("branches are fractions of the budget, each in (0, 1)")
        return self

    @property
    def batch_sequences(self) -> int:
        return self.batch_tokens // self.seq_len

    @property
    def steps(self) -> int:
        return self.tokens // self.batch_tokens

    def accumulation(self, world_size: int) -> int:
        """Micro-steps per optimizer step on each of ``world_size`` processes."""
        per_process, rest = divmod(self.batch_sequences, world_size)
        if rest or per_process % self.micro_batch_size:
            raise ConfigError(
                f"train.micro_batch_size: {self.batch_sequences} sequences per batch do not "
                f"split into micro-batches of {self.micro_batch_size} on {world_size} processes"
            )
        return per_process // self.micro_batch_size


class RunConfig(BaseModel):
    """Everything a run needs: what ``RUNS/runs/<run_id>/config.json`` holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str | None = None
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()

    @model_validator(mode="after")
    def _check_lengths(self) -> RunConfig:
        if self.train.seq_len > self.model.max_seq_len:
            raise ValueError(
                f"train.seq_len ({self.train.seq_len}) exceeds model.max_seq_len "
                f"({self.model.max_seq_len})"
            )
        tokenizer_vocab = 256 if self.data.tokenizer == "bytes" else self.data.vocab_size
        if self.data.tokenizer in ("bpe", "bytes") and self.model.vocab_size < tokenizer_vocab:
            raise ValueError(
                f"model.vocab_size ({self.model.vocab_size}) is smaller than the tokenizer's "
                f"({tokenizer_vocab})"
            )
        return self


def load_run_config(path: str | Path) -> RunConfig:
    """A ``RunConfig`` from config.json (or a TOML with [model], [data], [train] tables)."""
    path = Path(path)
    if path.suffix == ".json":
        import json

        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
    else:
        raw = read_toml(path)
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, path)) from None


def run_id_of(config: RunConfig) -> str:
    """A run's id: the hash of its config, so replanning never duplicates a run and an edited
    config.json is found out. Only the fields that differ from their defaults are hashed: a
    field added in a later version, with a default, leaves every earlier run's id as it was."""
    fields = config.model_dump(mode="json", exclude_defaults=True, exclude={"run_id"})
    return _hash(fields)


def full_run_id_of(written: dict[str, Any]) -> str:
    """The id of a config.json as planned before 0.2 hashed it: every field, as written."""
    return _hash({key: value for key, value in written.items() if key != "run_id"})


def _hash(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
