"""The shapes of the files between stages, as pydantic models: what ``scaling.rundir``
checks when it reads result.json, plan.csv and summary.json, so a hand-edited or damaged
file is one line naming file, row and field rather than a crash three modules later."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scaling.config import ConfigError, describe_validation_error

Finite = float  # no NaN, no inf: the models say allow_inf_nan=False


class _Record(BaseModel):
    # Files carry more than the fields checked here (a traceback, tracker ids, ...): kept.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)


class Branch(_Record):
    """A WSD cooldown branch's point, in result.json's ``branches``."""

    step: int | None = Field(None, ge=1)
    tokens: Finite = Field(gt=0)
    flops: Finite = Field(gt=0)
    eval_loss: Finite = Field(gt=0)
    eval_bpb: Finite | None = None


class Result(_Record):
    """result.json: how a run ended. ``done`` carries its final losses, tokens and FLOPs."""

    run_id: str | None = None
    status: Literal["done", "failed", "diverged"]
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


# plan.csv: the columns the launcher, status and the fits read, and what each must hold.
PLAN_NUMBERS = {  # column: (smallest allowed, may be empty)
    "params": (1, False),
    "tokens": (1, False),
    "flops": (0, False),
    "budget": (0, True),  # empty for fixed grids
    "lr": (0, True),
    "batch_tokens": (1, True),
    "steps": (1, True),
}
