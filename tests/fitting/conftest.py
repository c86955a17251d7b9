import numpy as np
import pandas as pd
import pytest

CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def chinchilla_loss(p, N, D):
    return p["E"] + p["A"] / N ** p["alpha"] + p["B"] / D ** p["beta"]


def isoflop_points(
    p=CHINCHILLA,
    budgets=None,
    per_budget=9,
    spread=1.5,
    noise=0.0,
    seed=0,
    skew=0.0,
):
    """Points on IsoFLOP profiles centred (in log N) on the law's own optimum, + ``skew``."""
    rng = np.random.default_rng(seed)
    budgets = np.logspace(18, 21, 7) if budgets is None else budgets
    a = p["beta"] / (p["alpha"] + p["beta"])
    G = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
    rows = []
    for C in budgets:
        n_opt = G * (C / 6) ** a
        for offset in np.linspace(-spread, spread, per_budget) + skew:
            N = n_opt * np.exp(offset)
            D = C / (6 * N)
            loss = (
                chinchilla_loss(p, N, D) * np.exp(rng.normal(0, noise))
                if noise
                else chinchilla_loss(p, N, D)
            )
            rows.append({"params": N, "tokens": D, "flops": C, "budget": C, "loss": loss})
    return pd.DataFrame(rows)


@pytest.fixture
def chinchilla_points():
    return isoflop_points()


def random_truth(rng) -> dict[str, float]:
    """A Chinchilla-form law drawn at random: E in [1, 3], A and B in [e^3, e^8], exponents in
    [0.2, 0.6] (what the recovery tests fit)."""
    return {
        "E": rng.uniform(1.0, 3.0),
        "A": float(np.exp(rng.uniform(3, 8))),
        "B": float(np.exp(rng.uniform(3, 8))),
        "alpha": rng.uniform(0.2, 0.6),
        "beta": rng.uniform(0.2, 0.6),
    }
