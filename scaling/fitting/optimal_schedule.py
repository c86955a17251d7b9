"""The learning-rate schedule that a fitted multi-power law predicts to end lowest, for a
number of steps and a peak lr (Luo et al. 2025, ICLR, Section 5).

As the paper's code does it (thu-yao-01-luo/MultiPowerLaw, commit
8da9f1902602f3391b971a811e3cc51604541769, ``src/optimization.py`` ``optimize_lr_schedule``,
defaults in ``src/config.py``): the warm-up is kept; after it the lr is the peak less the
running sum of non-negative reductions δ, η_j = max(peak − Σ_{i ≤ j} δ_i, min_lr), so every
schedule tried is non-increasing; Adam (betas 0.9, 0.999, eps 1e-8) from δ = 0 (a constant
lr) on the predicted final loss, each step followed by the projection δ ← clip(δ, 0, peak),
δ ← 0 where η ≤ min_lr. The repository's Adam lr is 5e-9 at a peak of 3e-4 for 10000 steps;
here it scales with the peak (δ is in the lr's units).

The objective is this package's multi-power law (``multipower``) on the whole schedule,
warm-up included, with its exact gradient in the lr of every step (derived below, O(steps)).
The repository's objective leaves the warm-up's own lr changes (negative reductions, which the
fitted law counts: ``MPL.forward``'s ``lr_gap``) out of the loss drop: at its 400M model's
parameters that lowers every schedule's value by about 0.156 (its log's "Final Loss" 2.53322
is 2.68905 under the law itself), nearly the same for every schedule, so the two optima agree:
ours is theirs to within 3.6% of the peak at any step, and ends within 7e-5 of their value
under their objective (benchmarks/optimal_schedule.py, BENCHMARKS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scaling.fitting.curves import schedule_from
from scaling.fitting.errors import FitError
from scaling.fitting.multipower import MultiPowerLaw

ADAM_LR_PER_PEAK = 5e-9 / 3e-4  # src/config.py OPT_LR at OPT_PEAK_LR
ITERATIONS = 10_000  # src/config.py OPT_MAX_STEPS
MIN_LR = 1e-10  # src/config.py OPT_MIN_LR


@dataclass
class OptimalSchedule:
    """The schedule found (``lr``, every step), its predicted final ``loss``, and the
    predicted final losses of the cosine and WSD schedules of the same steps, peak and
    warm-up (``baselines``: name → loss)."""

    lr: np.ndarray
    loss: float
    baselines: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss,
            "baselines": self.baselines,
            "gain": {name: loss - self.loss for name, loss in self.baselines.items()},
            "schedule": [{"step": j, "lr": float(x)} for j, x in enumerate(self.lr)],
        }


def final_loss(params: dict[str, float], lr: np.ndarray) -> tuple[float, np.ndarray]:
    """The multi-power law's loss at the last step of ``lr`` and its gradient in every η_j.

    With S_k = Σ_{τ=k..T} η_τ, c_k = η_{k−1} − η_k (k ≥ 1), x_k = η_k^(−γ)·S_k and
    G(x) = 1 − (C·x + 1)^(−β): L = L0 + A·S_0^(−α) − B·Σ_k c_k·G(x_k), so

        ∂L/∂η_j = −α·A·S_0^(−α−1) − B·(G(x_{j+1}) − G(x_j))
                  − B·Σ_{k ≤ j} c_k·G'(x_k)·η_k^(−γ) + B·γ·c_j·G'(x_j)·x_j / η_j

    (S_k holds η_j for every k ≤ j; η_j enters x_j through η_j^(−γ); c_j and c_{j+1} hold
    η_j with signs − and +)."""
    L0, A, alpha, B, C, beta, gamma = (params[k] for k in MultiPowerLaw.parameters)
    eta = np.maximum(np.asarray(lr, float), 1e-30)
    total = eta.sum()
    span = total - np.concatenate([[0.0], np.cumsum(eta)[:-1]])  # S_k
    change = np.zeros_like(eta)
    change[1:] = eta[:-1] - eta[1:]
    eta_gamma = np.exp(-gamma * np.log(eta))  # η^(−γ); exp and log: fewer powers, faster
    x = eta_gamma * span
    u = C * x + 1.0
    u_beta = np.exp(-beta * np.log(u))
    g = 1.0 - u_beta
    g_prime = beta * C * u_beta / u
    loss = L0 + A * total**-alpha - B * float(np.dot(change, g))
    grad = np.full_like(eta, -alpha * A * total ** (-alpha - 1.0))
    grad[:-1] -= B * g[1:]  # c_{j+1} holds +η_j
    grad[1:] += B * g[1:]  # c_j holds −η_j (c_0 = 0: no term at k = 0)
    weighted = change * g_prime
    grad -= B * np.cumsum(weighted * eta_gamma)
    grad += B * gamma * weighted * x / eta
    return float(loss), grad


def baseline_schedules(steps: int, peak_lr: float, warmup: int) -> dict[str, np.ndarray]:
    """The schedules the optimum is compared with, in the trainer's own vocabulary: cosine to
    a tenth of the peak (the paper's), and WSD with a 20% (1 − sqrt) cooldown."""
    common = f"steps={steps},lr={peak_lr},warmup={warmup}"
    return {
        "cosine": schedule_from(f"cosine:{common},min_lr=0.1"),
        "wsd": schedule_from(f"wsd:{common},cooldown=0.2"),
    }


REQUEST_KEYS = {
    "steps": "total steps (an int >= 2)",
    "lr": "peak lr (> 0)",
    "warmup": "warm-up steps (an int, 0 by default)",
    "iterations": f"Adam iterations ({ITERATIONS} by default)",
}


def parse_request(text: str) -> dict[str, Any]:
    """``steps=S,lr=X[,warmup=W][,iterations=N]`` as keyword arguments of
    ``optimal_schedule``; a bad item is one line naming it and what is allowed."""
    where = f"--optimal-schedule {text}"
    values: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in REQUEST_KEYS:
            raise FitError(
                f"{where}: {item!r} is not KEY=VALUE with KEY one of " + ", ".join(REQUEST_KEYS)
            )
        try:
            number = float(value)
        except ValueError:
            raise FitError(f"{where}: {key}={value!r} is not a number") from None
        if key != "lr":
            if number != int(number):
                raise FitError(f"{where}: {key}={value} must be an int ({REQUEST_KEYS[key]})")
            number = int(number)
        values["peak_lr" if key == "lr" else key] = number
    for key, name in (("steps", "steps"), ("peak_lr", "lr")):
        if key not in values:
            raise FitError(f"{where}: no {name}= ({REQUEST_KEYS[name]})")
    steps = values["steps"]
    for key, name, ok in (
        ("steps", "steps", steps >= 2),
        ("peak_lr", "lr", values["peak_lr"] > 0 and math.isfinite(values["peak_lr"])),
        ("warmup", "warmup", 0 <= values.get("warmup", 0) < steps),
        ("iterations", "iterations", values.get("iterations", 1) >= 1),
    ):
        if not ok:
            allowed = "below steps" if key == "warmup" else REQUEST_KEYS[name]
            raise FitError(f"{where}: {name}={values[key]:g} is out of range ({allowed})")
    return values


def optimal_schedule(
    law: MultiPowerLaw,
    steps: int,
    peak_lr: float,
    warmup: int = 0,
    iterations: int = ITERATIONS,
    min_lr: float = MIN_LR,
    adam_lr: float | None = None,
    warmup_lr: np.ndarray | None = None,
    progress=None,
) -> OptimalSchedule:
    """The non-increasing schedule after ``warmup`` steps that ``law`` predicts to end
    lowest after ``steps`` steps at peak ``peak_lr`` (see the module's docstring).
    ``warmup_lr``: the warm-up's lr per step (default: the trainer's linear warm-up, as the
    baselines'); ``progress``: called with (iteration, loss) every 100 iterations."""
    if law.law != "multi-power":
        raise FitError(
            f"the optimal schedule is the multi-power law's (Luo et al.); this is the {law.law} "
            "law (fit --law multi-power)",
            param="law",
            value=law.law,
        )
    law._check_fitted()
    for name, value, ok in (
        ("steps", steps, steps >= 2),
        ("peak_lr", peak_lr, peak_lr > 0),
        ("warmup", warmup, 0 <= warmup < steps),
        ("iterations", iterations, iterations >= 1),
        ("min_lr", min_lr, 0 < min_lr < peak_lr),
    ):
        if not ok:
            raise FitError(
                "out of range (steps >= 2, lr > 0, 0 <= warmup < steps, iterations >= 1)",
                param=name,
                value=value,
            )
    baselines = baseline_schedules(steps, peak_lr, warmup)
    head = baselines["wsd"][:warmup] if warmup_lr is None else np.asarray(warmup_lr, float)
    if len(head) != warmup:
        raise FitError(f"must hold {warmup} steps", param="warmup_lr", value=len(head))
    rate = ADAM_LR_PER_PEAK * peak_lr if adam_lr is None else adam_lr
    params = law.params_
    delta = np.zeros(steps - warmup)
    m, v = np.zeros_like(delta), np.zeros_like(delta)

    def schedule(delta: np.ndarray) -> np.ndarray:
        return np.concatenate([head, np.maximum(peak_lr - np.cumsum(delta), min_lr)])

    for t in range(1, iterations + 1):
        lr = schedule(delta)
        loss, grad_eta = final_loss(params, lr)
        tail = np.where(lr[warmup:] > min_lr, grad_eta[warmup:], 0.0)  # the clamp's gradient
        grad = -np.cumsum(tail[::-1])[::-1]  # η_j = peak − Σ_{i ≤ j} δ_i
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        delta -= rate * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        delta = np.clip(delta, 0.0, peak_lr)
        delta[peak_lr - np.cumsum(delta) <= min_lr] = 0.0
        if progress is not None and (t % 100 == 0 or t == iterations):
            progress(t, loss)
    lr = schedule(delta)
    return OptimalSchedule(
        lr=lr,
        loss=final_loss(params, lr)[0],
        baselines={name: final_loss(params, s)[0] for name, s in baselines.items()},
    )


__all__ = [
    "OptimalSchedule",
    "baseline_schedules",
    "final_loss",
    "optimal_schedule",
    "parse_request",
]
