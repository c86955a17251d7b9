"""Learning rate and batch size as a constant, a formula of N, D and C, or a fitted
hyperparameter law (``fit:PATH``, the output of ``scaling fit --law hparams``)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from scaling.config import ConfigError

FORMULA_NAMES = {"sqrt": math.sqrt, "log": math.log, "exp": math.exp, "min": min, "max": max}


def load_law(reference: str, spec_dir: Path, question: str, field: str):
    """The law of ``fit:PATH`` (relative to the spec's folder), checked to answer ``question``
    (optimum, hyperparameters: see ``scaling.fitting.base``)."""
    from scaling.fitting import FitError, Law

    path = Path(reference.removeprefix("fit:"))
    path = path if path.is_absolute() else spec_dir / path
    try:
        law = Law.from_json(path)
    except FitError as err:
        raise ConfigError(f"{field}: {err}") from None
    if question not in law.answers:
        raise ConfigError(
            f"{field}: {path} holds a {law.law} law, which gives no {question}; fit one that "
            "does (scaling fit --law "
            + ("hparams" if question == "hyperparameters" else "parametric or isoflop")
            + ")"
        )
    return law


def evaluate(rule: Any, field: str, spec_dir: Path, N: float, D: float, C: float) -> float:
    """The value of ``rule`` for a run of N parameters, D tokens and C FLOPs."""
    if isinstance(rule, int | float):
        return float(rule)
    if not isinstance(rule, str):
        raise ConfigError(f"{field}: expected a number, a formula of N, D, C, or fit:PATH")
    if rule.startswith("fit:"):
        law = load_law(rule, spec_dir, "hyperparameters", field)
        key = "lr" if field.endswith("lr") else "batch_tokens"
        prediction = law.hyperparameters(C)
        if key not in prediction:
            raise ConfigError(f"{field}: the hparams law in {rule[4:]} has no {key} law")
        return float(prediction[key])
    try:
        value = eval(rule, {"__builtins__": {}}, {**FORMULA_NAMES, "N": N, "D": D, "C": C})  # noqa: S307
        return float(value)
    except Exception as err:  # the user's own formula: report it, whatever went wrong
        raise ConfigError(
            f"{field}: cannot evaluate {rule!r} ({err}); names: N, D, C, {', '.join(FORMULA_NAMES)}"
        ) from None
