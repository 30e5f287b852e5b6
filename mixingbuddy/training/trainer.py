"""`MixingBuddySFTTrainer`: TRL's `SFTTrainer` with the auxiliary loss, normalised correctly under gradient
accumulation and across processes."""

from __future__ import annotations

import torch
from trl import SFTTrainer

from ..models.devices import float32_where_emulated


def unwrap_mixingbuddy(model):
    """The MixingBuddy model inside a PEFT and/or accelerate wrapper."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class MixingBuddySFTTrainer(SFTTrainer):
    """`SFTTrainer` for MixingBuddy: loss = LM loss + weight × auxiliary loss, both logged.

    Under gradient accumulation the LM loss is a sum over response tokens divided by the tokens of the whole
    accumulated batch (`num_items_in_batch`), and the auxiliary loss, a mean over clips, is rescaled to a sum over the
    micro-batch's clips divided by the clips of the whole accumulated batch: one optimizer step equals one large batch.
    Evaluation batches use `eval_data_collator` (no augmentation). TRL casts a quantized model's trainable parameters
    to bfloat16; on a CPU that would emulate bfloat16 they go back to float32 (`float32_where_emulated`).
    """

    def __init__(self, *args, eval_data_collator=None, **kwargs):
        super().__init__(*args, **kwargs)
        float32_where_emulated(self.model)
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
        outputs = model(**inputs, num_items_in_batch=num_items_in_batch, use_cache=False)
        lm_loss, aux_loss = outputs.lm_loss, outputs.aux_loss
        aux_mean = aux_loss
        if num_items_in_batch is not None and aux_loss is not None:
            aux_loss = aux_loss * len(inputs["input_ids"]) / self._clips_in_step
        loss = unwrap_mixingbuddy(model).total_loss(lm_loss, aux_loss)
        if num_items_in_batch is not None and self.args.average_tokens_across_devices:
            loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes

        tokens = (inputs["labels"][:, 1:] != -100).sum()
        lm_mean = lm_loss * num_items_in_batch / tokens if num_items_in_batch is not None else lm_loss
        self._metrics[mode]["lm_loss"].append(self.accelerator.gather(lm_mean.detach()).mean().item())
        if aux_mean is not None:
            self._metrics[mode]["aux_loss"].append(self.accelerator.gather(aux_mean.detach()).mean().item())
        return (loss, outputs) if return_outputs else loss
