"""metrics.jsonl, throughput and MFU, trackers."""

from __future__ import annotations

import importlib.util
import resource
import sys
from typing import Any

import torch

from scaling.config import ConfigError
from scaling.rundir import RunDir

# Peak dense bf16 tensor FLOP/s (no sparsity), from the vendors' data sheets.
PEAK_BF16_FLOPS = {
    "H200": 989e12,
    "H100": 989e12,  # SXM; the PCIe card is 756e12
    "A100": 312e12,
    "A10G": 125e12,
    "L40S": 362e12,
    "L4": 121e12,
    "RTX 4090": 165e12,
    "RTX 3090": 71e12,
    "V100": 125e12,  # fp16
}


def device_peak_flops(device: torch.device) -> tuple[str, float | None]:
    """(device name, peak bf16 FLOP/s or None when unknown or on CPU)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    if "H100" in name and "PCIe" in name:
        return name, 756e12
    for key, peak in PEAK_BF16_FLOPS.items():
        if key in name:
            return name, peak
    return name, None


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
