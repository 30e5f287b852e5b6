"""Trainer callbacks: a new augmentation of every mix each epoch, and the projector-dropout schedule."""

from __future__ import annotations

import math

from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .collator import FlawedMixCollator
from .trainer import unwrap_mixingbuddy


class AugmentationEpochCallback(TrainerCallback):
    """Tells the collator which epoch it is, so that every epoch sees a new augmentation of each mix."""

    def __init__(self, collator: FlawedMixCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = math.floor(state.epoch or 0)


class ProjectorDropoutSchedule(TrainerCallback, ExportableState):
    """Projector dropout starts at `start` and is lowered to `end`, once, when the eval loss stops improving.
    The decision is saved in checkpoints and restored on resume (`run.main` sets
    `restore_callback_states_from_checkpoint`), so a resumed run keeps it, with the checkpoint's `start` and `end`."""

    def __init__(self, start: float = 0.3, end: float = 0.1, best_eval_loss: float = math.inf, lowered: bool = False):
        self.start, self.end = start, end
        self.best_eval_loss, self.lowered = best_eval_loss, lowered

    @property
    def current(self) -> float:
        return self.end if self.lowered else self.start

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        unwrap_mixingbuddy(model).set_projector_dropout(self.current)

    def on_evaluate(self, args, state, control, model=None, metrics=None, **kwargs):
        loss = (metrics or {}).get("eval_loss")
        if loss is None:
            return
        if loss >= self.best_eval_loss and not self.lowered:
            self.lowered = True
            unwrap_mixingbuddy(model).set_projector_dropout(self.end)
        self.best_eval_loss = min(self.best_eval_loss, loss)

    def state(self) -> dict:
        return {
            "args": {"start": self.start, "end": self.end},
            "attributes": {"best_eval_loss": self.best_eval_loss, "lowered": self.lowered},
        }
