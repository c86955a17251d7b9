"""Processes, devices and model wrapping: one process, DDP, or FSDP2.

Accelerate sets up the processes (torchrun / ``accelerate launch`` environment), the device
and DDP. FSDP2 is torch's ``fully_shard`` applied per transformer block and then to the root,
with bf16 parameters and fp32 gradient reduction under ``precision = "bf16"``; it is applied
here directly because Accelerate refuses its FSDP plugin on a CPU process group, so the same
code is tested on CPU (gloo) and runs on GPUs.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from scaling.config import ConfigError, TrainConfig


@dataclass
class Runtime:
    accelerator: object
    mode: str  # "single" | "ddp" | "fsdp"
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def all_reduce_mean(self, value: float) -> float:
        if self.world_size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world_size

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor


def setup(cfg: TrainConfig) -> Runtime:
    from accelerate import Accelerator

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if cfg.precision == "bf16" and not cuda and not torch.backends.mkldnn.is_available():
        raise ConfigError("train.precision: bf16 needs a GPU or a CPU with bf16 support")
    mode = cfg.parallelism
    if mode == "auto":
        mode = "single" if world_size == 1 else ("fsdp" if cuda else "ddp")
    if world_size == 1:
        mode = "single"
    # Precision is ours (``autocast`` below, or FSDP2's policy), not Accelerate's: its state is
    # a per-process singleton that cannot change between runs of one process.
    accelerator = Accelerator(cpu=not cuda)
    return Runtime(
        accelerator=accelerator,
        mode=mode,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        device=accelerator.device,
    )


def wrap_model(model: nn.Module, runtime: Runtime, cfg: TrainConfig) -> nn.Module:
    """The model as the loop will call it (DDP, FSDP2 or plain), on the runtime's device."""
    if cfg.activation_checkpointing:
        from torch.utils.checkpoint import checkpoint

        for block in model.blocks:
            block.forward = _checkpointed(block.forward, checkpoint)
    if cfg.compile:
        for block in model.blocks:
            block.compile()
    if runtime.mode == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        policy = MixedPrecisionPolicy(
            param_dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float32,
            reduce_dtype=torch.float32,
        )
        model.to(runtime.device)
        for block in model.blocks:
            fully_shard(block, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    return runtime.accelerator.prepare_model(model)


def _checkpointed(forward, checkpoint):
    def run(*args, **kwargs):
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)

    return run


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def gradient_sync(model: nn.Module, runtime: Runtime, sync: bool):
    """Skip the gradient all-reduce on all but the last micro-step of an accumulation."""
    if runtime.mode == "ddp" and not sync:
        return model.no_sync()
    if runtime.mode == "fsdp":
        model.set_requires_gradient_sync(sync)
    return contextlib.nullcontext()


def autocast(runtime: Runtime, cfg: TrainConfig):
    if cfg.precision == "bf16" and runtime.mode != "fsdp":
        return torch.autocast(device_type=runtime.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
