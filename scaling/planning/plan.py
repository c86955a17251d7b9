"""From a sweep spec to the list of runs: targets per grid, shapes, tokens, learning rates.

Each grid block yields requests (a target size, a budget or a token count, and overrides);
a ``grid`` block multiplies the requests of the others by its axes. Every request becomes a
``RunConfig`` whose ``run_id`` hashes the config itself, so replanning never duplicates work.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from scaling.config import ConfigError, DataConfig, RunConfig, TrainConfig, run_id_of
from scaling.counting import count_params, flops_per_token
from scaling.planning import rules
from scaling.planning.shapes import Shape, search_shape, search_shapes, shrinking_shapes
from scaling.planning.spec import (
    CartesianGrid,
    FixedGrid,
    HparamsGrid,
    IsoFLOPGrid,
    SweepSpec,
    budget_list,
)


@dataclass
class Request:
    grid: str
    kind: str
    target: float
    budget: float | None = None
    tokens: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # "model.x", "train.lr", ...


@dataclass
class Plan:
    runs: list[dict[str, Any]]  # plan.csv rows, each with its "config" (RunConfig)
    warnings: list[str]
    duplicates: list[str]


def _centre(grid, budget: float, spec: SweepSpec, spec_dir: Path) -> float:
    """The size a budget's sizes spread around: a law's N_opt(C) (``fit:PATH``), or the N
    that spends C on t tokens per parameter under the sweep's own FLOP formula, C = f(N)·t·N
    with f(N) the FLOPs per token of N's shape (6N under "6N"; more under "chinchilla" and
    "exact", which count attention and logits)."""
    if grid.centre.startswith("fit:"):
        law = rules.load_law(grid.centre, spec_dir, "optimum", f"grid {grid.name}: centre")
        return law.optimum(budget)["params"]
    try:
        tokens_per_param = float(grid.centre)
    except ValueError:
        raise ConfigError(
            f"grid {grid.name}: centre {grid.centre!r} must be a number of tokens "
            "per parameter or fit:PATH"
        ) from None
    size = math.sqrt(budget / (6 * tokens_per_param))
    for _ in range(2):  # f(N)/N changes slowly with N: two fixed-point steps settle it
        shape = search_shape(size, spec.architecture, spec.shape, spec.sweep.size)
        per_token = flops_per_token(shape.config, spec.train.seq_len, spec.sweep.flop_formula)
        size = math.sqrt(budget / (per_token / shape.params * tokens_per_param))
    return size


def _corpus_bytes(spec: SweepSpec) -> int:
    from scaling.data.corpus import corpus_fingerprint

    return corpus_fingerprint(spec.data)[1].bytes


def _requests(spec: SweepSpec, spec_dir: Path) -> list[Request]:
    by_grid: dict[str, list[Request]] = {}
    for grid in spec.grid:
        out: list[Request] = []
        if isinstance(grid, IsoFLOPGrid):
            for budget in budget_list(grid.budgets):
                centre = _centre(grid, budget, spec, spec_dir)
                offsets = (
                    [0.0]
                    if grid.sizes == 1
                    else [-1 + 2 * i / (grid.sizes - 1) for i in range(grid.sizes)]
                )
                out += [
                    Request(grid.name, "isoflop", centre * grid.spread**o, budget=budget)
                    for o in offsets
                ]
        elif isinstance(grid, HparamsGrid):
            for budget in budget_list(grid.budgets):
                centre = _centre(grid, budget, spec, spec_dir)
                for lr, batch in itertools.product(grid.lr, grid.batch_tokens or [None]):
                    overrides = {"train.lr": lr}
                    if batch is not None:
                        overrides["train.batch_tokens"] = batch
                    out.append(
                        Request(grid.name, "hparams", centre, budget=budget, overrides=overrides)
                    )
        elif isinstance(grid, FixedGrid):
            token_counts = [(n, t) for n in grid.params for t in grid.tokens or []]
            token_counts += [(n, r * n) for n in grid.params for r in grid.tokens_per_param or []]
            for fraction in grid.corpus_fractions:
                overrides = (
                    {}
                    if fraction == 1
                    else {"data.max_bytes": max(1, int(fraction * _corpus_bytes(spec)))}
                )
                out += [
                    Request(grid.name, "fixed", n, tokens=t, overrides=overrides)
                    for n, t in token_counts
                ]
        elif isinstance(grid, CartesianGrid) and grid.params:
            out += [
                Request(grid.name, "grid", n, tokens=t)
                for n in grid.params
                for t in grid.tokens or [20 * n]
            ]
        by_grid[grid.name] = out
    for grid in spec.grid:  # axes multiply the requests they apply to
        if not isinstance(grid, CartesianGrid):
            continue
        names = (
            [grid.name]
            if grid.params
            else (
                [g for g in by_grid if g != grid.name]
                if grid.apply_to == "all"
                else [grid.apply_to]
            )
        )
        keys = list(grid.axes)
        for name in names:
            by_grid[name] = [
                Request(
                    r.grid,
                    r.kind,
                    r.target,
                    r.budget,
                    r.tokens,
                    {**r.overrides, **dict(zip(keys, values, strict=True))},
                )
                for r in by_grid[name]
                for values in itertools.product(*grid.axes.values())
            ]
    requests = [r for group in by_grid.values() for r in group]
    if not requests:
        raise ConfigError("grid: the spec's grids give no run (a grid block alone needs params)")
    return requests


def _section(overrides: dict[str, Any], name: str) -> dict[str, Any]:
    return {k.split(".", 1)[1]: v for k, v in overrides.items() if k.startswith(name + ".")}


def _resolve(
    request: Request, shape: Shape, spec: SweepSpec, spec_dir: Path, train_defaults: dict[str, Any]
) -> RunConfig:
    model = shape.config
    train = {**train_defaults, **_section(request.overrides, "train")}
    seq_len = train.get("seq_len", TrainConfig.model_fields["seq_len"].default)
    micro = train.get("micro_batch_size", TrainConfig.model_fields["micro_batch_size"].default)
    formula = spec.sweep.flop_formula
    per_token = flops_per_token(model, seq_len, formula)
    N = shape.params
    tokens = request.tokens if request.tokens is not None else request.budget / per_token
    C = request.budget or tokens * per_token
    where = f"grid {request.grid}"
    lr = rules.evaluate(
        train.get("lr", TrainConfig.model_fields["lr"].default),
        f"{where}: train.lr",
        spec_dir,
        N,
        tokens,
        C,
    )
    batch = rules.evaluate(
        train.get("batch_tokens", TrainConfig.model_fields["batch_tokens"].default),
        f"{where}: train.batch_tokens",
        spec_dir,
        N,
        tokens,
        C,
    )
    unit = seq_len * micro
    batch_tokens = max(unit, int(round(batch / unit)) * unit)
    steps = int(round(tokens / batch_tokens))
    if steps < 1:
        budget = f"budget {request.budget:.3g}" if request.budget else f"{tokens:.3g} tokens"
        raise ConfigError(
            f"{where}: {budget} is less than one optimizer step ({batch_tokens:,} tokens) of a "
            f"{N:,}-parameter model; raise the budget or lower train.batch_tokens"
        )
    train.update(
        lr=lr,
        batch_tokens=batch_tokens,
        tokens=steps * batch_tokens,
        flop_formula=formula,
        seed=train.get("seed", spec.sweep.seed),
    )
    data = {**spec.data.model_dump(), **_section(request.overrides, "data")}
    try:
        config = RunConfig(model=model, data=DataConfig(**data), train=TrainConfig(**train))
    except ValidationError as err:
        from scaling.config import describe_validation_error

        raise ConfigError(describe_validation_error(err, where)) from None
    return config.model_copy(update={"run_id": run_id_of(config)})


def resolve_run(
    spec: SweepSpec,
    spec_dir: Path,
    size: float,
    budget: float | None = None,
    tokens: float | None = None,
    overrides: dict[str, Any] | None = None,
    grid: str = "run",
) -> RunConfig:
    """One run of the spec outside its grids: the shape nearest ``size`` parameters, trained
    on the tokens that spend ``budget`` (or on ``tokens``), with the spec's architecture,
    train settings and lr/batch rules, and ``overrides`` ("model.n_experts", "train.lr", ...)
    as a grid axis would set them. What the planner does for every run of a grid."""
    if (budget is None) == (tokens is None):
        raise ConfigError("resolve_run: give exactly one of budget and tokens")
    request = Request(grid, "single", size, budget, tokens, dict(overrides or {}))
    architecture = {**spec.architecture, **_section(request.overrides, "model")}
    shape = search_shape(size, architecture, spec.shape, spec.sweep.size)
    return _resolve(request, shape, spec, spec_dir, spec.train_defaults)


def plan_sweep(spec: SweepSpec, spec_dir: Path) -> Plan:
    """Every run of the spec, deduplicated, with the warnings a user should read first."""
    requests = _requests(spec, spec_dir)
    train_defaults = spec.train_defaults
    shapes: dict[tuple[str, float], Shape] = {}
    variants: dict[str, list[float]] = {}
    for r in requests:  # one shape search per architecture variant, all sizes together
        arch = json.dumps({**spec.architecture, **_section(r.overrides, "model")}, sort_keys=True)
        variants.setdefault(arch, []).append(r.target)
    warnings: list[str] = []
    for arch, targets in variants.items():
        architecture = json.loads(arch)
        found = search_shapes(targets, architecture, spec.shape, spec.sweep.size)
        shapes.update({(arch, t): s for t, s in found.items()})
        warnings += [f"shape: {note}" for note in shrinking_shapes(list(found.values()))]

    runs, duplicates, seen = [], [], set()
    low, high = spec.sweep.tokens_per_param_range
    for r in requests:
        arch = json.dumps({**spec.architecture, **_section(r.overrides, "model")}, sort_keys=True)
        shape = shapes[(arch, r.target)]
        config = _resolve(r, shape, spec, spec_dir, train_defaults)
        if config.run_id in seen:
            where = f" in budget {r.budget:.3g}" if r.budget else ""
            duplicates.append(
                f"{r.grid}: {shape.params:,} parameters × {config.train.tokens:,} tokens "
                f"appears twice{where}; kept once"
            )
            continue
        seen.add(config.run_id)
        row = _row(r, shape, config)
        runs.append(row)
        if row["steps"] < spec.sweep.min_steps:
            warnings.append(
                f"{row['run_id']}: {row['steps']} optimizer steps "
                f"(fewer than sweep.min_steps = {spec.sweep.min_steps})"
            )
        if not low <= row["tokens_per_param"] <= high:
            warnings.append(
                f"{row['run_id']}: {row['tokens_per_param']:.1f} tokens per parameter "
                f"(outside sweep.tokens_per_param_range {low:g}..{high:g})"
            )
        if r.budget and abs(row["flops"] / r.budget - 1) > 0.02:
            warnings.append(
                f"{row['run_id']}: {row['flops']:.3g} FLOPs, "
                f"{row['flops'] / r.budget - 1:+.1%} off its budget {r.budget:.3g} "
                "(whole optimizer steps; lower train.batch_tokens to come closer)"
            )
    return Plan(runs, warnings, duplicates)


def _row(request: Request, shape: Shape, config: RunConfig) -> dict[str, Any]:
    model, train = config.model, config.train
    counted = count_params(model)
    per_token = flops_per_token(model, train.seq_len, train.flop_formula)
    row = {
        "run_id": config.run_id,
        "grid": request.grid,
        "kind": request.kind,
        "budget": request.budget if request.budget else train.tokens * per_token,
        "params": counted.total,
        "params_nonembedding": counted.non_embedding,
        "params_active": counted.active,
        "target_params": round(request.target),
        "size_error": shape.error,
        "n_layers": model.n_layers,
        "d_model": model.d_model,
        "n_heads": model.n_heads,
        "n_kv_heads": model.kv_heads,
        "d_ff": model.ff_dim,
        "n_experts": model.n_experts,
        "top_k": model.top_k if model.n_experts else 0,
        "seq_len": train.seq_len,
        "batch_tokens": train.batch_tokens,
        "tokens": train.tokens,
        "steps": train.steps,
        "lr": train.lr,
        "schedule": train.schedule,
        "flops": train.tokens * per_token,
        "tokens_per_param": train.tokens / shape.params,
    }
    row.update({key: value for key, value in request.overrides.items()})
    row["config"] = config
    return row
