"""The training loop's own state, checkpointed beside the model, the optimizer and the
sampler: where the run is, how long it has run, what divergence checks have seen, the cooldown
branches done, the tracker's run id."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainState:
    step: int = 0  # optimizer steps taken
    wall_s: float = 0.0  # training time, across resumes
    best_train_loss: float = math.inf
    best_eval_loss: float = math.inf
    bad_train_loss: int = 0  # divergence checks in a row above the factor
    bad_eval_loss: int = 0
    branches: list[dict[str, Any]] = field(default_factory=list)  # WSD cooldown points
    wandb_id: str | None = None

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """From a checkpoint's state.json; one written before the sampler had its own entry
        kept ``sampler_position`` here, which is not this state's."""
        for name in self.__dataclass_fields__:
            if name in state:
                setattr(self, name, state[name])
