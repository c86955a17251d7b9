"""What ``scaling launch`` would do, without doing it: the runs it would train, in order, on
which devices, and about how long each takes (the plan's FLOPs over what the device sustains,
``scaling.devices``). Reads the runs directory only: nothing is claimed, written or started."""

from __future__ import annotations

import heapq
import os
from pathlib import Path

import pandas as pd

from scaling import devices
from scaling.launching import state
from scaling.launching.local import LaunchOptions, select_runs, slot_devices
from scaling.rundir import RunsDir


def local_dry_run(runs: Path, options: LaunchOptions) -> pd.DataFrame:
    """One row per selected run, in launch order: what the launcher would do with it
    (``train``, ``resume`` or ``skip``), the slot and devices it would get, and the estimated
    start and wall time in seconds. Slots are filled as the local executor fills them: the next
    run goes to the slot that frees first."""
    directory = RunsDir(runs)
    plan = directory.read_plan().set_index("run_id", drop=False)
    gpus = devices.visible_gpus()
    slots = slot_devices(gpus, options)
    name = _gpu_name() if gpus else "cpu"
    free = [(0.0, slot) for slot in range(len(slots))]  # (time it frees, slot), a heap
    rows = []
    for order, run_id in enumerate(select_runs(plan.reset_index(drop=True), options), 1):
        planned = plan.loc[run_id]
        run = directory.run(run_id)
        status = state.run_state(run, options.stale_after)
        row = {
            "order": order,
            "run_id": run_id,
            "params": int(planned["params"]),
            "flops": float(planned["flops"]),
            "state": status,
        }
        if status in state.LAUNCHABLE or (status == "pruned" and options.resume_pruned):
            run.read_planned_config(run_id)  # an edited config is refused, as launching would
        else:
            rows.append({**row, "action": "skip", "devices": "", "start_s": None, "wall_s": None})
            continue
        done = (run.last_metrics() or {}).get("tokens", 0) / float(planned["tokens"])
        wall = (1 - min(done, 1.0)) * row["flops"] / _rate(name, row["params"], slots, options)
        start, slot = heapq.heappop(free)
        heapq.heappush(free, (start + wall, slot))
        rows.append(
            {
                **row,
                "action": f"resume ({done:.0%} done)" if done > 0 else "train",
                "devices": ",".join(slots[slot]) if gpus else _cpu_share(options),
                "start_s": start,
                "wall_s": wall,
            }
        )
    return pd.DataFrame(rows)


def _rate(name: str, params: float, slots: list[list[str]], options: LaunchOptions) -> float:
    if name == "cpu":  # the CPU rate is for 2 cores; the executor splits the cores
        threads = max(1, (os.cpu_count() or 1) // options.max_parallel)
        return devices.sustained_flops("cpu", params) * threads / 2
    try:
        return devices.sustained_flops(name, params) * len(slots[0])
    except ValueError:  # a GPU the table does not know: assume an A100
        return devices.sustained_flops("a100", params) * len(slots[0])


def _cpu_share(options: LaunchOptions) -> str:
    threads = max(1, (os.cpu_count() or 1) // options.max_parallel)
    return f"cpu ({threads} thread{'s' if threads > 1 else ''})"


def _gpu_name() -> str:
    import torch

    return torch.cuda.get_device_name(0)
