"""Rows of the flawed-mix data set → model inputs, the flawed mixes rendered on the fly from the stem cache."""

from __future__ import annotations

import copy

import numpy as np
import torch

from dataset_builder import StemCache, augment_mix
from dataset_builder.rows import as_row
from dataset_builder.seeding import keyed_rng

from ..hub.processing_mixingbuddy import make_conversation
from ..hub.vocabulary_mixingbuddy import advice_class


class FlawedMixCollator:
    """Rows of the flawed-mix data set (in any form `as_row` reads) -> model inputs.

    Each row's flawed mix is rendered from the stem cache (stems summed, the target scaled by its gain). Training
    collators also augment it and, with `fresh_gains`, replace the row's gain by a new one drawn uniformly within its
    category's range, so every pass over the data hears every chunk at new levels; both draws use a seed derived from
    (seed, uid, epoch), so that a run is reproducible whatever the order, the number of workers or a resume. Prompt,
    audio and padding positions of `labels` are -100.
    """

    def __init__(
        self, processor, stems_dir, cache_dir=None, augment: bool = False, seed: int = 0, fresh_gains: bool = False
    ):
        self.processor = processor
        self.cache = StemCache(stems_dir, processor.sampling_rate, cache_dir=cache_dir)
        self.augment = augment
        self.fresh_gains = fresh_gains
        self.seed = seed
        self.epoch = 0
        self._prompts: dict[str, str] = {}

    def eval_copy(self) -> FlawedMixCollator:
        """The same collator (sharing its stem cache and prompts) without augmentation, for evaluation."""
        other = copy.copy(self)
        other.augment = other.fresh_gains = False
        return other

    def prompt(self, instruction: str) -> str:
        """The chat prompt for an instruction (rendered once per distinct instruction)."""
        if instruction not in self._prompts:
            conversation = make_conversation(instruction)
            self._prompts[instruction] = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        return self._prompts[instruction]

    def render(self, row: dict) -> np.ndarray:
        if not (self.augment or self.fresh_gains):
            return self.cache.render(row)
        rng = keyed_rng(self.seed, row["uid"], self.epoch)
        if self.fresh_gains:
            row = {**row, "gain_db": float(rng.uniform(row["min_gain_db"], row["max_gain_db"]))}
        mix = self.cache.render(row)
        return augment_mix(mix, seed=rng) if self.augment else mix

    def __call__(self, rows, labels: bool = True):
        """Model inputs for a batch of rows: prompts and rendered mixes; with `labels`, also the responses (`labels`)
        and their advice classes (`advice_labels`, for the `"label"` auxiliary loss)."""
        rows = [as_row(row) for row in rows]
        batch = self.processor(
            text=[self.prompt(row["instruction"]) for row in rows],
            audio=[self.render(row) for row in rows],
            sampling_rate=self.processor.sampling_rate,
            responses=[row["response"] for row in rows] if labels else None,
        )
        if labels:
            batch["advice_labels"] = advice_labels(rows)
        return batch


def advice_labels(rows) -> torch.Tensor:
    """[rows] the (target stem, category) class of each row (`ADVICE_CLASSES` index), the `"label"` loss's target."""
    return torch.tensor([advice_class(r["target_stem"], r["error_category"]) for r in rows])
