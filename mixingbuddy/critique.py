"""Critique a whole audio file: advice for each 10 s window, from a saved MixingBuddy model."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from .hub.vocabulary_mixingbuddy import STEMS, validate_stems
from .models.checkpoints import load_model


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an audio file to float32 [samples, channels]; a clear error names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Audio file {path} does not exist.")
    try:
        audio, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as err:
        raise ValueError(f"Cannot read audio file {path}: {err}") from err
    if audio.shape[0] == 0:
        raise ValueError(f"Audio file {path} has no samples.")
    return audio, rate


def windows(audio: np.ndarray, rate: int, seconds: float) -> list[tuple[float, np.ndarray]]:
    """Non-overlapping windows of `seconds`; a last partial window is kept if it is at least 1 s long."""
    size = int(seconds * rate)
    starts = range(0, audio.shape[0], size)
    return [(s / rate, audio[s : s + size]) for s in starts if audio.shape[0] - s >= rate]


def critique_file(
    audio_path, anchor: str, model: str, stems=None, batch_size: int = 8, model_is_default: bool = False,
    device=None, dtype=None,
) -> dict:
    """Advice for each 10 s window of `audio_path`, plus the most frequent advice over the song (the model loaded by
    `load_model` on `device` in `dtype`)."""
    stems = validate_stems(stems or STEMS, anchor)
    audio, rate = read_audio(audio_path)
    mb_model, processor = load_model(model, is_default=model_is_default, device=device, dtype=dtype)
    prompt = processor.apply_chat_template(processor.build_conversation(anchor, stems), add_generation_prompt=True)
    clips = windows(audio, rate, processor.clip_seconds)
    if not clips:
        raise ValueError(f"Audio file {audio_path} is shorter than 1 s.")
    results = []
    for i in tqdm(range(0, len(clips), batch_size), desc="critique", unit="batch", leave=False):
        batch = clips[i : i + batch_size]
        inputs = processor(text=[prompt] * len(batch), audio=[c for _, c in batch], sampling_rate=rate).to(mb_model.device)
        with torch.no_grad():
            generated = mb_model.generate(**inputs)
        texts = processor.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        for (start, clip), text, advice in zip(batch, texts, processor.post_process_advice(texts)):
            end = start + clip.shape[0] / rate
            results.append({"start_sec": round(start, 2), "end_sec": round(end, 2), "advice": text.strip(), **advice})
    summary = Counter((r["stem"], r["direction"]) for r in results).most_common(1)[0][0]
    return {"file": str(audio_path), "anchor": anchor, "stems": stems, "windows": results,
            "summary": {"stem": summary[0], "direction": summary[1]}}


def format_critique(report: dict) -> str:
    lines = [f"{report['file']} (anchor: {report['anchor']})"]
    for w in report["windows"]:
        lines.append(f"  {w['start_sec']:7.1f}–{w['end_sec']:<7.1f}s  {w['advice']}")
    s = report["summary"]
    verdict = "balanced" if s["direction"] == "none" else f"{s['direction']} the {s['stem']}" if s["stem"] else "unclear"
    lines.append(f"Most frequent advice: {verdict}")
    return "\n".join(lines)
