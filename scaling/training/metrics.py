"""metrics.jsonl, throughput and MFU, trackers."""

from __future__ import annotations

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
    """TensorBoard and/or Weights & Biases, fed the same values as metrics.jsonl."""

    def __init__(
        self,
        names,
        run: RunDir,
        run_id: str | None,
        config: dict,
        enabled: bool,
        wandb_id: str | None = None,
    ):
        self.writers: list[Any] = []
        self.wandb_id = wandb_id
        if not enabled:
            return
        for name in names:
            try:
                if name == "tensorboard":
                    from torch.utils.tensorboard import SummaryWriter

                    self.writers.append(SummaryWriter(log_dir=str(run.tensorboard)))
                else:
                    import wandb

                    run = wandb.init(
                        project="scaling",
                        name=run_id,
                        id=wandb_id,
                        resume="allow",
                        config=config,
                        dir=str(run.path),
                    )
                    self.wandb_id = run.id
                    self.writers.append(run)
            except ImportError:
                raise ConfigError(
                    f"train.trackers: {name} is not installed (pip install 'scaling[trackers]')"
                ) from None

    def log(self, record: dict[str, Any]) -> None:
        values = {k: v for k, v in record.items() if isinstance(v, int | float) and k != "step"}
        for writer in self.writers:
            if hasattr(writer, "add_scalar"):
                for key, value in values.items():
                    writer.add_scalar(key, value, record["step"])
            else:
                writer.log(values, step=record["step"])

    def close(self) -> None:
        for writer in self.writers:
            (writer.close if hasattr(writer, "close") else writer.finish)()
