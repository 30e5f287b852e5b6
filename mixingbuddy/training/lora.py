"""LoRA for MixingBuddy as TRL's `ModelConfig` describes it: on the language model's projections only, with the small
modules that map audio to tokens trained in full beside it."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from .. import config_file

if TYPE_CHECKING:
    from peft import LoraConfig
    from trl import ModelConfig

TRAINED_MODULES = ("layer_weights", "projector", "clip_levels", "advice_head")  # trained in full beside LoRA, saved with the adapter


def paper_model_args(**overrides) -> ModelConfig:
    """TRL's `ModelConfig` as `configs/paper.yaml` sets it — NF4 with double quantization and bf16 compute, LoRA r 16,
    α 32, dropout 0.1 on the language model's attention and MLP projections — with `overrides`."""
    from transformers import HfArgumentParser
    from trl import ModelConfig

    (model_args,) = HfArgumentParser(ModelConfig).parse_yaml_file(config_file("paper.yaml"), allow_extra_keys=True)
    return dataclasses.replace(model_args, **overrides)


def lora_config(model_args: ModelConfig, model) -> LoraConfig:
    """TRL's `get_peft_config(model_args)` for `model` (a MixingBuddy model), for `SFTTrainer(peft_config=...)`.

    `lora_target_modules` names module suffixes, and HuBERT's attention has `q_proj`, `k_proj` and `v_proj` too, so
    the suffixes become a pattern anchored at `language_model`: the frozen audio tower never gets LoRA. The layer
    weights, projector, clip-level embedding and advice head (those the model has) are `modules_to_save`: trained in
    full, saved with the adapter.
    """
    from trl import get_peft_config

    config = get_peft_config(model_args)
    suffixes = config.target_modules
    if not suffixes:
        raise ValueError("Name the language model's modules for LoRA in lora_target_modules (see configs/paper.yaml).")
    suffixes = [suffixes] if isinstance(suffixes, str) else sorted(suffixes)
    config.target_modules = rf".*language_model.*\.({'|'.join(suffixes)})"
    config.modules_to_save = [
        name for name in TRAINED_MODULES if getattr(model, name, getattr(model.model, name, None)) is not None
    ]
    return config
