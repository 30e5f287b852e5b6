"""Assembling MixingBuddy from component checkpoints: MERT-v1-330M (loaded as HuBERT), a Qwen2 chat model, its
tokenizer with the audio token, quantization and LoRA."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
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


QUANTIZATION_FIELDS = ("dtype", "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "use_bnb_nested_quant",
                       "bnb_4bit_quant_storage")  # what of TRL's ModelConfig a saved adapter needs to rebuild its base
logger = logging.getLogger(__name__)


def local_device() -> torch.device:
    """This process's device: its own GPU under a multi-process launch (LOCAL_RANK), the GPU, or the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
    return torch.device("cpu")


def load_components(
    audio_encoder: str = MERT_V1_330M,
    language_model: str = QWEN2_7B_INSTRUCT,
    model_args: ModelConfig | None = None,
    gradient_checkpointing: bool = False,
    device: str | torch.device | None = None,
    quantize_on_cpu: bool = True,
    audio_tower_dtype: torch.dtype = torch.float32,
    for_training: bool = True,
    **config_kwargs,
) -> tuple:
    """(model, processor) built from a MERT checkpoint and a Qwen2 checkpoint (Hub ids or local folders).

    The language model's tokenizer, with the audio token added once, gives the config its audio token id and, with
    MERT's feature extractor, makes the processor. `model_args` (TRL's `ModelConfig`; default `paper_model_args()`)
    chooses quantization and LoRA; `config_kwargs` go to [`MixingBuddyConfig`] (e.g. `audio_pooling`). Everything is
    placed on `device` (default: `local_device()`); the frozen audio tower runs in `audio_tower_dtype` (float32 by
    default; bfloat16 moves its features by 1.1–1.4 %: bench/tower_precision.py), the language model in
    `model_args.dtype` on a GPU and in float32 on the CPU.

    With 4- or 8-bit quantization the whole model says so (`is_loaded_in_4bit`, `hf_quantizer`), so peft wraps the
    quantized projections in its 4-bit LoRA layer and the Trainer treats it as a QLoRA model. bitsandbytes runs NF4
    on the CPU too, but a training step after an inference pass fails there (its CPU inference repacks the weights):
    with `quantize_on_cpu=False` (training that evaluates as it goes) the language model loads in full precision on
    the CPU instead, and a line says so. `for_training` prepares a quantized model for training as peft recommends
    (the parameters that are not 4-bit in float32, input gradients for checkpointing); loading for inference skips it.
    The model records its components (`component_record`) so that a saved adapter can rebuild its base.
    """
    from transformers import AutoTokenizer, Qwen2ForCausalLM, Wav2Vec2FeatureExtractor
    from trl import get_quantization_config

    model_args = model_args or paper_model_args()
    device = torch.device(device) if device is not None else local_device()
    dtype = getattr(torch, model_args.dtype) if device.type == "cuda" and model_args.dtype != "auto" else torch.float32
    lm_kwargs = {"dtype": dtype, "device_map": {"": device}}
    quantization_config = get_quantization_config(model_args)
    if quantization_config is not None and device.type == "cpu" and not quantize_on_cpu:
        logger.warning(
            "Loading the language model in full precision, not quantized: on the CPU, bitsandbytes cannot train after "
            "an evaluation pass (set eval_strategy to 'no' to train quantized)."
        )
        quantization_config = None
    elif quantization_config is not None:
        if device.type == "cpu":
            quantization_config.bnb_4bit_compute_dtype = torch.float32
        lm_kwargs["quantization_config"] = quantization_config

    audio_token = config_kwargs.pop("audio_token", MixingBuddyConfig.audio_token)
    tokenizer = AutoTokenizer.from_pretrained(language_model, padding_side="left")
    tokenizer.add_special_tokens({"additional_special_tokens": [audio_token]})
    text_model = Qwen2ForCausalLM.from_pretrained(language_model, **lm_kwargs)
    if len(tokenizer) > text_model.config.vocab_size:
        text_model.resize_token_embeddings(len(tokenizer))
    audio_tower = load_mert(audio_encoder, audio_tower_dtype)

    text_config = text_model.config.to_dict()
    text_config.pop("quantization_config", None)  # the composite declares it (`_declare_quantized`); a saved config must not
    config = MixingBuddyConfig(
        audio_config=audio_tower.config.to_dict(),
        text_config=text_config,
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
    model.component_record = {
        "audio_encoder": _absolute_if_local(audio_encoder),
        "language_model": _absolute_if_local(language_model),
        "model_args": {name: getattr(model_args, name) for name in QUANTIZATION_FIELDS},
        "config": {**config_kwargs, "audio_token": audio_token},
    }
    if "quantization_config" in lm_kwargs:
        _declare_quantized(model, text_model)
    if "quantization_config" in lm_kwargs and for_training:
        from peft import prepare_model_for_kbit_training

        prepare_model_for_kbit_training(
            model, gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    processor = processor_for(config, Wav2Vec2FeatureExtractor.from_pretrained(audio_encoder), tokenizer)
    return (apply_lora(model, model_args) if model_args.use_peft else model), processor


def _declare_quantized(model, text_model) -> None:
    """Make the composite say what its language model is: peft picks its LoRA layer and the Trainer its handling of
    quantized models (no `.to()`, no DataParallel, adapters required) from these attributes of the top-level model."""
    model.hf_quantizer = text_model.hf_quantizer
    model.quantization_method = text_model.quantization_method
    model.is_loaded_in_4bit = getattr(text_model, "is_loaded_in_4bit", False)
    model.is_loaded_in_8bit = getattr(text_model, "is_loaded_in_8bit", False)


def _absolute_if_local(reference: str) -> str:
    path = Path(reference).expanduser()
    return str(path.resolve()) if path.exists() else str(reference)
