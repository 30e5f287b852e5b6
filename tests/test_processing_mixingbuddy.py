"""Processor: audio preparation, the Qwen2-Audio calling convention, labels, and clear errors on bad input."""

import numpy as np
import pytest
import torch
from helpers import make_clips

from mixingbuddy.hub.processing_mixingbuddy import MixingBuddyProcessor, format_instruction


def tone(freq: float, seconds: float, rate: int, channels: int | None = None) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels is None else np.stack([mono] * channels)


def dominant_frequency(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()]


@pytest.mark.parametrize(
    "audio",
    [tone(440, 12, 44100), tone(440, 12, 44100, channels=2), tone(440, 12, 44100, channels=2).T,
     torch.from_numpy(tone(440, 12, 44100, channels=2))],
    ids=["mono", "channels-first", "channels-last", "torch"],
)
def test_audio_is_downmixed_resampled_and_cropped(tiny, audio):
    _, processor = tiny
    clip = processor.prepare_audio(audio, 44100)
    assert clip.shape == (240000,) and clip.dtype == np.float32
    assert dominant_frequency(clip, 24000) == pytest.approx(440, abs=0.2)
    np.testing.assert_allclose(np.abs(clip).max(), 0.5, atol=1e-3)


def test_short_audio_is_zero_padded_at_the_end(tiny):
    _, processor = tiny
    clip = processor.prepare_audio(tone(220, 2.5, 24000), 24000)
    assert clip.shape == (240000,)
    assert np.abs(clip[:60000]).max() > 0.4 and not clip[60000:].any()


def test_downmix_averages_channels(tiny):
    _, processor = tiny
    left, right = tone(300, 2, 24000), np.zeros(48000, dtype=np.float32)
    clip = processor.prepare_audio(np.stack([left, right]), 24000)
    np.testing.assert_allclose(clip[:48000], left / 2, atol=1e-6)


def test_qwen2_audio_calling_convention(tiny):
    model, processor = tiny
    audio = tone(440, 10, 48000, channels=2)
    conversation = [{"role": "user", "content": [{"type": "audio", "audio": audio},
                                                  {"type": "text", "text": format_instruction("vocals")}]}]
    text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are MixingBuddy")
    assert "<|AUDIO|>\nThis mix contains bass, drums, other and vocals. Keep the vocals" in text
    assert text.endswith("<|im_start|>assistant\n")
    inputs = processor(text=text, audio=audio, sampling_rate=48000, return_tensors="pt")
    assert set(inputs) == {"input_ids", "attention_mask", "input_values"}
    assert inputs["input_values"].shape == (1, 240000)
    assert int((inputs["input_ids"] == processor.audio_token_id).sum()) == processor.audio_tokens_per_clip == 30
    assert processor.audio_token_id == model.config.audio_token_id


def test_labels_cover_the_response_and_end_token_only(tiny):
    _, processor = tiny
    conversations = [processor.build_conversation("drums"), processor.build_conversation("bass", template=9)]
    prompts = [processor.apply_chat_template(c, add_generation_prompt=True) for c in conversations]
    responses = ["The vocals are far too loud. Reduce the vocals by 6 to 12 dB.", "The mix is well balanced."]
    inputs = processor(text=prompts, audio=make_clips(2), sampling_rate=24000, responses=responses)
    labels, mask = inputs["labels"], inputs["attention_mask"]
    assert (labels[mask == 0] == -100).all()
    assert (labels[inputs["input_ids"] == processor.audio_token_id] == -100).all()
    for row, response in zip(labels, responses):
        kept = row[row != -100]
        assert processor.tokenizer.decode(kept) == response + "<|im_end|>"
        n = len(kept)
        assert (row[-n:] != -100).all()  # the response ends the sequence
    # the prompt part of input_ids is exactly the tokenized prompt
    last = inputs["input_ids"][1][labels[1] == -100][mask[1][labels[1] == -100] == 1]
    assert processor.tokenizer.decode(last) == processor.expand_audio_tokens(prompts[1], 1)


def test_batch_decode_and_post_process_advice(tiny):
    _, processor = tiny
    ids = processor.tokenizer(["The drums are a little too loud. Reduce the drums by 3 to 6 dB.<|im_end|>"],
                              add_special_tokens=False)["input_ids"]
    texts = processor.batch_decode(ids, skip_special_tokens=True)
    assert texts == ["The drums are a little too loud. Reduce the drums by 3 to 6 dB."]
    assert processor.post_process_advice(texts) == [
        {"stem": "drums", "direction": "decrease", "min_db": 3.0, "max_db": 6.0}
    ]


def test_instruction_helper_names_stems_and_anchor(tiny):
    _, processor = tiny
    text = processor.build_conversation("bass", stems=["vocals", "bass", "drums"], template=1)[0]["content"][1]["text"]
    assert text == ("Listen to this mix of bass, drums and vocals. Taking the bass as correctly balanced, which stem "
                    "needs a gain change, and by how much?")


@pytest.mark.parametrize(
    "audio, rate, message",
    [
        (np.full(48000, np.nan, dtype=np.float32), 24000, "NaN or infinite"),
        (np.array([0.0, np.inf] * 24000), 24000, "NaN or infinite"),
        (np.zeros(0, dtype=np.float32), 24000, "empty"),
        (np.zeros(20000, dtype=np.float32), 24000, r"too short: 0.83 s"),
        (np.zeros((2, 2, 48000), dtype=np.float32), 24000, r"1-D .* or 2-D .* got shape \(2, 2, 48000\)"),
    ],
    ids=["nan", "inf", "empty", "short", "3d"],
)
def test_bad_audio_raises_a_clear_error(tiny, audio, rate, message):
    _, processor = tiny
    prompt = processor.apply_chat_template(processor.build_conversation("vocals"), add_generation_prompt=True)
    with pytest.raises(ValueError, match=message):
        processor(text=prompt, audio=audio, sampling_rate=rate)


@pytest.mark.parametrize(
    "anchor, stems, message",
    [
        ("vocals", ["vocals", "guitar"], r"Unknown stem name\(s\) \['guitar'\]"),
        ("piano", ["bass", "drums"], r"Unknown stem name\(s\) \['piano'\]|The anchor must be one of"),
        ("vocals", ["bass", "drums"], r"Anchor stem 'vocals' is not among the stems present \['bass', 'drums'\]"),
    ],
)
def test_bad_stems_raise_a_clear_error(tiny, anchor, stems, message):
    _, processor = tiny
    with pytest.raises(ValueError, match=message):
        processor.build_conversation(anchor, stems=stems)


def test_mismatched_prompts_and_clips(tiny):
    _, processor = tiny
    prompt = processor.apply_chat_template(processor.build_conversation("vocals"), add_generation_prompt=True)
    with pytest.raises(ValueError, match="2 prompts but 1 audio clips"):
        processor(text=[prompt, prompt], audio=make_clips(1), sampling_rate=24000)
    with pytest.raises(ValueError, match="`sampling_rate` is required"):
        processor(text=prompt, audio=make_clips(1)[0])
    with pytest.raises(ValueError, match="1 audio placeholders but 0 audio clip"):
        processor(text=prompt)


def test_processor_is_a_processor_mixin_with_saved_settings(tiny, tmp_path):
    _, processor = tiny
    processor.save_pretrained(tmp_path)
    again = MixingBuddyProcessor.from_pretrained(tmp_path)
    assert (again.clip_seconds, again.audio_tokens_per_clip, again.audio_token) == (10.0, 30, "<|AUDIO|>")
    assert again.sampling_rate == 24000 and again.audio_token_id == processor.audio_token_id
