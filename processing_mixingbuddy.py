"""Processor for MixingBuddy: audio preparation and chat prompts whose audio placeholder is expanded to the audio
embeddings the model makes."""

from __future__ import annotations

import numpy as np
import soxr
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

try:  # the package mixingbuddy.hub, or transformers_modules.<folder> for a saved folder
    from .vocabulary_mixingbuddy import (
        AUDIO_TOKEN,
        END_OF_TURN,
        START_OF_TURN,
        STEMS,
        SYSTEM_PROMPT,
        Advice,
        advice_validity,
        format_instruction,
        format_response,
        parse_advice,
    )
except ImportError:  # a top-level module, from a folder on sys.path: `from processing_mixingbuddy import parse_advice`
    if __package__:
        raise
    from vocabulary_mixingbuddy import (
        AUDIO_TOKEN,
        END_OF_TURN,
        START_OF_TURN,
        STEMS,
        SYSTEM_PROMPT,
        Advice,
        advice_validity,
        format_instruction,
        format_response,
        parse_advice,
    )


def make_conversation(instruction: str, response: str | None = None) -> list[dict]:
    """A user turn holding one audio item and `instruction`, followed by the assistant's `response` when given."""
    conversation = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": instruction}]}]
    if response is not None:
        conversation.append({"role": "assistant", "content": response})
    return conversation


# ChatML, with the system prompt filled in when the conversation has none and one audio placeholder per audio item.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}" + START_OF_TURN + "system\n" + SYSTEM_PROMPT + END_OF_TURN + "\n"
    "{% endif %}" + START_OF_TURN + "{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}{{ audio_token }}\n"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}" + END_OF_TURN + "\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}" + START_OF_TURN + "assistant\n{% endif %}"
)


class MixingBuddyProcessor(ProcessorMixin):
    r"""
    Prepares mixes and prompts for [`MixingBuddyForConditionalGeneration`].

    Audio (numpy or torch; mono, `[channels, samples]` or `[samples, channels]`; any sampling rate) is downmixed,
    resampled to the feature extractor's rate with soxr, and cropped or zero-padded to `clip_seconds`. Each audio
    placeholder in the text is expanded to exactly the number of embeddings the model makes for a clip.

    Args:
        feature_extractor ([`Wav2Vec2FeatureExtractor`]): MERT's feature extractor (24 kHz).
        tokenizer ([`PreTrainedTokenizerBase`]): the Qwen2 tokenizer, with the audio token added.
        audio_tokens_per_clip (`int`): embeddings the model makes for one clip (`MixingBuddyConfig.audio_tokens_per_clip`).
        chat_template (`str`, *optional*): defaults to ChatML with MixingBuddy's system prompt.
        audio_token (`str`): the audio placeholder.
        clip_seconds (`float`): length every clip is cropped or padded to (`MixingBuddyConfig.clip_seconds`).
    """

    def __init__(
        self,
        feature_extractor,
        tokenizer,
        audio_tokens_per_clip: int,
        chat_template: str | None = None,
        audio_token: str = AUDIO_TOKEN,
        clip_seconds: float = 10.0,
    ):
        self.audio_token = audio_token
        self.audio_token_id = tokenizer.convert_tokens_to_ids(audio_token)
        self.audio_tokens_per_clip = audio_tokens_per_clip
        self.clip_seconds = clip_seconds
        super().__init__(feature_extractor, tokenizer, chat_template=chat_template or CHAT_TEMPLATE)

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @property
    def clip_samples(self) -> int:
        return round(self.sampling_rate * self.clip_seconds)

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        kwargs.setdefault("audio_token", self.audio_token)
        return super().apply_chat_template(conversation, chat_template, **kwargs)

    def build_conversation(self, anchor: str, stems=STEMS, template: int = 0, response: str | None = None) -> list:
        """A conversation with one audio item and an instruction naming `stems` and `anchor` (plus the answer)."""
        return make_conversation(format_instruction(anchor, stems, template), response)

    def prepare_audio(self, audio, sampling_rate: int) -> np.ndarray:
        """One clip -> float32 mono [clip_samples] at the model's rate. Raises ValueError on unusable audio."""
        array = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float64)
        if array.ndim > 2:
            raise ValueError(f"Audio must be 1-D (samples) or 2-D (channels × samples); got shape {array.shape}.")
        if array.size == 0:
            raise ValueError("Audio is empty (0 samples).")
        if not np.isfinite(array).all():
            raise ValueError("Audio contains NaN or infinite samples.")
        if array.ndim == 2:  # the shorter axis holds the channels
            array = array.mean(axis=0 if array.shape[0] <= array.shape[1] else 1)
        if array.shape[0] < sampling_rate:
            raise ValueError(
                f"Audio is too short: {array.shape[0] / sampling_rate:.2f} s at {sampling_rate} Hz; at least 1 s is needed."
            )
        if sampling_rate != self.sampling_rate:
            array = soxr.resample(array, sampling_rate, self.sampling_rate, quality="HQ")
        clip = np.zeros(self.clip_samples, dtype=np.float32)
        n = min(self.clip_samples, array.shape[0])
        clip[:n] = array[:n]
        return clip

    def expand_audio_tokens(self, text: str, n_clips: int) -> str:
        """Replace each audio placeholder by `audio_tokens_per_clip` copies; the count must equal the clips given."""
        n_placeholders = text.count(self.audio_token)
        if n_placeholders != n_clips:
            raise ValueError(f"The text has {n_placeholders} audio placeholders but {n_clips} audio clip(s) were given.")
        return text.replace(self.audio_token, self.audio_token * self.audio_tokens_per_clip)

    def __call__(
        self,
        text=None,
        audio=None,
        sampling_rate: int | None = None,
        responses=None,
        return_tensors: str = "pt",
        **kwargs,
    ) -> BatchFeature:
        """Tokenize prompts (from `apply_chat_template`) with their audio; with `responses`, add them and `labels`.

        Returns `input_ids`, `attention_mask` (left-padded), `input_values` [batch, clip_samples] and, when responses
        are given, `labels` that are -100 everywhere except on the response tokens and the closing `<|im_end|>`.
        """
        if text is None:
            raise ValueError("`text` is required: build it with `processor.apply_chat_template(conversation, ...)`.")
        texts = [text] if isinstance(text, str) else list(text)
        clips = [] if audio is None else [audio] if _is_single_clip(audio) else list(audio)
        if clips and len(clips) != len(texts):
            raise ValueError(f"Got {len(texts)} prompts but {len(clips)} audio clips; give one clip per prompt.")
        if clips and sampling_rate is None:
            raise ValueError("`sampling_rate` is required with `audio` (the rate of the audio you pass, in Hz).")

        prompt_ids = [
            self.tokenizer(self.expand_audio_tokens(t, int(bool(clips))), add_special_tokens=False)["input_ids"]
            for t in texts
        ]
        label_ids = [[-100] * len(ids) for ids in prompt_ids]
        if responses is not None:
            responses = [responses] if isinstance(responses, str) else list(responses)
            if len(responses) != len(texts):
                raise ValueError(f"Got {len(texts)} prompts but {len(responses)} responses.")
            for ids, labels, response in zip(prompt_ids, label_ids, responses):
                answer = self.tokenizer(response + END_OF_TURN, add_special_tokens=False)["input_ids"]
                ids.extend(answer)
                labels.extend(answer)

        data = self._pad_left(prompt_ids, label_ids if responses is not None else None)
        if clips:
            values = np.stack([self.prepare_audio(clip, sampling_rate) for clip in clips])
            features = self.feature_extractor(list(values), sampling_rate=self.sampling_rate, return_tensors="np")
            data["input_values"] = features["input_values"].astype(np.float32)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _pad_left(self, input_ids: list[list[int]], labels: list[list[int]] | None) -> dict:
        """Left-pad the token ids with the tokenizer (and `labels` with -100) to the longest sequence."""
        data = dict(self.tokenizer.pad({"input_ids": input_ids}, padding=True, padding_side="left", return_tensors="np"))
        if labels is not None:
            length = data["input_ids"].shape[1]
            data["labels"] = np.array([[-100] * (length - len(row)) + row for row in labels], dtype=np.int64)
        return data

    def post_process_advice(self, texts) -> list[Advice]:
        """Generated texts -> their `parse_advice` readings."""
        return [parse_advice(t) for t in ([texts] if isinstance(texts, str) else texts)]


def _is_single_clip(audio) -> bool:
    """A bare array/tensor is one clip; a list or tuple holds one clip per prompt."""
    return not isinstance(audio, (list, tuple))


MixingBuddyProcessor.register_for_auto_class()

# parse_advice, advice_validity, format_instruction and format_response live in vocabulary_mixingbuddy; they are
# re-exported here, where they used to be defined.
__all__ = [
    "CHAT_TEMPLATE",
    "MixingBuddyProcessor",
    "advice_validity",
    "format_instruction",
    "format_response",
    "make_conversation",
    "parse_advice",
]
