"""Learning rate and batch size as a constant, a formula of N, D and C, or a fitted
hyperparameter law (``fit:PATH``, the output of ``scaling fit --law hparams``)."""

from __future__ import annotations

import ast
import math
import operator
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
        return float(evaluate_formula(rule, {"N": N, "D": D, "C": C}))
    except (ValueError, ArithmeticError, SyntaxError, TypeError) as err:
        raise ConfigError(
            f"{field}: cannot evaluate {rule!r} ({err}); names: N, D, C, {', '.join(FORMULA_NAMES)}"
        ) from None


OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def evaluate_formula(text: str, names: dict[str, float]) -> float:
    """Arithmetic on numbers, ``names`` and the functions of ``FORMULA_NAMES``, walked node by
    node: a sweep file written by someone else never runs code (no attributes, subscripts,
    lambdas or other names reach Python)."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)  # float powers overflow at once; int powers can hang
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](walk(node.operand))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORMULA_NAMES
            and not node.keywords
        ):
            return FORMULA_NAMES[node.func.id](*(walk(arg) for arg in node.args))
        raise ValueError(f"{ast.unparse(node)!r} is not allowed")

    value = walk(ast.parse(text, mode="eval"))
    if isinstance(value, complex):
        raise ValueError("the value is not a real number")
    return value
