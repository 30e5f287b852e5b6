"""`mixingbuddy convert`: one untrained MixingBuddy folder from an audio encoder (MERT-v1-330M, loaded as HuBERT) and a
Qwen2 chat model, as transformers' `convert_*.py` scripts write its own multimodal checkpoints. Everything after it is
`from_pretrained` (with a `quantization_config` for QLoRA) and `SFTTrainer(peft_config=...)`."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..files import atomic_folder, check_output_folder, push_folder_to_hub
from ..hub.configuration_mixingbuddy import MixingBuddyConfig
from ..hub.modeling_mixingbuddy import MixingBuddyForConditionalGeneration
from ..hub.processing_mixingbuddy import MixingBuddyProcessor
from ..hub.vocabulary_mixingbuddy import END_OF_TURN
from .checkpoints import is_small, quiet_progress

MERT_V1_330M = "m-a-p/MERT-v1-330M"
QWEN2_7B_INSTRUCT = "Qwen/Qwen2-7B-Instruct"
MODEL_KIND = "model"  # the marker kind of a converted folder: `--overwrite` replaces only folders MixingBuddy wrote


def processor_for(config: MixingBuddyConfig, feature_extractor, tokenizer) -> MixingBuddyProcessor:
    """The processor that matches `config`: its audio token, clip length, audio tokens per clip and clips per
    prompt."""
    return MixingBuddyProcessor(
        feature_extractor,
        tokenizer,
        audio_tokens_per_clip=config.audio_tokens_per_clip,
        audio_token=config.audio_token,
        clip_seconds=config.clip_seconds,
        audio_inputs=config.audio_inputs,
    )


def load_mert(audio_encoder: str | os.PathLike):
    """MERT (a Hub id or folder) as transformers' `HubertModel` in float32, loaded strictly: MERT's config.json holds
    HuBERT's fields under another model_type and its weights have HuBERT's names, so its own remote code is not
    needed."""
    from transformers import HubertConfig, HubertModel

    config = HubertConfig.from_dict(HubertConfig.get_config_dict(str(audio_encoder))[0])
    audio_tower, loading = HubertModel.from_pretrained(
        str(audio_encoder), config=config, dtype=torch.float32, output_loading_info=True
    )
    if loading["missing_keys"] or loading["unexpected_keys"]:
        raise ValueError(
            f"{audio_encoder} does not hold HuBERT-layout weights: missing {sorted(loading['missing_keys'])[:5]}, "
            f"unexpected {sorted(loading['unexpected_keys'])[:5]}."
        )
    return audio_tower


def convert(
    audio_encoder: str | os.PathLike = MERT_V1_330M,
    language_model: str | os.PathLike = QWEN2_7B_INSTRUCT,
    out_dir: str | os.PathLike = "models/mixingbuddy-base",
    seed: int = 0,
    max_shard_size: str = "5GB",
    overwrite: bool = False,
    push_to_hub: str | None = None,
    **config_kwargs,
) -> Path:
    """Write an untrained MixingBuddy folder to `out_dir`: the config (`config_kwargs` are [`MixingBuddyConfig`] fields,
    e.g. `audio_pooling`, `aux_loss`, `audio_inputs`), the processor (the language model's tokenizer with the audio
    token added once, MERT's feature extractor), the audio tower's and language model's weights as they are stored,
    the layer weights, projector and heads initialised from `seed`, in sharded safetensors, with the four Hub files.
    With `audio_frontend="log_mel"` the light front-end is initialised too and `audio_encoder` is not read. With
    `push_to_hub`, the folder is also uploaded to that Hub model repository."""
    from transformers import AutoTokenizer, Qwen2ForCausalLM, Wav2Vec2FeatureExtractor

    check_output_folder(out_dir, overwrite, kind=MODEL_KIND)  # before minutes of loading
    hubert = config_kwargs.get("audio_frontend", "hubert") == "hubert"
    config_kwargs.setdefault("freeze_audio_tower", hubert)
    MixingBuddyConfig(**config_kwargs)  # a field's error (e.g. clip_levels with one clip) before loading too
    audio_tower = load_mert(audio_encoder) if hubert else None
    tokenizer = AutoTokenizer.from_pretrained(str(language_model), padding_side="left")
    audio_token = config_kwargs.pop("audio_token", MixingBuddyConfig.audio_token)
    if audio_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [audio_token]})
    text_model = Qwen2ForCausalLM.from_pretrained(str(language_model), dtype="auto")
    if len(tokenizer) > text_model.config.vocab_size:
        text_model.resize_token_embeddings(len(tokenizer))

    config = MixingBuddyConfig(
        **({"audio_config": audio_tower.config.to_dict()} if hubert else {}),
        text_config=text_model.config.to_dict(),
        audio_token=audio_token,
        audio_token_id=tokenizer.convert_tokens_to_ids(audio_token),
        **config_kwargs,
    )
    config.dtype = text_model.dtype
    with torch.device("meta"):
        model = MixingBuddyForConditionalGeneration(config)
    if hubert:
        model.model.audio_tower = audio_tower.requires_grad_(not config.freeze_audio_tower)
    model.model.language_model = text_model.model
    model.lm_head = text_model.lm_head
    torch.manual_seed(seed)
    fresh = (model.model.layer_weights, model.model.projector, model.model.clip_levels, model.advice_head)
    for module in fresh if hubert else (*fresh, model.model.audio_tower):
        if module is not None:
            module.to_empty(device="cpu")
            module.apply(model._init_weights)
    model.generation_config.eos_token_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    feature_extractor = (
        Wav2Vec2FeatureExtractor.from_pretrained(str(audio_encoder)) if hubert else Wav2Vec2FeatureExtractor(
            sampling_rate=config.sampling_rate, do_normalize=True, return_attention_mask=False
        )
    )
    processor = processor_for(config, feature_extractor, tokenizer)
    with atomic_folder(out_dir, overwrite=overwrite, kind=MODEL_KIND) as staging, quiet_progress(is_small(model)):
        model.save_pretrained(staging, max_shard_size=max_shard_size)
        processor.save_pretrained(staging)
    if push_to_hub:
        push_folder_to_hub(Path(out_dir), push_to_hub)
    return Path(out_dir)
