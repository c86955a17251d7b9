"""metrics.jsonl, throughput and MFU, trackers."""

from __future__ import annotations

import importlib.util
import resource
import sys
from typing import Any

import torch

from scaling.config import ConfigError
from scaling.devices import gpu_peak_flops
from scaling.rundir import RunDir


def device_peak_flops(device: torch.device, precision: str) -> tuple[str, float | None]:
    """(device name, its peak FLOP/s at the run's precision, or None when unknown or on
    CPU). An fp32 run is measured against the fp32 peak: against bf16's it would read ~7%."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, gpu_peak_flops(name, precision)


def reset_peak_memory(device: torch.device) -> None:
    """On a GPU, start the next window's peak afresh (the CPU's peak RSS cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


class MetricsLog:
    """metrics.jsonl of a run (through ``RunDir``): started afresh, or on resume cut to the
    lines the checkpoint covers, so a resumed run's file reads as if it had never stopped."""

    def __init__(self, run: RunDir, resume_step: int | None, enabled: bool = True):
        self.run, self.enabled = run, enabled
        if enabled:
            run.start_metrics(resume_step)

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            self.run.append_metrics(record)


class Trackers:
    """TensorBoard and/or Weights & Biases through Accelerate's tracker API (``log_with`` on the
    Accelerator, ``init_trackers``, ``log``, ``end_training``), fed the values metrics.jsonl
    gets; the file stays the source of truth. TensorBoard writes under RUN/tensorboard/scaling,
    W&B under RUN/wandb (offline with ``WANDB_MODE=offline``); a resumed run continues its W&B
    run (its id is in the checkpoint)."""

    def __init__(
        self,
        accelerator,
        names,
        run: RunDir,
        run_id: str | None,
        config: dict,
        wandb_id: str | None = None,
    ):
        self.accelerator, self.names, self.wandb_id = accelerator, tuple(names), wandb_id
        if not self.names:
            return
        init_kwargs = {}
        if "wandb" in self.names:
            init_kwargs["wandb"] = {
                "name": run_id,
                "id": wandb_id,
                "resume": "allow",
                "dir": str(run.path),
            }
        accelerator.init_trackers("scaling", config=_flat(config), init_kwargs=init_kwargs)
        if "wandb" in self.names and accelerator.is_main_process:
            self.wandb_id = accelerator.get_tracker("wandb", unwrap=True).id

    def log(self, record: dict[str, Any]) -> None:
        if self.names:
            values = {
                k: v
                for k, v in record.items()
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "step"
            }
            self.accelerator.log(values, step=record["step"])

    def close(self) -> None:
        if self.names:
            self.accelerator.end_training()


def check_trackers(names) -> None:
    """Each tracker named is installed: checked before the Accelerator is made (Accelerate
    caches what it finds, and would only warn)."""
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ConfigError(
                f"train.trackers: {name} is not installed (pip install 'scaling[trackers]')"
            )


def _flat(config: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as one level of scalars (what TensorBoard's hparams accept)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, bool | int | float | str):
            out[name] = value
        else:
            out[name] = str(value)
    return out
