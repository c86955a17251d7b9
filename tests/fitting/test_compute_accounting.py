"""One compute accounting from plan to optimum (#27, item 2): a sweep planned under the
``chinchilla`` or ``exact`` FLOP formula, its points read back by ``results.load`` (which
hands them the sweep's formula), a law fitted on them; the law's optimum at a compute C, planned
as a run, is a model whose FLOPs counted by that formula are C, within 1%.

Before, a fit took one median k = FLOPs/(N·D) over all points; under these formulas k falls
with N (attention and logits weigh less in larger models), so the optimum spent another
compute than asked. The test shows that accounting would miss."""

import math

import numpy as np
import pytest

from scaling import results
from scaling.counting import count_params, flops_per_token
from scaling.fitting import Compute, ParametricLaw, prepare_points
from scaling.planning.output import write_plan
from scaling.planning.plan import plan_sweep, resolve_run
from scaling.planning.spec import load_spec
from scaling.rundir import RunsDir

from .conftest import CHINCHILLA, chinchilla_loss

SPEC = """
[sweep]
name = "accounting"
flop_formula = "{formula}"

[model]
vocab_size = 4096
max_seq_len = 256
head_dim = 32
d_model_multiple = 32
aspect_ratio_range = [16, 128]

[data]
source = "{corpus}"
vocab_size = 4096

[train]
seq_len = 256
batch_tokens = 8192
micro_batch_size = 8
lr = 0.001

[[grid]]
kind = "isoflop"
budgets = [1e15, 1e16, 1e17]
sizes = 5
spread = 3.0
"""


def _fitted(tmp_path, formula):
    """The parametric law fitted on a planned sweep's points (losses from a known law),
    through ``results.load`` as ``scaling fit RUNS`` reads them."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("some text for the corpus\n" * 2000)
    spec_path = tmp_path / "spec.toml"
    spec_path.write_text(SPEC.format(formula=formula, corpus=corpus))
    spec = load_spec(spec_path)
    plan = plan_sweep(spec, tmp_path)
    runs = tmp_path / "runs"
    write_plan(plan, spec, runs)
    for row in plan.runs:
        config = row["config"]
        tokens = config.train.tokens
        flops = tokens * flops_per_token(config.model, config.train.seq_len, formula)
        loss = chinchilla_loss(CHINCHILLA, row["params"], tokens)
        RunsDir(runs).run(row["run_id"]).write_result(
            {"status": "done", "final_eval_loss": loss, "tokens": tokens, "flops": flops}
        )
    points = prepare_points(results.load(runs), source=str(runs))
    assert points.formula == formula  # the sweep's formula travelled with the points
    return spec, ParametricLaw().fit(points), points


def _counted(spec, tmp_path, params: float, tokens: float) -> tuple[float, float]:
    """(the FLOPs the sweep's formula counts for a model of ``params`` parameters trained on
    ``tokens`` tokens, the relative size error of the model the planner builds for it).
    The planner's nearest shape stands in for the size, its FLOPs per parameter and token
    for the size's (they change by a fraction of a percent over its few percent of size)."""
    config = resolve_run(spec, tmp_path, params, tokens=tokens)
    per_token = flops_per_token(config.model, config.train.seq_len, spec.sweep.flop_formula)
    size = count_params(config.model).total
    return per_token / size * params * tokens, size / params - 1


@pytest.mark.parametrize("formula", ["chinchilla", "exact"])
def test_a_planned_optimum_spends_the_compute_asked(tmp_path, formula):
    spec, law, points = _fitted(tmp_path, formula)
    assert law.compute_.how == "fitted" and law.compute_.formula == formula
    ratio = points.frame["flops"] / (points.frame["params"] * points.frame["tokens"])
    assert ratio.max() / ratio.min() > 1.05  # k varies across the sweep: the case at issue
    median = Compute(k=float(np.median(ratio)), how="constant")  # the accounting before
    errors, before = [], []
    for target in (3e16, 1e17, 1e18):  # inside the budgets fitted and 10x beyond
        best = law.optimum(target)
        counted, size_error = _counted(spec, tmp_path, best["params"], best["tokens"])
        assert abs(size_error) < 0.05
        errors.append(counted / target - 1)
        assert best["loss"] == pytest.approx(
            chinchilla_loss(CHINCHILLA, best["params"], best["tokens"]), rel=1e-9
        )
        law.compute_, accounting = median, law.compute_
        old = law.optimum(target)
        law.compute_ = accounting
        before.append(_counted(spec, tmp_path, old["params"], old["tokens"])[0] / target - 1)
    print(f"{formula}: counted/target - 1 = {[f'{e:+.3%}' for e in errors]}")
    print(f"{formula}: with one median k (before) = {[f'{e:+.3%}' for e in before]}")
    assert max(map(abs, errors)) < 0.01
    assert max(map(abs, before)) > 0.02  # the test can tell the accountings apart


def test_the_optimum_is_the_least_loss_on_its_compute(tmp_path):
    """Under k(N) the optimum is the minimum of the loss along C = k(N)·N·D, not the
    closed form's: the loss there is below that of every nearby size spending C."""
    _, law, _ = _fitted(tmp_path, "exact")
    target = 1e17
    best = law.optimum(target)
    for factor in (0.8, 0.95, 1.05, 1.25):
        n = best["params"] * factor
        d = float(law.compute_.tokens(target, n))
        assert law.loss(n, d) > best["loss"]
    assert law.compute_for(params=best["params"]) == pytest.approx(target, rel=1e-6)
    assert math.isfinite(law.optimum(1e20)["params"])
