"""A run's life around the loop: stop signals taken, processes set up, the config recorded,
the result written, everything released; and what ends a run short of its end (a signal, a
lost process) told apart from what fails it."""

from __future__ import annotations

import gc
import sys
import traceback
from pathlib import Path
from typing import Any

import torch

from scaling.config import ConfigError, RunConfig
from scaling.model import Transformer, save_pretrained
from scaling.rundir import RunDir
from scaling.training import stop_signals
from scaling.training.metrics import check_trackers
from scaling.training.parallel import setup
from scaling.training.trainer import Diverged, Interrupted, Trainer

# What gloo and NCCL say when the other end of a collective is gone or never answers.
LOST_PROCESS_MARKERS = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "Timed out",
    "timed out",
)


def train(
    config: RunConfig,
    run_dir: str | Path,
    progress: bool = True,
    signals: list[int] | None = None,
    pause_at: int | None = None,
) -> dict[str, Any]:
    """Train ``config`` in ``run_dir``, resuming from its checkpoint if there is one; write
    result.json (done, diverged or failed) and return it. A run whose result.json says done
    for the same config is not trained again. Raises ``Interrupted`` after writing a
    checkpoint when one of ``STOP_SIGNALS`` arrives, also while the run is being set up (a signal
    that interrupted the imports of setup left numpy half-imported once: a RecursionError).
    ``signals``: a list the caller's own handler already records signals in. ``pause_at``: a
    step to checkpoint and stop at (``Paused``, an ``Interrupted``), as the pruner's rungs do."""
    torch.set_flush_denormal(True)
    run = RunDir(Path(run_dir))
    finished = _finished_result(config, run)
    if finished is not None:
        return finished
    check_trackers(config.train.trackers)
    run.path.mkdir(parents=True, exist_ok=True)
    signals = signals if signals is not None else []
    with stop_signals(signals.append):
        runtime = setup(config.train, logging_dir=run.tensorboard)
        return _train(config, run, runtime, progress, signals, pause_at)


def _train(
    config, run: RunDir, runtime, progress: bool, signals: list[int], pause_at: int | None
) -> dict[str, Any]:
    trainer, lost = None, False
    result: dict[str, Any] = {"run_id": config.run_id}
    try:
        if runtime.is_main and not _holds_config(run, config):
            run.write_config(config)
        trainer = Trainer(config, run, runtime, progress, signals, pause_at)
        if trainer.resumed_from is not None and runtime.is_main:
            # in train.log of a launched run: how a requeued or relaunched run went on
            print(
                f"{config.run_id}: resumed from the checkpoint at step {trainer.resumed_from}",
                file=sys.stderr,
                flush=True,
            )
        try:
            last = trainer.run()
            export_weights(trainer, run)
            tokens = trainer.state.step * config.train.batch_tokens
            result.update(
                status="done",
                final_eval_loss=last["eval_loss"],
                final_eval_bpb=last["eval_bpb"],
                final_train_loss=last["train_loss"],
                tokens=tokens,
                flops=tokens * trainer.flops_per_token,
                steps=trainer.state.step,
                epochs=trainer.sampler.epochs,
                unique_tokens=trainer.data.meta["train"]["tokens"],
            )
        except Diverged as reason:
            result.update(status="diverged", reason=str(reason), step=trainer.state.step)
        result.update(
            branches=trainer.state.branches,
            wall_s=trainer.state.wall_s,
            flop_formula=config.train.flop_formula,
            resumed_from_step=trainer.resumed_from,
            parallelism=runtime.mode,
            processes=runtime.world_size,
            # CPU matrix products sum in an order that depends on the thread count, so the
            # same config gives losses equal to about 1e-2, not bit for bit, under another
            # count (the launcher gives each of --max-parallel runs its share of the cores)
            threads=torch.get_num_threads(),
        )
        if runtime.is_main:
            run.write_result(result)
    except Interrupted as stopped:
        if runtime.is_main:
            run.write_stopped(trainer.state.step if trainer else 0, str(stopped))
        raise
    except ConfigError:
        raise
    except Exception as err:
        if lost_a_process(err, runtime.world_size):
            # Not the run's fault: its last checkpoint resumes it, as after a preemption.
            # Every surviving rank says so (rank 0 may be the one lost).
            lost = True
            first_line = (str(err).strip().splitlines() or [""])[0][:300]
            reason = f"a process of the run was lost ({type(err).__name__}: {first_line})"
            step = trainer.state.step if trainer else 0
            run.write_stopped(step, reason)
            raise Interrupted(
                f"{reason} at step {step}; launching again resumes from the last checkpoint"
            ) from None
        # the run failed: say why in result.json, for the launcher
        result.update(
            status="failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc()
        )
        if runtime.is_main:
            run.write_result(result)
    finally:
        if trainer is not None:
            trainer.trackers.close()
        # Free the (sharded) model and optimizer, which Accelerate keeps too, while the process
        # group lives: collected at interpreter exit instead, gloo's pending work can abort it.
        trainer = None
        runtime.accelerator.free_memory()
        gc.collect()
        if not lost:  # a barrier with a lost process would wait out the collective timeout
            runtime.barrier()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return result


def lost_a_process(err: BaseException, world_size: int) -> bool:
    """A collective of a multi-process run failed because another process is gone (its node
    lost, killed) or did not answer within ``train.collective_timeout_s``."""
    if world_size == 1:
        return False
    if isinstance(err, torch.distributed.DistError):
        return True
    return isinstance(err, RuntimeError) and any(m in str(err) for m in LOST_PROCESS_MARKERS)


def _holds_config(run: RunDir, config: RunConfig) -> bool:
    """The run's config.json already says ``config`` (left as written: a newer version's
    defaults would change the file that the run's id hashes)."""
    try:
        return run.has_config() and run.read_config() == config
    except ConfigError:
        return False


def _finished_result(config: RunConfig, run: RunDir) -> dict[str, Any] | None:
    """The run's result when it is done for this very config (then nothing is trained)."""
    if not run.has_config():
        return None
    result = run.read_result()
    if result is None or result["status"] != "done":
        return None
    try:
        same = run.read_config() == config
    except ConfigError:
        return None
    return result if same else None


def export_weights(trainer: Trainer, run: RunDir) -> None:
    """The final weights, gathered whole on every rank (FSDP needs all of them to take part)
    and written by the first, as safetensors with the model config."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(
        trainer.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    if trainer.rt.is_main:
        export = Transformer(trainer.config.model)
        export.load_state_dict(state)
        save_pretrained(export, run.export)
