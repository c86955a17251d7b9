"""Learning rate and batch size as a constant, a formula of N, D and C, or a fitted
hyperparameter law (``fit:PATH``, the output of ``scaling fit --law hparams``)."""

from __future__ import annotations

import ast
import math
import operator
from pathlib import Path
from typing import Any

from scaling.config import ConfigError

MAX_FORMULA_CHARS, MAX_FORMULA_DEPTH = 2_000, 100
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
    """The value of ``rule`` for a run of N parameters, D tokens and C FLOPs: a positive,
    finite number (a learning rate of inf, or a batch a fit puts below zero, is refused here
    rather than trained or quietly replaced)."""
    value = _value(rule, field, spec_dir, N, D, C)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(
            f"{field}: {_shown(rule)} gives {value} for N={N:.4g}, D={D:.4g}, C={C:.4g}; it "
            "must be a positive, finite number"
        )
    return value


def _value(rule: Any, field: str, spec_dir: Path, N: float, D: float, C: float) -> float:
    if isinstance(rule, bool):
        raise ConfigError(f"{field}: expected a number, a formula of N, D, C, or fit:PATH")
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
    except (ValueError, ArithmeticError, SyntaxError, TypeError, RecursionError) as err:
        raise ConfigError(
            f"{field}: cannot evaluate {_shown(rule)} ({err}); names: N, D, C, "
            + ", ".join(FORMULA_NAMES)
        ) from None


def _shown(rule: Any) -> str:
    text = repr(rule)
    return text if len(text) <= 60 else f"{text[:40]}...{text[-12:]} ({len(text):,} characters)"


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

    if len(text) > MAX_FORMULA_CHARS:
        raise ValueError(f"{len(text):,} characters; a formula has at most {MAX_FORMULA_CHARS:,}")
    try:
        tree = ast.parse(text, mode="eval")
    except (RecursionError, MemoryError):
        raise ValueError("nested too deeply to read") from None

    def walk(node: ast.AST, depth: int = 0) -> float:
        if depth > MAX_FORMULA_DEPTH:
            raise ValueError(f"nested more than {MAX_FORMULA_DEPTH} deep")
        walk_in = lambda child: walk(child, depth + 1)  # noqa: E731
        if isinstance(node, ast.Expression):
            return walk_in(node.body)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)  # float powers overflow at once; int powers can hang
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](walk_in(node.left), walk_in(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in OPERATORS:
            return OPERATORS[type(node.op)](walk_in(node.operand))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in FORMULA_NAMES
            and not node.keywords
        ):
            return FORMULA_NAMES[node.func.id](*(walk_in(arg) for arg in node.args))
        raise ValueError(f"{_shown(ast.unparse(node))} is not allowed")

    value = walk(tree)
    if isinstance(value, complex):
        raise ValueError("the value is not a real number")
    return value
