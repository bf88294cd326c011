"""Live training progress in the Dagster run log, through a standard Trainer callback."""

from __future__ import annotations

import time

from transformers import TrainerCallback

EVERY_FRACTION = 0.05  # a progress line at least every 5 % of the optimizer steps ...
EVERY_SECONDS = 30.0  # ... or every 30 seconds, whichever comes first


class RunLogProgress(TrainerCallback):
    """Keeps a training run from ever looking stuck: a progress line (step, share done, elapsed,
    ETA, the latest training loss) at least every 5 % of the optimizer steps or every 30 seconds,
    whichever comes first, so a 7-step run reports every step and a 300-step one every 15; then
    each validation result and the final summary as the Trainer logs them. The Trainer calls back
    at the end of each step, so one step longer than 30 seconds is reported when it ends. When the
    Trainer logs the loss at the very step a line is due (``logging_steps``), the line waits for it
    and shows it (``step 40/302 (13%, 29s elapsed, ETA 190s): loss=0.41, grad_norm=...``);
    otherwise it shows the last loss logged and its step.
    """

    def __init__(self, log, clock=time.monotonic):
        self.log = log
        self.clock = clock
        self.started = None
        self.first_step = 0
        self.reported = (0, 0.0)  # (step, time) of the last progress line
        self.loss = None  # (step, loss) of the Trainer's latest training log
        self.pending = False  # a progress line due at this step waits for the step's training log

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run begins at its checkpoint's step; the ETA counts only the steps taken since.
        self.started, self.first_step = self.clock(), state.global_step
        self.reported = (state.global_step, self.started)
        numerics = "bf16 mixed precision" if args.bf16 else "fp16 mixed precision" if args.fp16 else "float32"
        self.log.info(
            f"training: {state.max_steps} optimizer steps, {args.num_train_epochs:g} epoch(s), {numerics}"
            + (f", resumed at step {state.global_step}" if state.global_step else "")
        )

    def on_step_end(self, args, state, control, **kwargs):
        if self.started is None:
            return
        now, (step, when) = self.clock(), self.reported
        every = max(1, int(state.max_steps * EVERY_FRACTION))
        if state.global_step - step >= every or now - when >= EVERY_SECONDS or state.global_step >= state.max_steps:
            self.reported = (state.global_step, now)
            if control.should_log:  # the Trainer logs this step's loss next: the line waits for it
                self.pending = True
            else:
                self.log.info(self._progress(state, now))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or self.started is None:
            return
        figures = ", ".join(f"{key}={value:.4g}" for key, value in logs.items() if isinstance(value, (int, float)))
        if "loss" in logs:  # a training log
            self.loss = (state.global_step, logs["loss"])
            if self.pending:
                self.pending = False
                self.log.info(self._progress(state, self.reported[1], figures))
            return
        what = "validation" if any(key.startswith("eval_") for key in logs) else "training finished"
        self.log.info(f"{what} at step {state.global_step}/{state.max_steps}: {figures}")

    def on_train_end(self, args, state, control, **kwargs):
        if self.pending:  # the Trainer skipped the log the line waited for
            self.pending = False
            self.log.info(self._progress(state, self.reported[1]))

    def _progress(self, state, now: float, figures: str = "") -> str:
        elapsed = now - self.started
        done = max(state.global_step - self.first_step, 1)
        eta = elapsed / done * max(state.max_steps - state.global_step, 0)
        latest = figures or (f"last loss={self.loss[1]:.4g} at step {self.loss[0]}" if self.loss else "")
        return (
            f"step {state.global_step}/{state.max_steps} ({state.global_step / max(state.max_steps, 1):.0%}, "
            f"{elapsed:.0f}s elapsed, ETA {eta:.0f}s)" + (f": {latest}" if latest else "")
        )
