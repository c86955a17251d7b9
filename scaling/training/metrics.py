"""metrics.jsonl, throughput and MFU, trackers."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Any

import torch

from scaling.config import ConfigError

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
    """Appends one JSON object per logged step; on resume, drops the lines the checkpoint
    does not cover, so a resumed run's file reads as if it had never stopped."""

    def __init__(self, path: Path, resume_step: int | None, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if enabled and resume_step is not None and path.is_file():
            kept = []
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= resume_step:
                        kept.append(line)
                except (json.JSONDecodeError, KeyError):
                    break  # a line cut by the crash: everything after it is lost anyway
            path.write_text("".join(f"{line}\n" for line in kept))
        elif enabled and resume_step is None:
            path.write_text("")

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as handle:
                handle.write(json.dumps(record) + "\n")


class Trackers:
    """TensorBoard and/or Weights & Biases, fed the same values as metrics.jsonl."""

    def __init__(
        self,
        names,
        run_dir: Path,
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

                    self.writers.append(SummaryWriter(log_dir=str(run_dir / "tensorboard")))
                else:
                    import wandb

                    run = wandb.init(
                        project="scaling",
                        name=run_id,
                        id=wandb_id,
                        resume="allow",
                        config=config,
                        dir=str(run_dir),
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
