"""The training loop of one run, top to bottom: build, resume, step, evaluate, record, save.

The same loop runs on a laptop CPU, one GPU, and many processes (DDP or FSDP2 under torchrun
or ``accelerate launch``). The learning rate is a function of the optimizer step; the data
order is a function of the sampler position; both are in the checkpoint, with every RNG, so a
run stopped anywhere (Ctrl-C, SIGTERM, kill -9) resumes to the same losses. The pieces live
beside it: the optimizer (``optimizer``), the loop's own state (``state``), processes and
wrapping (``parallel``), checkpoints, metrics, and the run's lifecycle (``lifecycle``: signals,
setup, result.json).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from scaling.config import ConfigError, RunConfig
from scaling.counting import flops_per_token
from scaling.data import ValidationWindows, WindowSampler, prepare_data
from scaling.model import Transformer
from scaling.rundir import RunDir
from scaling.training import checkpoint
from scaling.training.metrics import (
    MetricsLog,
    Trackers,
    device_peak_flops,
    peak_memory_bytes,
    reset_peak_memory,
)
from scaling.training.optimizer import build_optimizer, set_learning_rate
from scaling.training.parallel import Runtime, autocast, gradient_sync, prepare, unwrap
from scaling.training.schedules import branch_points, lr_at
from scaling.training.state import TrainState

EVAL_SEED = 0  # shared by every run of every sweep: eval losses compare across runs


class Interrupted(Exception):
    """A stop signal (``STOP_SIGNALS``): a checkpoint was written; run again to resume."""


class Paused(Interrupted):
    """The run reached the step it was asked to pause at (``pause_at``, the pruner's rung): a
    checkpoint was written there; run again without the pause to go on."""


class Diverged(Exception):
    pass


class StepAbandoned(Exception):
    """A stop arrived between the micro-batches of a step: the step was rewound (sampler and
    RNG as at its start) and never taken; ``micro_batches`` of it had run."""

    def __init__(self, micro_batches: int):
        super().__init__(micro_batches)
        self.micro_batches = micro_batches


class Trainer:
    def __init__(
        self,
        config: RunConfig,
        run: RunDir,
        runtime: Runtime,
        progress: bool = True,
        stop_signals: list[int] | None = None,
        pause_at: int | None = None,
    ):
        self.config, self.rundir, self.rt, self.progress = config, run, runtime, progress
        self.pause_at = pause_at
        cfg, train = config.model, config.train
        self.train_cfg = train
        self.stop_signals = stop_signals if stop_signals is not None else []
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
            Transformer(cfg), lambda model: build_optimizer(model, train, cfg), runtime, train
        )
        unwrap(self.model).attach(self.optimizer)
        self.state = TrainState()
        found = checkpoint.resume(run.checkpoint, self.model, self.optimizer)
        if found is not None:
            self.load_state_dict(found[0])
        self.resumed_from = self.state.step if found is not None else None
        self.metrics = MetricsLog(run, self.resumed_from, runtime.is_main)
        self.trackers = Trackers(
            runtime.accelerator,
            train.trackers,
            run,
            config.run_id,
            config.model_dump(mode="json"),
            self.state.wandb_id,
        )

    # -- the checkpoint ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps besides the model and the optimizer (and the RNG): the
        loop's state (its step at the top, where status and the tests read it) and the
        sampler's."""
        self.state.wandb_id = self.trackers.wandb_id
        return {**self.state.state_dict(), "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state.load_state_dict(state)
        if "sampler" not in state:  # a checkpoint written before the sampler had its entry
            self.sampler.position = int(state["sampler_position"])
            return
        try:
            self.sampler.load_state_dict(state["sampler"])
        except ValueError as err:
            raise ConfigError(f"{self.rundir.checkpoint}: {err}") from None

    def save(self) -> None:
        checkpoint.save(self.rundir.checkpoint, self.model, self.optimizer, self.state_dict())

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
        set_learning_rate(self.optimizer, lr)
        self.model.train()
        start = self._step_start()
        x, y = self.sampler.next_batch()
        x, y = x.to(self.rt.device), y.to(self.rt.device)
        mb = self.train_cfg.micro_batch_size
        # Summed on the device, read once a step: an .item() per micro-batch would make the
        # host wait for each backward before it queues the next forward.
        ce_sum = torch.zeros((), dtype=torch.float64, device=self.rt.device)
        logged: dict[str, torch.Tensor] = {}  # what the model logs beside the loss
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
            ce_sum += out.ce_loss.detach()
            for key, value in out.logged().items():
                logged[key] = logged.get(key, 0) + value.detach().float() / self.accum
            del out  # its logits, (micro-batch, seq, vocab), would live through the next forward
        clip = self.train_cfg.grad_clip or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        self.optimizer.step()  # the model's own step hooks run here (router biases)
        self.optimizer.zero_grad(set_to_none=True)
        return {
            "train_loss": self.rt.all_reduce_mean(float(ce_sum) / self.accum),
            "grad_norm": float(norm),
            **unwrap(self.model).describe_step(logged),
        }

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
            y = y.clone()  # a view of the windows x is a view of too
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
    def check_divergence(self, key: str, loss: float) -> None:
        """NaN/inf at once; or ``divergence_patience`` checks in a row above
        ``divergence_factor`` × the best value so far."""
        best_key, bad_key = f"best_{key}", f"bad_{key}"
        best, bad = getattr(self.state, best_key), getattr(self.state, bad_key)
        if not math.isfinite(loss):
            raise Diverged(f"{key} is {loss} at step {self.state.step}")
        if loss > self.train_cfg.divergence_factor * best:
            bad += 1
            if bad >= self.train_cfg.divergence_patience:
                raise Diverged(
                    f"{key} {loss:.4g} above {self.train_cfg.divergence_factor}× its best "
                    f"({best:.4g}) {bad} times in a row"
                )
        else:
            bad = 0
        setattr(self.state, bad_key, bad)
        setattr(self.state, best_key, min(best, loss))

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

    def throughput(self, tokens: int, seconds: float) -> dict[str, float]:
        """``tokens``: the global batches of the window (``batch_tokens`` is the global batch,
        whatever the number of processes), so ``rate`` is the whole run's; MFU divides it by
        the peak of all the run's devices."""
        rate = tokens / seconds
        flops_rate = rate * self.flops_per_token
        out = {
            "tokens_per_s": rate,
            "time_s": self.state.wall_s,
            "epochs": self.sampler.epochs,
            "peak_memory_bytes": peak_memory_bytes(self.rt.device),
        }
        if self.peak_flops:
            out["mfu"] = flops_rate / (self.peak_flops * self.rt.world_size)
        else:
            out["achieved_flops_per_s"] = flops_rate
        return out

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
        stable = checkpoint.load(
            checkpoint.latest(self.rundir.checkpoint), self.model, self.optimizer
        )
        self.load_state_dict(stable)
        spent = (end - start) * self.train_cfg.batch_tokens * self.flops_per_token
        self.state.branches.append(
            {
                "step": end,
                "tokens": tokens,
                "flops": tokens * self.flops_per_token,  # the point's: a run that ended there
                "cooldown_flops": spent,  # what the branch cost: its cooldown's steps alone
                **point,
            }
        )

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        train = self.train_cfg
        if self.rt.is_main:
            self.sampler.warn_if_repeating(self.steps * train.batch_tokens)
        branches = dict(branch_points(train, self.steps))
        done = {b["step"] for b in self.state.branches}
        window_seconds, window_tokens = 0.0, 0
        if self.pause_at is not None and self.state.step >= self.pause_at:
            # resumed at or past the pause (its checkpoint is there): nothing to train now
            raise Paused(f"paused at step {self.state.step} (asked to pause at {self.pause_at})")
        started = time.perf_counter() - self.state.wall_s
        from rich.progress import Progress

        with Progress(disable=not (self.progress and self.rt.is_main), transient=True) as bar:
            task = bar.add_task("training", total=self.steps, completed=self.state.step)
            for step in range(self.state.step, self.steps):
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
                self.state.step = done_steps = step + 1
                self.state.wall_s = time.perf_counter() - started
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
                if done_steps == self.pause_at and not last:
                    self.save()
                    raise Paused(f"paused at step {done_steps}, as asked")
        return values
