"""Supervised fine-tuning of MixingBuddy with TRL: a collator that renders flawed mixes from the stem cache, an
`SFTTrainer` subclass that adds the auxiliary loss correctly under gradient accumulation, and the projector-dropout
schedule."""

from __future__ import annotations

import copy
import hashlib
import math

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState
from trl import SFTTrainer

from dataset_builder import StemCache, augment_mix
from processing_mixingbuddy import advice_class, make_conversation


def example_seed(*parts) -> int:
    """A 64-bit seed from any values, stable across processes and Python versions (unlike `hash`)."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def unwrap_mixingbuddy(model):
    """The MixingBuddy model inside a PEFT and/or accelerate wrapper."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class FlawedMixCollator:
    """Rows of the flawed-mix data set -> model inputs.

    Each row's flawed mix is rendered from the stem cache (stems summed, the target scaled by its gain); training
    collators also augment it, with a seed derived from (seed, uid, epoch) so that a run is reproducible whatever the
    order, the number of workers or a resume. Prompt, audio and padding positions of `labels` are -100.
    """

    def __init__(self, processor, stems_dir, cache_dir=None, augment: bool = False, seed: int = 0):
        self.processor = processor
        self.cache = StemCache(stems_dir, processor.sampling_rate, cache_dir=cache_dir)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self._prompts: dict[str, str] = {}

    def eval_copy(self) -> "FlawedMixCollator":
        """The same collator (sharing its stem cache and prompts) without augmentation, for evaluation."""
        other = copy.copy(self)
        other.augment = False
        return other

    def prompt(self, instruction: str) -> str:
        """The chat prompt for an instruction (rendered once per distinct instruction)."""
        if instruction not in self._prompts:
            conversation = make_conversation(instruction)
            self._prompts[instruction] = self.processor.apply_chat_template(conversation, add_generation_prompt=True)
        return self._prompts[instruction]

    def render(self, row: dict) -> np.ndarray:
        mix = self.cache.render(row)
        if self.augment:
            mix = augment_mix(mix, seed=example_seed(self.seed, row["uid"], self.epoch))
        return mix

    def generation_inputs(self, rows: list[dict], responses: list[str] | None = None):
        """Prompts and rendered mixes (with `responses`, also labels) for a batch of rows."""
        return self.processor(
            text=[self.prompt(row["instruction"]) for row in rows],
            audio=[self.render(row) for row in rows],
            sampling_rate=self.processor.sampling_rate,
            responses=responses,
        )

    def __call__(self, rows: list[dict]):
        batch = self.generation_inputs(rows, responses=[row["response"] for row in rows])
        batch["advice_labels"] = torch.tensor([advice_class(r["target_stem"], r["error_category"]) for r in rows])
        return batch


@torch.no_grad()
def fit_log_mel_statistics(model, collator: FlawedMixCollator, dataset, num_clips: int = 256, batch_size: int = 32):
    """Set the log-mel front-end's per-bin mean and standard deviation from `num_clips` rendered training mixes
    (evenly spaced rows, no augmentation). Fixed statistics, not per-clip normalisation, keep level differences."""
    tower = model.model.audio_tower
    indices = np.linspace(0, len(dataset) - 1, num=min(num_clips, len(dataset))).round().astype(int)
    frames = []
    for start in range(0, len(indices), batch_size):
        rows = [dataset[int(i)] for i in indices[start : start + batch_size]]
        values = collator(rows)["input_values"]
        frames.append(tower.log_mel(values.to(tower.window.device)).flatten(0, 1))
    frames = torch.cat(frames)  # [clips × frames, num_mel_bins]
    tower.feature_mean.copy_(frames.mean(0))
    tower.feature_std.copy_(frames.std(0).clamp(min=1e-3))


class AugmentationEpochCallback(TrainerCallback):
    """Tells the collator which epoch it is, so that every epoch sees a new augmentation of each mix."""

    def __init__(self, collator: FlawedMixCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = math.floor(state.epoch or 0)


class ProjectorDropoutSchedule(TrainerCallback, ExportableState):
    """Projector dropout starts at `start` and is lowered to `end`, once, when the eval loss stops improving.
    The decision is saved in checkpoints, so a resumed run keeps it."""

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


class MixingBuddySFTTrainer(SFTTrainer):
    """`SFTTrainer` for MixingBuddy: loss = LM loss + weight × auxiliary loss, both logged.

    Under gradient accumulation the LM loss is a sum over response tokens divided by the tokens of the whole
    accumulated batch (`num_items_in_batch`), and the auxiliary loss, a mean over clips, is rescaled to a sum over the
    micro-batch's clips divided by the clips of the whole accumulated batch: one optimizer step equals one large batch.
    Evaluation batches use `eval_data_collator` (no augmentation).
    """

    def __init__(self, *args, eval_data_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.eval_data_collator = eval_data_collator or self.data_collator
        self._clips_in_step = None

    def _get_dataloader(self, dataset, description, batch_size, sampler_fn=None, is_training=False, dataloader_key=None):
        train_collator = self.data_collator
        self.data_collator = train_collator if is_training else self.eval_data_collator
        try:
            return super()._get_dataloader(dataset, description, batch_size, sampler_fn, is_training, dataloader_key)
        finally:
            self.data_collator = train_collator

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        batch_samples, num_items_in_batch = super().get_batch_samples(epoch_iterator, num_batches, device)
        clips = torch.tensor(sum(len(b["input_ids"]) for b in batch_samples), device=device)
        if self.args.average_tokens_across_devices and self.accelerator.num_processes > 1:
            clips = self.accelerator.gather(clips).sum()
        self._clips_in_step = int(clips)
        return batch_samples, num_items_in_batch

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if model.training else "eval"
        outputs = model(**inputs, num_items_in_batch=num_items_in_batch)
        lm_loss, aux_loss = outputs.lm_loss, outputs.aux_loss
        weight = unwrap_mixingbuddy(model).config.aux_loss_weight
        aux_mean = aux_loss
        if num_items_in_batch is not None and aux_loss is not None:
            aux_loss = aux_loss * len(inputs["input_ids"]) / self._clips_in_step
        loss = lm_loss if aux_loss is None else lm_loss + weight * aux_loss
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes

        tokens = (inputs["labels"][:, 1:] != -100).sum()
        lm_mean = lm_loss * num_items_in_batch / tokens if num_items_in_batch is not None else lm_loss
        self._metrics[mode]["lm_loss"].append(self.accelerator.gather(lm_mean.detach()).mean().item())
        if aux_mean is not None:
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather(aux_mean.detach()).mean().item())
        return (loss, outputs) if return_outputs else loss
