"""The shapes of the files between stages, as pydantic models: what ``scaling.rundir``
checks when it writes and reads plan.csv (``PlanRow``), metrics.jsonl (``MetricsLine``),
result.json (``Result``) and summary.json (``Summary``), so a writer cannot leave a file the
next stage refuses, and a hand-edited or damaged file is one line naming file, row and field
rather than a crash three modules later."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scaling.config import ConfigError, describe_validation_error

Finite = float  # no NaN, no inf: the models say allow_inf_nan=False


class _Record(BaseModel):
    # Files carry more than the fields checked here (a traceback, tracker ids, ...): kept.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class Branch(_Record):
    """A WSD cooldown branch's point, in result.json's ``branches``: ``tokens`` and ``flops``
    those of a run that ended there (the point's), ``cooldown_flops`` what the branch itself
    cost, its cooldown's steps (absent in results written before it was recorded)."""

    step: int | None = Field(None, ge=1)
    tokens: Finite = Field(gt=0)
    flops: Finite = Field(gt=0)
    cooldown_flops: Finite | None = Field(None, ge=0)
    eval_loss: Finite = Field(gt=0)
    eval_bpb: Finite | None = None


class Result(_Record):
    """result.json: how a run ended. ``done`` carries its final losses, tokens and FLOPs."""

    run_id: str | None = None
    status: Literal["done", "pruned", "failed", "diverged"]
    final_eval_loss: Finite | None = Field(None, gt=0)
    final_eval_bpb: Finite | None = Field(None, gt=0)
    final_train_loss: Finite | None = None
    tokens: Finite | None = Field(None, ge=0)
    flops: Finite | None = Field(None, ge=0)
    steps: int | None = Field(None, ge=0)
    unique_tokens: Finite | None = Field(None, ge=0)
    epochs: Finite | None = Field(None, ge=0)
    wall_s: Finite | None = Field(None, ge=0)
    flop_formula: str | None = None
    branches: list[Branch] = Field(default_factory=list)
    error: str | None = None
    reason: str | None = None


class MetricsLine(_Record):
    """One line of metrics.jsonl: a logged step. The trainer adds what it measured (throughput,
    MFU, memory, evaluation, MoE routing); these are what the fits, plots and status read."""

    # A diverging run's last line may hold an infinite or NaN loss: it is still its record.
    model_config = ConfigDict(extra="allow", allow_inf_nan=True)

    step: int = Field(ge=0)
    tokens: Finite = Field(ge=0)
    flops: Finite | None = Field(None, ge=0)
    flop_formula: str | None = None
    lr: Finite | None = Field(None, ge=0)
    train_loss: Finite | None = None
    eval_loss: Finite | None = None
    eval_bpb: Finite | None = None
    tokens_per_s: Finite | None = Field(None, ge=0)


class PlanRow(_Record):
    """A row of plan.csv: one planned run. ``budget`` is empty for a fixed grid's runs, ``lr``,
    ``batch_tokens`` and ``steps`` in plans written before they were columns."""

    run_id: str
    grid: str | None = None
    kind: str | None = None
    budget: Finite | None = Field(None, ge=0)
    params: int = Field(ge=1)
    params_nonembedding: int | None = Field(None, ge=0)
    params_active: int | None = Field(None, ge=1)
    tokens: int = Field(ge=1)
    flops: Finite = Field(ge=0)
    lr: Finite | None = Field(None, ge=0)
    batch_tokens: int | None = Field(None, ge=1)
    steps: int | None = Field(None, ge=1)


class Summary(_Record):
    """RUNS/summary.json, the demo's verdict: what `scaling plot` draws of it."""

    budget: Finite = Field(gt=0)
    predicted_loss: Finite = Field(gt=0)
    measured_loss: Finite | None = Field(None, gt=0)
    predicted_interval: tuple[Finite, Finite] | None = None
    holdout_params: int | None = Field(None, ge=1)
    holdout_tokens: int | None = Field(None, ge=1)


def validated(model: type[_Record], data: Any, where: str) -> dict[str, Any]:
    """``data`` checked against ``model``, as a dict with every key it had (ConfigError naming
    ``where`` and the field otherwise)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a JSON object is needed, not {type(data).__name__}")
    try:
        checked = model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, where)) from None
    return {**data, **checked.model_dump(include=set(data))}


def plan_numbers() -> dict[str, tuple[float, bool]]:
    """plan.csv's numeric columns as ``{column: (smallest allowed, may be empty)}``, from
    ``PlanRow``: what ``RunsDir.read_plan`` checks row by row with the row's number."""
    numbers = {}
    for name, field in PlanRow.model_fields.items():
        bound = next((m for m in field.metadata if hasattr(m, "ge")), None)
        if bound is not None:
            numbers[name] = (bound.ge, not field.is_required())
    return numbers
