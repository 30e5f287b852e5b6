"""Processor for MixingBuddy: audio preparation and chat prompts whose audio placeholder is expanded to the audio
embeddings the model makes."""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import soxr
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin

try:  # the package mixingbuddy.hub, or transformers_modules.<folder> for a saved folder
    from .vocabulary_mixingbuddy import (
        ANCHOR_CLIP,
        AUDIO_INPUTS,
        AUDIO_TOKEN,
        END_OF_TURN,
        MIX_CLIP,
        START_OF_TURN,
        STEMS,
        SYSTEM_PROMPT,
        Advice,
        advice_validity,
        audio_clips,
        clip_label,
        format_instruction,
        format_response,
        parse_advice,
        read_clip_label,
    )
except ImportError:  # a top-level module, from a folder on sys.path: `from processing_mixingbuddy import parse_advice`
    if __package__:
        raise
    from vocabulary_mixingbuddy import (
        ANCHOR_CLIP,
        AUDIO_INPUTS,
        AUDIO_TOKEN,
        END_OF_TURN,
        MIX_CLIP,
        START_OF_TURN,
        STEMS,
        SYSTEM_PROMPT,
        Advice,
        advice_validity,
        audio_clips,
        clip_label,
        format_instruction,
        format_response,
        parse_advice,
        read_clip_label,
    )


def downmix(audio: np.ndarray, channel_axis: int) -> np.ndarray:
    """The mean of `audio`'s channels along `channel_axis`: the one place where stereo becomes the mono the model hears
    (MERT's input is mono) — for the processor, the stem cache and the synthetic corpus's mono form alike."""
    return audio.mean(axis=channel_axis)


def make_conversation(instruction: str, response: str | None = None, clip_labels=None) -> list[dict]:
    """A user turn holding the audio and `instruction`, followed by the assistant's `response` when given. The audio is
    one unlabelled item, or with `clip_labels` one labelled item per clip ("Mix", "Reference (vocals)", ...)."""
    audio = [{"type": "audio"}] if clip_labels is None else [{"type": "audio", "label": x} for x in clip_labels]
    conversation = [{"role": "user", "content": [*audio, {"type": "text", "text": instruction}]}]
    if response is not None:
        conversation.append({"role": "assistant", "content": response})
    return conversation


# ChatML, with the system prompt filled in when the conversation has none and one audio placeholder per audio item,
# after the item's label when it has one ("Reference (vocals): <|AUDIO|>"), as Qwen2-Audio numbers several audios.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}" + START_OF_TURN + "system\n" + SYSTEM_PROMPT + END_OF_TURN + "\n"
    "{% endif %}" + START_OF_TURN + "{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' %}"
    "{% if content['label'] %}{{ content['label'] }}: {% endif %}{{ audio_token }}\n"
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

    A prompt carries the clips `audio_inputs` names (`vocabulary_mixingbuddy.audio_clips`): the mix alone, unlabelled
    (the paper), or several clips, each placeholder after a label ("Mix: ", "Reference (vocals): ", "Bass: "). The
    clips of one prompt are normalised together (the feature extractor's zero-mean, unit-variance normalisation over
    their concatenation), so that each keeps its level relative to the others; alone, a clip is normalised as before.
    A silent clip is accepted: a stem that is absent or pauses in the excerpt is silence, and stays silent (a constant,
    the prompt's shared offset).

    Args:
        feature_extractor ([`Wav2Vec2FeatureExtractor`]): MERT's feature extractor (24 kHz).
        tokenizer ([`PreTrainedTokenizerBase`]): the Qwen2 tokenizer, with the audio token added.
        audio_tokens_per_clip (`int`): embeddings the model makes for one clip (`MixingBuddyConfig.audio_tokens_per_clip`).
        chat_template (`str`, *optional*): defaults to ChatML with MixingBuddy's system prompt.
        audio_token (`str`): the audio placeholder.
        clip_seconds (`float`): length every clip is cropped or padded to (`MixingBuddyConfig.clip_seconds`).
        audio_inputs (`str`): the clips of a prompt: `"mix"`, `"mix+anchor"` or `"stems"` (the config's field).
    """

    def __init__(
        self,
        feature_extractor,
        tokenizer,
        audio_tokens_per_clip: int,
        chat_template: str | None = None,
        audio_token: str = AUDIO_TOKEN,
        clip_seconds: float = 10.0,
        audio_inputs: str = "mix",
    ):
        if audio_inputs not in AUDIO_INPUTS:
            raise ValueError(f"audio_inputs must be one of {AUDIO_INPUTS}, got {audio_inputs!r}.")
        self.audio_token = audio_token
        self.audio_token_id = tokenizer.convert_tokens_to_ids(audio_token)
        self.audio_tokens_per_clip = audio_tokens_per_clip
        self.clip_seconds = clip_seconds
        self.audio_inputs = audio_inputs
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

    def clip_labels(self, anchor: str) -> list[str] | None:
        """The labels of a prompt's clips under `audio_inputs` (None for the mix alone, which has none)."""
        clips = audio_clips(self.audio_inputs, anchor)
        return None if clips == [MIX_CLIP] else [clip_label(clip, anchor) for clip in clips]

    def build_conversation(self, anchor: str, stems=STEMS, template: int = 0, response: str | None = None) -> list:
        """A conversation with the clips of `audio_inputs` and an instruction naming `stems` and `anchor` (plus the
        answer)."""
        return make_conversation(format_instruction(anchor, stems, template), response, self.clip_labels(anchor))

    def placeholder_labels(self, text: str) -> list[str]:
        """The label in front of each audio placeholder of a prompt ("" where it has none)."""
        return re.findall(rf"(?:([^\n:]+): )?{re.escape(self.audio_token)}", text)

    def clip_names(self, text: str) -> list[str]:
        """The clip each audio placeholder of a prompt announces by its label: "mix" (or no label), or a stem name."""
        return [read_clip_label(label)[0] for label in self.placeholder_labels(text)]

    def prepare_audio(self, audio, sampling_rate: int, subject: str = "Audio") -> np.ndarray:
        """One clip -> float32 mono [clip_samples] at the model's rate. Raises ValueError on unusable audio, naming it
        `subject` ("Audio", or which clip of which prompt)."""
        array = np.asarray(audio.detach().cpu() if hasattr(audio, "detach") else audio, dtype=np.float64)
        if array.ndim > 2:
            raise ValueError(f"{subject} must be 1-D (samples) or 2-D (channels × samples); got shape {array.shape}.")
        if array.size == 0:
            raise ValueError(f"{subject} is empty (0 samples).")
        if not np.isfinite(array).all():
            raise ValueError(f"{subject} contains NaN or infinite samples.")
        if array.ndim == 2:  # the shorter axis holds the channels
            array = downmix(array, 0 if array.shape[0] <= array.shape[1] else 1)
        if array.shape[0] < sampling_rate:
            raise ValueError(
                f"{subject} is too short: {array.shape[0] / sampling_rate:.2f} s at {sampling_rate} Hz; at least 1 s "
                "is needed."
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

        `audio` holds what each prompt of `text` hears, in one of three forms per prompt: a clip; a list of clips, in
        the order of the prompt's placeholders (`[[mix, anchor], ...]`); or a dict of clips by name, ordered by the
        labels of the placeholders (`{"mix": ..., "anchor": ...}`, or `{"vocals": ..., "bass": ..., "mix": ...}`; the
        reference stem may be called "anchor"). Every prompt of a call has the same number of clips.

        Returns `input_ids`, `attention_mask` (left-padded), `input_values` [batch, clip_samples] for one clip per
        prompt or [batch, clips, clip_samples] for several and, when responses are given, `labels` that are -100
        everywhere except on the response tokens and the closing `<|im_end|>`.
        """
        if text is None:
            raise ValueError("`text` is required: build it with `processor.apply_chat_template(conversation, ...)`.")
        texts = [text] if isinstance(text, str) else list(text)
        clips = [] if audio is None else self._clips_per_prompt(texts, audio)
        if clips and sampling_rate is None:
            raise ValueError("`sampling_rate` is required with `audio` (the rate of the audio you pass, in Hz).")
        if clips and not sampling_rate > 0:
            raise ValueError(f"`sampling_rate` must be a positive number of Hz, got {sampling_rate!r}.")

        n_clips = len(clips[0]) if clips else 0
        prompt_ids = [
            self.tokenizer(self.expand_audio_tokens(t, n_clips), add_special_tokens=False)["input_ids"] for t in texts
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
            data["input_values"] = self.audio_values(texts, clips, sampling_rate)
        return BatchFeature(data=data, tensor_type=return_tensors)

    def audio_values(self, texts: list[str], clips: list[list], sampling_rate: int) -> np.ndarray:
        """The clips of each prompt, prepared and normalised together: float32 [batch, clip_samples] for one clip per
        prompt, [batch, clips, clip_samples] for several."""
        joined = [  # one [clips × clip_samples] array per prompt
            np.concatenate(self._prepare_prompt_clips(i, text, row, sampling_rate))
            for i, (text, row) in enumerate(zip(texts, clips))
        ]
        features = self.feature_extractor(joined, sampling_rate=self.sampling_rate, return_tensors="np")
        values = features["input_values"].astype(np.float32)  # [batch, clips × clip_samples]
        return values.reshape(len(clips), len(clips[0]), self.clip_samples) if len(clips[0]) > 1 else values

    def _prepare_prompt_clips(self, index: int, text: str, clips: list, sampling_rate: int) -> list[np.ndarray]:
        """`prepare_audio` of each clip of prompt `index`; with several clips an error names the clip."""
        if len(clips) == 1:
            return [self.prepare_audio(clips[0], sampling_rate)]
        return [
            self.prepare_audio(clip, sampling_rate, f"Clip {k + 1} ({name}) of prompt {index + 1}")
            for k, (clip, name) in enumerate(zip(clips, self.clip_names(text)))
        ]

    def _clips_per_prompt(self, texts: list[str], audio) -> list[list]:
        """`audio` as one list of clips per prompt, in the order of the prompt's placeholders."""
        items = [audio] if _is_one_prompt(audio) else list(audio)
        if len(items) != len(texts):
            raise ValueError(
                f"Got {len(texts)} prompts but {len(items)} audio clips; give one clip per prompt, or for prompts with "
                "several clips one list or dict of clips per prompt (audio=[[mix, anchor], ...])."
            )
        clips = [
            self._named_clips(text, item) if isinstance(item, Mapping)
            else list(item) if isinstance(item, (list, tuple)) else [item]
            for text, item in zip(texts, items)
        ]
        counts = sorted({len(row) for row in clips})
        if len(counts) > 1:
            raise ValueError(f"Every prompt of a call needs the same number of clips; got {counts} clips per prompt.")
        return clips

    def _named_clips(self, text: str, clips: Mapping) -> list:
        """Clips given by name, in the order of the prompt's placeholders (the reference may be called "anchor")."""
        labels = self.placeholder_labels(text)
        anchor = next((clip for clip, reference in map(read_clip_label, labels) if reference), None)
        names = [anchor if name == ANCHOR_CLIP and anchor else name for name in clips]
        expected = self.clip_names(text)
        if sorted(names) != sorted(expected):
            raise ValueError(
                f"The clips given, {sorted(clips)}, are not the clips the prompt announces, {expected} (named by the "
                f"labels of its placeholders{'; the reference may be called ' + repr(ANCHOR_CLIP) if anchor else ''})."
            )
        by_name = dict(zip(names, clips.values()))
        return [by_name[name] for name in expected]

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


def _is_one_prompt(audio) -> bool:
    """A bare array/tensor (one clip) or a dict (named clips) is one prompt's audio; a list or tuple holds one entry
    per prompt."""
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
