"""What a device can do: peak FLOP/s by GPU name and precision, and the wall time a run is
expected to take. The one table behind the trainer's MFU, the planner's estimate and the
launcher's dry run. Imports nothing heavy: the planner and the CLI read it before torch loads.
"""

from __future__ import annotations

import re

# (pattern on torch.cuda.get_device_name, peak dense bf16 tensor FLOP/s, peak fp32 FLOP/s),
# from the vendors' data sheets (no sparsity). First match wins, so a name that contains
# another's (an L40 is not an L4, an H100 NVL not an SXM) comes before it. fp32 is the plain
# fp32 rate: the trainer leaves TF32 off. None: the card has no bf16 (V100, T4: fp16 only).
GPU_PEAKS: list[tuple[str, float | None, float]] = [
    (r"H200 NVL", 835e12, 60e12),
    (r"H200", 989e12, 67e12),
    (r"H100 NVL", 835e12, 60e12),
    (r"H100.*PCIe", 756e12, 51e12),
    (r"H100", 989e12, 67e12),  # SXM
    (r"A100", 312e12, 19.5e12),
    (r"A10G", 125e12, 31.2e12),
    (r"L40S", 362e12, 91.6e12),
    (r"L40", 181e12, 90.5e12),
    (r"L4\b", 121e12, 30.3e12),
    (r"RTX 4090", 165e12, 82.6e12),
    (r"RTX 3090", 71e12, 35.6e12),
    (r"V100", None, 15.7e12),
    (r"T4\b", None, 8.1e12),
]

# For `scaling plan --device` and the launcher's dry run: a name's sustained rate at 100% MFU
# and the MFU assumed. The CPU entry is what 2 cores of this project's CI machine sustain on
# 10M-parameter models (BENCHMARKS.md), so its default MFU is 1.
PLANNING_DEVICES = {"cpu": None, "a100": "A100", "h100": "H100", "h200": "H200"}
CPU_FLOPS, GPU_MFU = 1.1e11, 0.4
# Below about 10M parameters a CPU step is overhead-bound (attention, norms, Python): the
# sustained rate falls as N^0.3 (measured on 2 cores from 7k to 10M parameters, within 30%).
CPU_FULL_RATE_PARAMS, CPU_RATE_EXPONENT = 1e7, 0.3


def gpu_peak_flops(name: str, precision: str = "bf16") -> float | None:
    """Peak FLOP/s of the GPU called ``name`` at ``precision`` (bf16 or fp32); None when the
    card is unknown or has no such rate."""
    for pattern, bf16, fp32 in GPU_PEAKS:
        if re.search(pattern, name):
            return bf16 if precision == "bf16" else fp32
    return None


def supports_bf16(name: str) -> bool | None:
    """False for a card known to lack bf16, None when the name is unknown."""
    for pattern, bf16, _ in GPU_PEAKS:
        if re.search(pattern, name):
            return bf16 is not None
    return None


def sustained_flops(device: str, params: float, mfu: float | None = None) -> float:
    """FLOP/s a run of ``params`` parameters sustains on ``device`` (a PLANNING_DEVICES key or
    a GPU name): the peak times the MFU, and on CPU smaller for small models."""
    if device == "cpu":
        rate = CPU_FLOPS * (mfu if mfu is not None else 1.0)
        if mfu is None:
            rate *= min(params / CPU_FULL_RATE_PARAMS, 1.0) ** CPU_RATE_EXPONENT
        return rate
    peak = gpu_peak_flops(PLANNING_DEVICES.get(device) or device)
    if peak is None:
        raise ValueError(f"no peak FLOP/s known for {device!r}")
    return peak * (mfu if mfu is not None else GPU_MFU)


def visible_gpus() -> list[str]:
    """The GPUs this process may hand out, as ``CUDA_VISIBLE_DEVICES`` names them: its own
    entries (indices, UUIDs or MIG ids) when it is set, so a child given "5" runs on the
    launcher's GPU 5 and not on physical GPU 0, 1, ... of a shared machine; else 0..n-1."""
    import os

    try:
        import torch

        count = torch.cuda.device_count()
    except ImportError:
        return []
    given = os.environ.get("CUDA_VISIBLE_DEVICES")
    if given is None:
        return [str(index) for index in range(count)]
    return [entry.strip() for entry in given.split(",") if entry.strip()][:count]
