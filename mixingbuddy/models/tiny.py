"""Tiny random MixingBuddy checkpoints for tests and demos: a small BPE tokenizer trained offline and small configs."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Wav2Vec2FeatureExtractor

from ..hub.configuration_mixingbuddy import MixingBuddyConfig
from ..hub.modeling_mixingbuddy import MixingBuddyForConditionalGeneration
from ..hub.vocabulary_mixingbuddy import (
    AUDIO_TOKEN,
    END_OF_TURN,
    INSTRUCTION_TEMPLATES,
    RESPONSE_TEMPLATES,
    START_OF_TURN,
    STEMS,
    SYSTEM_PROMPT,
    TARGET_STEMS,
    describe_stems,
    format_response,
)
from .checkpoints import quiet_progress, save_hub_folder
from .convert import processor_for

PAD_TOKEN = "<|endoftext|>"  # Qwen2's padding token
SPECIAL_TOKENS = [PAD_TOKEN, START_OF_TURN, END_OF_TURN, AUDIO_TOKEN]
TINY_AUDIO_CONFIG = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (16,) * 7,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
}
TINY_TEXT_CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}


def tokenizer_corpus() -> list[str]:
    """Every text the task uses: system prompt, instructions and responses for all stems and anchors."""
    texts = [SYSTEM_PROMPT, "system", "user", "assistant"]
    for template in INSTRUCTION_TEMPLATES:
        texts += [template.format(stems=describe_stems(STEMS), anchor=anchor) for anchor in TARGET_STEMS]
    for category, templates in RESPONSE_TEMPLATES.items():
        texts += [format_response(category, stem, i, anchor) for i in range(len(templates)) for stem in TARGET_STEMS
                  for anchor in TARGET_STEMS if anchor != stem]
    return texts


def build_tiny_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained offline on the task's texts, with ChatML and audio special tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=END_OF_TURN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        padding_side="left",
    )


def build_tiny_model_and_processor(seed: int = 0, text_hidden_size: int = 64, text_layers: int = 2, **config_kwargs):
    """A tiny random model (tiny HuBERT or log-mel front-end, tiny Qwen2) and its processor, in memory."""
    tokenizer = build_tiny_tokenizer()
    config_kwargs.setdefault("audio_pooling", 25)
    config_kwargs.setdefault("projector_hidden_sizes", [64, 64])
    config = MixingBuddyConfig(
        audio_config=dict(TINY_AUDIO_CONFIG),
        text_config={
            **TINY_TEXT_CONFIG,
            "hidden_size": text_hidden_size,
            "intermediate_size": 2 * text_hidden_size,
            "num_hidden_layers": text_layers,
            "vocab_size": len(tokenizer),
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        audio_token_id=tokenizer.convert_tokens_to_ids(AUDIO_TOKEN),
        **config_kwargs,
    )
    torch.manual_seed(seed)
    model = MixingBuddyForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    feature_extractor = Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=config.sampling_rate, padding_value=0.0, do_normalize=True, return_attention_mask=False
    )
    return model, processor_for(config, feature_extractor, tokenizer)


def save_tiny_checkpoint(out_dir: str | os.PathLike, seed: int = 0, **config_kwargs) -> Path:
    """`mixingbuddy tiny-checkpoint OUT`: a tiny random model folder in Hub layout."""
    model, processor = build_tiny_model_and_processor(seed=seed, **config_kwargs)
    return save_hub_folder(model, processor, out_dir)


# A plain ChatML template (text only) for the tiny tokenizer when it stands in for a chat model such as a judge's.
CHATML_TEMPLATE = (
    "{% for message in messages %}" + START_OF_TURN + "{{ message['role'] }}\n{{ message['content'] }}" + END_OF_TURN
    + "\n{% endfor %}{% if add_generation_prompt %}" + START_OF_TURN + "assistant\n{% endif %}"
)


def save_tiny_chat_model(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny random Qwen2 chat model with the tiny tokenizer and a ChatML template: a stand-in for the LLM judge
    that loads with `AutoModelForCausalLM` and `AutoTokenizer`, offline."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = CHATML_TEMPLATE
    config = Qwen2Config(**{**TINY_TEXT_CONFIG, "max_position_embeddings": 4096}, vocab_size=len(tokenizer),
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with quiet_progress():
        model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)


def save_tiny_encoder(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """A tiny random BERT encoder with the tiny tokenizer: a stand-in for a sentence-embedding model that loads with
    `AutoModel` and `AutoTokenizer`, offline."""
    from transformers import BertConfig, BertModel

    tokenizer = build_tiny_tokenizer()
    tokenizer.model_max_length = 512
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    with quiet_progress():
        BertModel(config).eval().save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return Path(out_dir)
