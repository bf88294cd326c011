"""Live training progress in the Dagster run log, through a standard Trainer callback."""

from __future__ import annotations

import time

from transformers import TrainerCallback


class RunLogProgress(TrainerCallback):
    """Logs step, epoch, loss and an ETA each time the Trainer logs, so a long run is never silent."""

    def __init__(self, log):
        self.log = log
        self.started = None
        self.first_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        # A resumed run begins at its checkpoint's step; the ETA counts only the steps taken since.
        self.started, self.first_step = time.monotonic(), state.global_step
        numerics = "bf16 mixed precision" if args.bf16 else "fp16 mixed precision" if args.fp16 else "float32"
        self.log.info(f"training: {state.max_steps} optimizer steps, {args.num_train_epochs} epoch(s), {numerics}"
                      + (f", resumed at step {state.global_step}" if state.global_step else ""))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or self.started is None:
            return
        elapsed = time.monotonic() - self.started
        done = max(state.global_step - self.first_step, 1)
        eta = elapsed / done * max(state.max_steps - state.global_step, 0)
        figures = ", ".join(f"{k}={v:.4g}" for k, v in logs.items() if isinstance(v, (int, float)))
        self.log.info(f"step {state.global_step}/{state.max_steps} ({elapsed:.0f}s elapsed, "
                      f"ETA {eta:.0f}s): {figures}")
