"""Rows of the flawed-mix data set → model inputs, their clips rendered on the fly from the stem cache."""

from __future__ import annotations

import copy

import numpy as np
import torch

from dataset_builder import StemCache
from dataset_builder.augment import augment_clips
from dataset_builder.rows import as_row
from dataset_builder.seeding import keyed_rng

from ..hub.processing_mixingbuddy import make_conversation
from ..hub.vocabulary_mixingbuddy import MIX_CLIP, STEMS, advice_class, audio_clips


class FlawedMixCollator:
    """Rows of the flawed-mix data set (in any form `as_row` reads) -> model inputs.

    Each row's clips — those the processor's `audio_inputs` names (`audio_clips`): the flawed mix, and in the other
    settings the anchor stem or every stem — are rendered from the stem cache: stems summed, the target scaled by its
    gain in every clip that holds it. The prompt is the row's instruction after the clips' labelled placeholders.
    Training collators also augment the clips (one gain, SNR and DC offset per example, noise per clip) and, with
    `fresh_gains`, replace the row's gain by a new one drawn uniformly within its category's range, so every pass over
    the data hears every chunk at new levels, and with `other_spread_db` move `other` by a gain drawn uniformly within
    ±that many dB (`other` is never a target nor an anchor: how loud the accompaniment sits is not what the advice is
    about, and songs differ in it far more than the corpus's level spread), and with `stem_spread_db` move every stem
    within ±that many dB before the flaw (the advice unchanged: a "balanced" song is balanced within that much); the
    draws use a seed derived from (seed, uid, epoch), so that a run is reproducible whatever the order, the number of
    workers or a resume. Prompt, audio and padding positions of `labels` are -100.
    """

    def __init__(
        self, processor, stems_dir, cache_dir=None, augment: bool = False, seed: int = 0, fresh_gains: bool = False,
        other_spread_db: float = 0.0, stem_spread_db: float = 0.0,
    ):
        if not 0 <= other_spread_db <= 24:
            raise ValueError(f"other_spread_db must be from 0 to 24 dB, got {other_spread_db}.")
        if not 0 <= stem_spread_db <= 12:
            raise ValueError(f"stem_spread_db must be from 0 to 12 dB, got {stem_spread_db}.")
        self.processor = processor
        self.cache = StemCache(stems_dir, processor.sampling_rate, cache_dir=cache_dir)
        self.augment = augment
        self.fresh_gains = fresh_gains
        self.other_spread_db = other_spread_db
        self.stem_spread_db = stem_spread_db
        self.seed = seed
        self.epoch = 0
        self._prompts: dict[tuple[str, str], str] = {}

    def eval_copy(self) -> FlawedMixCollator:
        """The same collator (sharing its stem cache and prompts) without augmentation, for evaluation."""
        other = copy.copy(self)
        other.augment = other.fresh_gains = False
        other.other_spread_db = other.stem_spread_db = 0.0
        return other

    def prompt(self, instruction: str, anchor: str) -> str:
        """The chat prompt for an instruction and its anchor (rendered once per distinct pair)."""
        if (instruction, anchor) not in self._prompts:
            conversation = make_conversation(instruction, clip_labels=self.processor.clip_labels(anchor))
            self._prompts[instruction, anchor] = self.processor.apply_chat_template(
                conversation, add_generation_prompt=True
            )
        return self._prompts[instruction, anchor]

    def clip_names(self, row: dict) -> list[str]:
        """The clips the model hears for a row, in the prompt's order (`audio_clips`)."""
        return audio_clips(self.processor.audio_inputs, row["anchor_stem"])

    def render_clips(self, row: dict) -> list[np.ndarray]:
        """The row's clips (`clip_names`), float32 [samples] each, augmented alike when training."""
        if not (self.augment or self.fresh_gains or self.other_spread_db or self.stem_spread_db):
            return self.cache.render_clips(row, self.clip_names(row))
        rng = keyed_rng(self.seed, row["uid"], self.epoch)
        if self.fresh_gains:
            row = {**row, "gain_db": float(rng.uniform(row["min_gain_db"], row["max_gain_db"]))}
        moves_db = {}
        if self.other_spread_db:
            moves_db["other"] = float(rng.uniform(-self.other_spread_db, self.other_spread_db))
        if self.stem_spread_db:
            for stem in STEMS:
                moves_db[stem] = moves_db.get(stem, 0.0) + float(rng.uniform(-self.stem_spread_db, self.stem_spread_db))
        names = self.clip_names(row)
        clips = self.cache.render_clips(row, names, moves_db)
        return augment_clips(clips, seed=rng, mix_index=names.index(MIX_CLIP)) if self.augment else clips

    def render(self, row: dict) -> np.ndarray:
        """The row's flawed mix as the model hears it (augmented like the row's other clips)."""
        return self.render_clips(row)[self.clip_names(row).index(MIX_CLIP)]

    def __call__(self, rows, labels: bool = True):
        """Model inputs for a batch of rows: prompts and rendered clips; with `labels`, also the responses (`labels`)
        and their advice classes (`advice_labels`, for the `"label"` auxiliary loss)."""
        rows = [as_row(row) for row in rows]
        batch = self.processor(
            text=[self.prompt(row["instruction"], row["anchor_stem"]) for row in rows],
            audio=[self.render_clips(row) for row in rows],
            sampling_rate=self.processor.sampling_rate,
            responses=[row["response"] for row in rows] if labels else None,
        )
        if labels:
            batch["advice_labels"] = advice_labels(rows)
        return batch


def advice_labels(rows) -> torch.Tensor:
    """[rows] the (target stem, category) class of each row (`ADVICE_CLASSES` index), the `"label"` loss's target."""
    return torch.tensor([advice_class(r["target_stem"], r["error_category"]) for r in rows])
