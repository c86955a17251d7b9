"""One training run: a RunConfig in, metrics.jsonl and result.json out (docs/architecture.md).

The same loop runs on a laptop CPU, one GPU, and many processes (DDP or FSDP2 under torchrun
or ``accelerate launch``). The learning rate is a function of the optimizer step; the data
order is a function of the sampler position; both are in the checkpoint, with every RNG, so a
run stopped anywhere (Ctrl-C, SIGTERM, kill -9) resumes to the same losses.
"""

from __future__ import annotations

import gc
import math
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scaling.config import ConfigError, RunConfig
from scaling.counting import flops_per_token
from scaling.data import ValidationWindows, WindowSampler, prepare_data
from scaling.model import Transformer, save_pretrained
from scaling.rundir import RunDir
from scaling.training import STOP_SIGNALS, checkpoint
from scaling.training.metrics import (
    MetricsLog,
    Trackers,
    check_trackers,
    device_peak_flops,
    peak_memory_bytes,
    reset_peak_memory,
)
from scaling.training.parallel import (
    Runtime,
    autocast,
    gradient_sync,
    prepare,
    setup,
    unwrap,
)
from scaling.training.schedules import branch_points, lr_at

EVAL_SEED = 0  # shared by every run of every sweep: eval losses compare across runs


class Interrupted(Exception):
    """A stop signal (``STOP_SIGNALS``): a checkpoint was written; run again to resume."""


class Diverged(Exception):
    pass


class StepAbandoned(Exception):
    """A stop arrived between the micro-batches of a step: the step was rewound (sampler and
    RNG as at its start) and never taken; ``micro_batches`` of it had run."""

    def __init__(self, micro_batches: int):
        super().__init__(micro_batches)
        self.micro_batches = micro_batches


def parameter_groups(model: torch.nn.Module, decay_all: bool) -> list[dict[str, Any]]:
    """Weight decay on matrices; norms, biases and embeddings excluded unless ``decay_all``."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        is_embedding = "tok_emb" in name or "pos_emb" in name
        if decay_all or (param.ndim >= 2 and not is_embedding):
            decay.append(param)
        else:
            no_decay.append(param)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


class Trainer:
    def __init__(self, config: RunConfig, run: RunDir, runtime: Runtime, progress: bool = True):
        self.config, self.rundir, self.rt, self.progress = config, run, runtime, progress
        cfg, train = config.model, config.train
        self.train_cfg = train
        self.data = prepare_data(config.data, progress=progress and runtime.is_main)
        if self.data.vocab_size > cfg.vocab_size:
            raise ConfigError(
                f"model.vocab_size ({cfg.vocab_size}) is smaller than the tokenizer's "
                f"({self.data.vocab_size})"
            )
        self.steps = train.steps
        self.accum = train.accumulation(runtime.world_size)
        self.sampler = WindowSampler(
            self.data.tokens("train"),
            train.seq_len,
            train.batch_sequences,
            train.seed,
            runtime.rank,
            runtime.world_size,
        )
        self.val = ValidationWindows(
            self.data.tokens("val"), train.seq_len, train.eval_windows, EVAL_SEED
        )
        self.flops_per_token = flops_per_token(cfg, train.seq_len, train.flop_formula)
        self.device_name, self.peak_flops = device_peak_flops(runtime.device, train.precision)

        torch.manual_seed(train.seed)
        self.model, self.optimizer = prepare(
            Transformer(cfg),
            lambda model: torch.optim.AdamW(
                parameter_groups(model, train.decay_norms_and_embeddings),
                lr=train.lr,
                betas=train.betas,
                eps=train.eps,
                weight_decay=train.weight_decay,
            ),
            runtime,
            train,
        )
        self.state: dict[str, Any] = {
            "step": 0,
            "sampler_position": 0,
            "wall_s": 0.0,
            "best_train_loss": math.inf,
            "best_eval_loss": math.inf,
            "branches": [],
            "wandb_id": None,
        }
        found = checkpoint.resume(run.checkpoint, self.model, self.optimizer)
        if found is not None:
            self.state.update(found[0])
            self.sampler.position = self.state["sampler_position"]
        self.resumed_from = self.state["step"] if found is not None else None
        self.metrics = MetricsLog(run, self.resumed_from, runtime.is_main)
        self.trackers = Trackers(
            runtime.accelerator,
            train.trackers,
            run,
            config.run_id,
            config.model_dump(mode="json"),
            self.state["wandb_id"],
        )
        self.stop_signals: list[int] = []  # SIGINT/SIGTERM received: checkpoint and stop

    # -- stopping ---------------------------------------------------------------------------
    def stop_requested(self) -> bool:
        """A stop signal reached this process or another rank; all ranks agree (one scalar
        all-reduce when there are several)."""
        return self.rt.any_rank(bool(self.stop_signals))

    def stop_reason(self) -> str:
        if self.stop_signals:
            return f"stopped by signal {self.stop_signals[0]}"
        return "stopped by a signal to another rank"

    def _step_start(self) -> tuple[int, torch.Tensor, torch.Tensor | None]:
        """What a step consumes besides the weights: the sampler's position and the RNG
        (dropout). Restored, they make an abandoned step as if it never began."""
        cuda = torch.cuda.get_rng_state() if self.rt.device.type == "cuda" else None
        return self.sampler.position, torch.get_rng_state(), cuda

    def _rewind(self, start: tuple[int, torch.Tensor, torch.Tensor | None]) -> None:
        self.sampler.position, cpu, cuda = start
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda)
        self.optimizer.zero_grad(set_to_none=True)

    # -- one optimizer step ------------------------------------------------------------------
    def train_step(self, lr: float) -> dict[str, float]:
        """One optimizer step over ``accum`` micro-batches. A stop between two of them
        abandons the step (``StepAbandoned``): a step of many micro-batches can take minutes,
        longer than a cluster waits between SIGTERM and SIGKILL."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        start = self._step_start()
        x, y = self.sampler.next_batch()
        x, y = x.to(self.rt.device), y.to(self.rt.device)
        mb = self.train_cfg.micro_batch_size
        # Summed on the device, read once a step: an .item() per micro-batch would make the
        # host wait for each backward before it queues the next forward.
        sums = torch.zeros(3, dtype=torch.float64, device=self.rt.device)  # ce, aux, z
        loads = []
        for i in range(self.accum):
            # Under several processes this is a small all-reduce (and a host sync) per
            # micro-batch: the price of every rank leaving the step at the same point.
            if i and self.stop_requested():
                self._rewind(start)
                raise StepAbandoned(i)
            with gradient_sync(self.model, self.rt, sync=i == self.accum - 1):
                with autocast(self.rt, self.train_cfg):
                    out = self.model(x[i * mb : (i + 1) * mb], y[i * mb : (i + 1) * mb])
                (out.loss / self.accum).backward()
            sums[0] += out.ce_loss.detach()
            if out.aux_loss is not None:
                sums[1] += out.aux_loss.detach()
                sums[2] += out.z_loss.detach()
                loads.append(out.expert_load)
            del out  # its logits, (micro-batch, seq, vocab), would live through the next forward
        ce_sum, aux_sum, z_sum = sums.tolist()
        clip = self.train_cfg.grad_clip or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        unwrap(self.model).update_router_biases()
        record = {
            "train_loss": self.rt.all_reduce_mean(ce_sum / self.accum),
            "grad_norm": float(norm),
        }
        if loads:
            load = torch.stack(loads).mean(0)
            record.update(
                aux_loss=aux_sum / self.accum,
                z_loss=z_sum / self.accum,
                expert_load_max_over_mean=float((load.max(-1).values / load.mean(-1)).max()),
            )
        return record

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss over the shared validation windows, in nats/token and bits/byte. Every rank
        runs the same number of forwards (FSDP needs it), each of ``micro_batch_size`` windows
        (one shape, so a compiled model is not recompiled for a short last batch); padding
        windows have their targets ignored."""
        self.model.eval()
        batch = self.train_cfg.micro_batch_size
        mine = self.val.starts[self.rt.rank :: self.rt.world_size]
        n_batches = math.ceil(math.ceil(len(self.val) / self.rt.world_size) / batch)
        totals = torch.zeros(2, dtype=torch.float64, device=self.rt.device)
        for i in range(n_batches):
            starts = mine[i * batch : (i + 1) * batch]
            real = len(starts)
            starts = np.concatenate([starts, np.repeat(self.val.starts[:1], batch - real)])
            x, y = self.val.gather(starts)
            y[real:] = -1  # the model's ignore_index
            with autocast(self.rt, self.train_cfg):
                out = self.model(x.to(self.rt.device), y.to(self.rt.device))
            if real:  # all targets ignored: the mean is 0/0
                tokens = real * y.shape[1]
                totals += torch.stack(
                    [out.ce_loss.detach().double() * tokens, totals.new_tensor(tokens)]
                )
        loss_sum, count = self.rt.all_reduce_sum(totals).tolist()
        nats = loss_sum / count
        return {"eval_loss": nats, "eval_bpb": self.data.bits_per_byte(nats)}

    # -- bookkeeping ----------------------------------------------------------------------------
    def save(self) -> None:
        self.state["sampler_position"] = self.sampler.position
        self.state["wandb_id"] = self.trackers.wandb_id
        checkpoint.save(self.rundir.checkpoint, self.model, self.optimizer, self.state)

    def check_divergence(self, key: str, loss: float) -> None:
        """NaN/inf at once; or ``divergence_patience`` checks in a row above
        ``divergence_factor`` × the best value so far."""
        best_key, bad_key = f"best_{key}", f"bad_{key}"
        if not math.isfinite(loss):
            raise Diverged(f"{key} is {loss} at step {self.state['step']}")
        if loss > self.train_cfg.divergence_factor * self.state[best_key]:
            self.state[bad_key] = self.state.get(bad_key, 0) + 1
            if self.state[bad_key] >= self.train_cfg.divergence_patience:
                raise Diverged(
                    f"{key} {loss:.4g} above {self.train_cfg.divergence_factor}× its best "
                    f"({self.state[best_key]:.4g}) {self.state[bad_key]} times in a row"
                )
        else:
            self.state[bad_key] = 0
        self.state[best_key] = min(self.state[best_key], loss)

    def record(self, step: int, values: dict[str, Any]) -> None:
        tokens = step * self.train_cfg.batch_tokens
        line = {
            "step": step,
            "tokens": tokens,
            "flops": tokens * self.flops_per_token,
            "flop_formula": self.train_cfg.flop_formula,
            **values,
        }
        self.metrics.write(line)
        self.trackers.log(line)  # Accelerate logs on the main process only

    def run_branch(self, start: int, end: int) -> None:
        """A WSD cooldown from the stable phase at ``start`` to ``end``; its eval is a point of
        its own. The stable state is checkpointed first and restored after."""
        self.save()
        for step in range(start, end):
            try:
                self.train_step(lr_at(self.train_cfg, step, self.steps, end_step=end))
                stopped = self.stop_requested()
            except StepAbandoned:
                stopped = True
            if stopped:  # nothing saved: the checkpoint at the branch's start is where to resume
                raise Interrupted(
                    f"{self.stop_reason()} in the cooldown branch from step {start}; "
                    f"resuming redoes the branch from the checkpoint at step {start}"
                )
        point = self.evaluate()
        tokens = end * self.train_cfg.batch_tokens
        checkpoint.load(checkpoint.latest(self.rundir.checkpoint), self.model, self.optimizer)
        self.sampler.position = self.state["sampler_position"]
        self.state["branches"].append(
            {"step": end, "tokens": tokens, "flops": tokens * self.flops_per_token, **point}
        )

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        train = self.train_cfg
        if self.rt.is_main:
            self.sampler.warn_if_repeating(self.steps * train.batch_tokens)
        branches = dict(branch_points(train, self.steps))
        done = {b["step"] for b in self.state["branches"]}
        window_seconds, window_tokens = 0.0, 0
        started = time.perf_counter() - self.state["wall_s"]
        from rich.progress import Progress

        with Progress(disable=not (self.progress and self.rt.is_main), transient=True) as bar:
            task = bar.add_task("training", total=self.steps, completed=self.state["step"])
            for step in range(self.state["step"], self.steps):
                if step in branches and branches[step] not in done:
                    self.run_branch(step, branches[step])
                lr = lr_at(train, step, self.steps)
                step_start = time.perf_counter()
                try:
                    values = {"lr": lr, **self.train_step(lr)}
                except StepAbandoned as abandoned:
                    self.save()
                    raise Interrupted(
                        f"{self.stop_reason()} during step {step + 1}, after "
                        f"{abandoned.micro_batches} of its {self.accum} micro-batches: "
                        f"checkpointed at step {step}, which a resume continues from"
                    ) from None
                self.state["step"] = done_steps = step + 1
                self.state["wall_s"] = time.perf_counter() - started
                # the window times training steps only: not evals, checkpoints or branches
                window_seconds += time.perf_counter() - step_start
                window_tokens += train.batch_tokens
                self.check_divergence("train_loss", values["train_loss"])
                last = done_steps == self.steps
                log = done_steps % train.log_interval == 0 or last
                evaluate = last or (train.eval_interval and done_steps % train.eval_interval == 0)
                if log:
                    values.update(self.throughput(window_tokens, window_seconds))
                if evaluate:
                    values.update(self.evaluate())
                    self.check_divergence("eval_loss", values["eval_loss"])
                if log or evaluate:
                    self.record(done_steps, values)
                    bar.update(
                        task, completed=done_steps, description=f"loss {values['train_loss']:.3f}"
                    )
                if log:
                    window_seconds, window_tokens = 0.0, 0
                    reset_peak_memory(self.rt.device)  # each line: the peak since the last
                if done_steps % train.checkpoint_interval == 0 and not last:
                    self.save()
                if self.stop_requested():
                    self.save()
                    raise Interrupted(f"{self.stop_reason()} at step {done_steps}")
        return values

    def throughput(self, tokens: int, seconds: float) -> dict[str, float]:
        """``tokens``: the global batches of the window (``batch_tokens`` is the global batch,
        whatever the number of processes), so ``rate`` is the whole run's; MFU divides it by
        the peak of all the run's devices."""
        rate = tokens / seconds
        flops_rate = rate * self.flops_per_token
        out = {
            "tokens_per_s": rate,
            "time_s": self.state["wall_s"],
            "epochs": self.sampler.epochs,
            "peak_memory_bytes": peak_memory_bytes(self.rt.device),
        }
        if self.peak_flops:
            out["mfu"] = flops_rate / (self.peak_flops * self.rt.world_size)
        else:
            out["achieved_flops_per_s"] = flops_rate
        return out


def train(
    config: RunConfig,
    run_dir: str | Path,
    progress: bool = True,
    stop_signals: list[int] | None = None,
) -> dict[str, Any]:
    """Train ``config`` in ``run_dir``, resuming from its checkpoint if there is one; write
    result.json (done, diverged or failed) and return it. A run whose result.json says done
    for the same config is not trained again. Raises ``Interrupted`` after writing a
    checkpoint when one of ``STOP_SIGNALS`` arrives, also while the run is being set up (a signal
    that interrupted the imports of setup left numpy half-imported once: a RecursionError).
    ``stop_signals``: a list the caller's own handler already records signals in."""
    torch.set_flush_denormal(True)
    run = RunDir(Path(run_dir))
    finished = _finished_result(config, run)
    if finished is not None:
        return finished
    check_trackers(config.train.trackers)
    run.path.mkdir(parents=True, exist_ok=True)
    signals = stop_signals if stop_signals is not None else []
    previous = {
        sig: signal.signal(sig, lambda signum, frame: signals.append(signum))
        for sig in STOP_SIGNALS
    }
    try:
        runtime = setup(config.train, logging_dir=run.tensorboard)
    except BaseException:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    trainer, lost = None, False
    result: dict[str, Any] = {"run_id": config.run_id}
    try:
        if runtime.is_main and not _holds_config(run, config):
            run.write_config(config)
        trainer = Trainer(config, run, runtime, progress)
        trainer.stop_signals = signals
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
            tokens = trainer.state["step"] * config.train.batch_tokens
            result.update(
                status="done",
                final_eval_loss=last["eval_loss"],
                final_eval_bpb=last["eval_bpb"],
                final_train_loss=last["train_loss"],
                tokens=tokens,
                flops=tokens * trainer.flops_per_token,
                steps=trainer.state["step"],
                epochs=trainer.sampler.epochs,
                unique_tokens=trainer.data.meta["train"]["tokens"],
            )
        except Diverged as reason:
            result.update(status="diverged", reason=str(reason), step=trainer.state["step"])
        result.update(
            branches=trainer.state["branches"],
            wall_s=trainer.state["wall_s"],
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
            run.write_stopped(trainer.state["step"] if trainer else 0, str(stopped))
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
            step = trainer.state["step"] if trainer else 0
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
        for sig, handler in previous.items():
            signal.signal(sig, handler)
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


# What gloo and NCCL say when the other end of a collective is gone or never answers.
LOST_PROCESS_MARKERS = (
    "Connection reset by peer",
    "Connection closed by peer",
    "Broken pipe",
    "Timed out",
    "timed out",
)


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
