"""Processes, devices and model wrapping: one process, DDP, or FSDP2.

Accelerate sets up the processes (torchrun / ``accelerate launch`` environment), the device,
DDP, and FSDP2 through its plugin (``fsdp_version=2``): every transformer ``Block`` a unit,
then the root, bf16 parameters with fp32 gradient reduction under ``precision = "bf16"``.
Accelerate drops the FSDP plugin on a CPU process group, although its FSDP2 preparation
(torch's ``fully_shard``) runs there; ``setup`` puts it back, so the CPU tests under gloo run
the same path as GPUs.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

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

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` holds on any: a decision all ranks take together.
        A stop taken by one rank alone would leave the others waiting in a collective."""
        if self.world_size == 1:
            return flag
        tensor = torch.tensor([int(flag)], dtype=torch.int32, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item())

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            dist.all_reduce(tensor)
        return tensor


def setup(cfg: TrainConfig, logging_dir: Path | None = None) -> Runtime:
    """The processes, devices and parallelism of a run; ``logging_dir``: where the trackers
    of ``cfg.trackers`` (TensorBoard, W&B) write."""
    from accelerate import Accelerator
    from accelerate.utils import (
        DistributedDataParallelKwargs,
        DistributedType,
        InitProcessGroupKwargs,
    )

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if cfg.precision == "bf16" and not cuda and not torch.backends.mkldnn.is_available():
        raise ConfigError("train.precision: bf16 needs a GPU or a CPU with bf16 support")
    if cfg.precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name()
        raise ConfigError(f"train.precision: bf16, but {name} has no bf16; use fp32")
    mode = cfg.parallelism
    if mode == "auto":
        mode = "single" if world_size == 1 else ("fsdp" if cuda else "ddp")
    elif world_size == 1 and not (cuda and "LOCAL_RANK" in os.environ):
        mode = "single"  # one GPU under torchrun/accelerate launch keeps FSDP2 (gpu_check.sh)
    plugin = fsdp2_plugin(cfg) if mode == "fsdp" else None
    # Precision is ours (``autocast`` below, or the FSDP2 policy), not Accelerate's: its state
    # is a per-process singleton that cannot change between runs of one process. Said
    # explicitly, because Accelerate otherwise reads ACCELERATE_MIXED_PRECISION and
    # ACCELERATE_DYNAMO_BACKEND (which `accelerate launch` exports from a user's config
    # file) and would add autocast (fp16 without a loss scaler) or compile the whole model.
    trackers = list(cfg.trackers)  # Accelerate's tracker API: log_with, init_trackers, log
    # DDP broadcasts rank 0's buffers before a forward that syncs gradients, MoE load counts
    # included. The loop's first forward of a step comes when the counts are zero, so none are
    # lost today; without the broadcast no change to the loop can make them be.
    ddp = DistributedDataParallelKwargs(broadcast_buffers=False)
    # How long a collective may wait: a process of the run that died (a node lost) leaves
    # the others waiting in one, and this is when they give up.
    timeout = InitProcessGroupKwargs(timeout=timedelta(seconds=cfg.collective_timeout_s))
    accelerator = Accelerator(
        cpu=not cuda,
        mixed_precision="no",
        dynamo_backend="no",
        kwargs_handlers=[ddp, timeout],
        fsdp_plugin=plugin,
        log_with=trackers or None,
        project_dir=str(logging_dir) if trackers and logging_dir is not None else None,
    )
    if plugin is not None and accelerator.distributed_type != DistributedType.FSDP:
        accelerator.state.distributed_type = DistributedType.FSDP  # dropped on CPU; see above
        accelerator.state.fsdp_plugin = plugin
    return Runtime(
        accelerator=accelerator,
        mode=mode,
        rank=accelerator.process_index,
        world_size=accelerator.num_processes,
        device=accelerator.device,
    )


def fsdp2_plugin(cfg: TrainConfig):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from torch.distributed.fsdp import MixedPrecisionPolicy

    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=["Block"],
        mixed_precision_policy=MixedPrecisionPolicy(
            param_dtype=torch.bfloat16 if cfg.precision == "bf16" else torch.float32,
            reduce_dtype=torch.float32,
            # The blocks' activations are bf16 already; what a cast would reach is the fp32
            # RoPE tables, which autocast (one process, DDP) keeps in fp32.
            cast_forward_inputs=False,
        ),
        reshard_after_forward=True,
        state_dict_type="SHARDED_STATE_DICT",
    )


def prepare(
    model: nn.Module,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    runtime: Runtime,
    cfg: TrainConfig,
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model as the loop will call it (plain, DDP or FSDP2, on the runtime's device) and
    its optimizer. FSDP2 swaps the parameters for sharded ones, so Accelerate prepares the
    model and the optimizer together there."""
    if cfg.activation_checkpointing:
        from torch.utils.checkpoint import checkpoint

        for block in model.blocks:
            block.forward = _checkpointed(block.forward, checkpoint)
    if cfg.compile:
        for block in model.blocks:
            block.compile()
    if runtime.mode == "fsdp":
        if cfg.precision == "bf16":
            _routers_in_fp32(model)
        model, optimizer = runtime.accelerator.prepare(model, make_optimizer(model))
        return model, optimizer.optimizer  # the torch optimizer, now over the sharded parameters
    model = runtime.accelerator.prepare_model(model)
    return model, make_optimizer(model)


def _routers_in_fp32(model: nn.Module) -> None:
    """Each MoE router its own FSDP unit with fp32 parameters: under the bf16 policy of the
    blocks its weight would be rounded to bf16, and small differences in router logits flip
    the top-k choice (autocast, elsewhere, leaves it fp32). Accelerate then skips them."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    policy = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)
    for moe in model.moe_layers():
        fully_shard(moe.router, mp_policy=policy)


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
