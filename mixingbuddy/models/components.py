"""Assembling MixingBuddy from component checkpoints: MERT-v1-330M (loaded as HuBERT), a Qwen2 chat model, its
tokenizer with the audio token, quantization and LoRA."""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING

import torch

from .. import config_file
from ..hub.configuration_mixingbuddy import MixingBuddyConfig
from ..hub.modeling_mixingbuddy import MixingBuddyForConditionalGeneration
from ..hub.processing_mixingbuddy import MixingBuddyProcessor
from ..hub.vocabulary_mixingbuddy import END_OF_TURN

if TYPE_CHECKING:
    from trl import ModelConfig

MERT_V1_330M = "m-a-p/MERT-v1-330M"
QWEN2_7B_INSTRUCT = "Qwen/Qwen2-7B-Instruct"
TRAINED_MODULES = ("layer_weights", "projector", "advice_head")  # trained in full beside LoRA, saved with the adapter


def paper_model_args(**overrides) -> ModelConfig:
    """TRL's `ModelConfig` as `configs/paper.yaml` sets it — NF4 with double quantization and bf16 compute, LoRA r 16,
    α 32, dropout 0.1 on the language model's attention and MLP projections — with `overrides`."""
    from transformers import HfArgumentParser
    from trl import ModelConfig

    (model_args,) = HfArgumentParser(ModelConfig).parse_yaml_file(config_file("paper.yaml"), allow_extra_keys=True)
    return dataclasses.replace(model_args, **overrides)


def processor_for(config: MixingBuddyConfig, feature_extractor, tokenizer) -> MixingBuddyProcessor:
    """The processor that matches `config`: its audio token, clip length and audio tokens per clip."""
    return MixingBuddyProcessor(
        feature_extractor,
        tokenizer,
        audio_tokens_per_clip=config.audio_tokens_per_clip,
        audio_token=config.audio_token,
        clip_seconds=config.clip_seconds,
    )


def apply_lora(model: MixingBuddyForConditionalGeneration, model_args: ModelConfig | None = None):
    """Wrap `model` in `peft` as `model_args` (TRL's `ModelConfig`; default `paper_model_args()`) says, with LoRA on the
    language model only, and the projector, layer weights and advice head trained in full and saved with the adapter.

    `lora_target_modules` names module suffixes, and HuBERT's attention has `q_proj`, `k_proj` and `v_proj` too, so
    the suffixes become a pattern anchored at `language_model`: the frozen audio tower never gets LoRA.
    """
    from peft import get_peft_model
    from trl import get_peft_config

    peft_config = get_peft_config(model_args or paper_model_args())
    suffixes = peft_config.target_modules
    if not suffixes:
        raise ValueError("Name the language model's modules for LoRA in lora_target_modules (see configs/paper.yaml).")
    suffixes = [suffixes] if isinstance(suffixes, str) else sorted(suffixes)
    peft_config.target_modules = rf".*language_model.*\.({'|'.join(suffixes)})"
    peft_config.modules_to_save = [
        name for name in TRAINED_MODULES if getattr(model, name, getattr(model.model, name, None)) is not None
    ]
    return get_peft_model(model, peft_config)


def load_mert(audio_encoder: str, dtype: torch.dtype):
    """MERT (a Hub id or folder) as transformers' `HubertModel`, loaded strictly: MERT's config.json holds HuBERT's
    fields under another model_type and its weights have HuBERT's names, so its own remote code is not needed."""
    from transformers import HubertConfig, HubertModel

    config = HubertConfig.from_dict(HubertConfig.get_config_dict(audio_encoder)[0])
    audio_tower, loading = HubertModel.from_pretrained(audio_encoder, config=config, dtype=dtype, output_loading_info=True)
    if loading["missing_keys"] or loading["unexpected_keys"]:
        raise ValueError(
            f"{audio_encoder} does not hold HuBERT-layout weights: missing {sorted(loading['missing_keys'])[:5]}, "
            f"unexpected {sorted(loading['unexpected_keys'])[:5]}."
        )
    return audio_tower


def load_components(
    audio_encoder: str = MERT_V1_330M,
    language_model: str = QWEN2_7B_INSTRUCT,
    model_args: ModelConfig | None = None,
    gradient_checkpointing: bool = False,
    **config_kwargs,
) -> tuple:
    """(model, processor) built from a MERT checkpoint and a Qwen2 checkpoint (Hub ids or local folders).

    The language model's tokenizer, with the audio token added once, gives the config its audio token id and, with
    MERT's feature extractor, makes the processor. `model_args` (TRL's `ModelConfig`; default `paper_model_args()`)
    chooses quantization and LoRA: bitsandbytes needs a CUDA device, and without one the language model loads in full
    precision, with a warning; with `use_peft` the model is a `peft` model (`apply_lora`). `config_kwargs` go to
    [`MixingBuddyConfig`] (e.g. `audio_pooling`).
    """
    from transformers import AutoTokenizer, Qwen2ForCausalLM, Wav2Vec2FeatureExtractor
    from trl import get_quantization_config

    model_args = model_args or paper_model_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    lm_kwargs = {"dtype": getattr(torch, model_args.dtype) if cuda else torch.float32}
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None and not cuda:
        warnings.warn(
            "Quantization with bitsandbytes (4-bit NF4 or 8-bit) needs a CUDA GPU here; "
            "loading the language model in full precision instead.",
            stacklevel=2,
        )
    elif quantization_config is not None:
        lm_kwargs.update(quantization_config=quantization_config, device_map={"": device.index or 0})

    audio_token = config_kwargs.pop("audio_token", MixingBuddyConfig.audio_token)
    tokenizer = AutoTokenizer.from_pretrained(language_model, padding_side="left")
    tokenizer.add_special_tokens({"additional_special_tokens": [audio_token]})
    text_model = Qwen2ForCausalLM.from_pretrained(language_model, **lm_kwargs)
    if len(tokenizer) > text_model.config.vocab_size:
        text_model.resize_token_embeddings(len(tokenizer))
    audio_tower = load_mert(audio_encoder, lm_kwargs["dtype"])

    config = MixingBuddyConfig(
        audio_config=audio_tower.config.to_dict(),
        text_config=text_model.config.to_dict(),
        audio_token=audio_token,
        audio_token_id=tokenizer.convert_tokens_to_ids(audio_token),
        **config_kwargs,
    )
    with torch.device("meta"):
        model = MixingBuddyForConditionalGeneration(config)
    model.model.audio_tower = audio_tower.requires_grad_(not config.freeze_audio_tower).to(device)
    model.model.language_model = text_model.model
    model.lm_head = text_model.lm_head
    for module in (model.model.layer_weights, model.model.projector, model.advice_head):
        if module is not None:
            module.to_empty(device=device)
            module.apply(model._init_weights)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if "quantization_config" in lm_kwargs:
        from peft import prepare_model_for_kbit_training

        prepare_model_for_kbit_training(text_model, use_gradient_checkpointing=gradient_checkpointing)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    processor = processor_for(config, Wav2Vec2FeatureExtractor.from_pretrained(audio_encoder), tokenizer)
    return (apply_lora(model, model_args) if model_args.use_peft else model), processor
