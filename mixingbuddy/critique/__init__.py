"""Critique a whole song: advice for each window of the model's clip length, windows too quiet to judge set aside,
and a verdict for the song.

The report (`critique_file`, and `mixingbuddy critique --json`) is a [`CritiqueReport`] (`critique/report.py`):

- `file`, `anchor`, `stems` (present in the mix), `model`, `decoding`, `hop_seconds`, `duration_seconds`;
- `audio_inputs`, what the model hears (`mix`, `mix+anchor` or `stems`), and `stem_files`, the stem files it heard
  beside the mix (by stem; none for `mix`): see `critique/inputs.py`;
- `windows`: one per judged window, in time order: `start`, `end` (seconds), `advice` (the text), and its reading
  `stem`, `direction` ("increase", "decrease", "none"), `min_db`, `max_db` (as `parse_advice` gives them);
- `skipped`: `start`, `end` and `reason` of each window too quiet to judge;
- `summary`: `verdict` (one line), `conclusive` (whether one advice comes from at least half the judged windows),
  `lines` (one per advice, most frequent first) and `segments` (runs of consecutive windows with the same advice:
  `start`, `end`, `stem`, `direction`, `windows`).
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm.auto import tqdm

from ..evaluation.decoding import decode_advice
from ..files import check_output_file
from ..hub.processing_mixingbuddy import downmix
from ..hub.vocabulary_mixingbuddy import audio_clips, parse_advice, reference_sentence
from ..models.checkpoints import load_model
from .audio import AudioFile, format_time, open_audio
from .inputs import StemFiles, check_stems, given_stem_files, prepare_inputs, window_clips
from .plot import PNG, timeline_figure, write_timeline
from .report import CritiqueReport, JudgedWindow
from .summary import other_lines, summarize
from .windows import check_hop, too_quiet, window_spans


def critique_audio(
    audio: AudioFile,
    anchor: str,
    model,
    processor,
    stems=None,
    hop_seconds: float | None = None,
    decoding: str = "ranked",
    batch_size: int = 8,
    model_name: str | None = None,
    stem_files: StemFiles | None = None,
) -> CritiqueReport:
    """The report (see the module's docstring) for an opened audio file, with a loaded model and processor.

    Windows are read one at a time and judged `batch_size` at a time on the model's device, so memory does not grow
    with the song. The default decoding, ranked, only ever gives valid advice for the stems present and the anchor.
    A model that hears more than the mix (`processor.audio_inputs`) hears the same frames of the `stem_files` (see
    `given_stem_files`) with each window of the mix; for one that hears every stem, they say which stems are present.
    """
    stems, stem_audio = prepare_inputs(audio, anchor, stems, stem_files, processor.audio_inputs)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}.")
    prompt = processor.apply_chat_template(processor.build_conversation(anchor, stems), add_generation_prompt=True)
    clip_names = audio_clips(processor.audio_inputs, anchor)
    spans = window_spans(audio.frames, audio.rate, processor.clip_seconds, hop_seconds)
    windows, skipped, pending = [], [], []

    def judge():
        clips = [window for _, window in pending]  # each window's clips by name
        inputs = processor(text=[prompt] * len(pending), audio=clips, sampling_rate=audio.rate)
        texts = decode_advice(model, processor, inputs.to(model.device), [(stems, anchor)] * len(pending), decoding)
        windows.extend(JudgedWindow(**span, advice=text.strip(), **parse_advice(text))
                       for (span, _), text in zip(pending, texts))
        pending.clear()

    for start, stop in tqdm(spans, desc="critique", unit="window"):
        clip = audio.read(start, stop)  # [frames, channels]
        span = {"start": round(start / audio.rate, 2), "end": round(stop / audio.rate, 2)}
        if reason := too_quiet(downmix(clip, channel_axis=1), audio.rate):
            skipped.append({**span, "reason": reason})
            continue
        pending.append((span, window_clips(clip_names, clip, stem_audio, start, stop)))  # gated on the mix alone
        if len(pending) == batch_size:
            judge()
    if pending:
        judge()
    return CritiqueReport(
        file=str(audio.path), anchor=anchor, stems=stems, model=model_name, decoding=decoding,
        hop_seconds=hop_seconds or processor.clip_seconds, duration_seconds=round(audio.seconds, 2),
        audio_inputs=processor.audio_inputs, stem_files={stem: str(file.path) for stem, file in stem_audio.items()},
        windows=windows, skipped=skipped, summary=summarize(windows),
    )


def critique_file(
    audio_path,
    anchor: str,
    model: str,
    stems=None,
    hop_seconds: float | None = None,
    decoding: str = "ranked",
    batch_size: int = 8,
    model_is_default: bool = False,
    device=None,
    dtype=None,
    load_in_4bit: bool = False,
    plot=None,
    overwrite: bool = False,
    anchor_audio=None,
    stems_dir=None,
) -> CritiqueReport:
    """`critique_audio` of a file, with the model loaded by `load_model` on `device` in `dtype` (NF4 with
    `load_in_4bit`); with `plot`, the timeline PNG is written there (an existing PNG only with `overwrite`).
    `anchor_audio` (the anchor stem's file) or `stems_dir` (a folder of stem files) is what a model that hears more
    than the mix hears beside it. The files, the stems, the anchor, the hop and the plot's path are checked before the
    model loads (the stem files against the model too, for a local model folder)."""
    audio = open_audio(audio_path)
    check_stems(stems, anchor)
    stem_files = given_stem_files(anchor, anchor_audio, stems_dir)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}.")
    saved = saved_processor_config(model)
    check_hop(hop_seconds, saved_clip_seconds(saved))
    if saved:  # a folder saved before audio_inputs existed hears the mix alone
        prepare_inputs(audio, anchor, stems, stem_files, saved.get("audio_inputs", "mix"))
    if plot is not None:
        protected = {"audio file": audio.path, "model": model, **(stem_files.protected() if stem_files else {})}
        plot = check_output_file(plot, overwrite, ".png", PNG, protected=protected)
    mb_model, processor = load_model(
        model, is_default=model_is_default, device=device, dtype=dtype, load_in_4bit=load_in_4bit
    )
    report = critique_audio(audio, anchor, mb_model, processor, stems, hop_seconds, decoding, batch_size, model,
                            stem_files=stem_files)
    if plot is not None:
        write_timeline(report, plot)
    return report


def saved_processor_config(model: str) -> dict:
    """A local model folder's processor_config.json, read before loading ({} for a Hub id, say)."""
    try:
        config = json.loads((Path(model).expanduser() / "processor_config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def saved_clip_seconds(saved: dict) -> float | None:
    """The clip length in a saved processor config (None when it has none)."""
    try:
        return float(saved["clip_seconds"])
    except (KeyError, TypeError, ValueError):
        return None


def window_advice(report: CritiqueReport, window: JudgedWindow) -> str:
    """A window's advice to show: its text without the opening sentence that every window shares ("With the vocals as
    the reference, I compared the bass and the drums."); the report's header names the anchor and the stems once."""
    return window["advice"].removeprefix(reference_sentence(report["anchor"], report["stems"])).strip()


def format_critique(report: CritiqueReport) -> str:
    """The report as text: a line per window, then the verdict and the line of each advice."""
    lines = [f"{report['file']} ({format_time(report['duration_seconds'])}, anchor: {report['anchor']}, "
             f"stems: {', '.join(report['stems'])})"]
    if report["stem_files"]:
        lines.append(f"Heard beside the mix ({report['audio_inputs']}): {', '.join(report['stem_files'].values())}")
    rows = [(w["start"], w["end"], window_advice(report, w)) for w in report["windows"]]
    rows += [(w["start"], w["end"], f"({w['reason']})") for w in report["skipped"]]
    lines += [f"  {format_time(start):>6}–{format_time(end):<6} {text}" for start, end, text in sorted(rows)]
    summary = report["summary"]
    lines.append(f"Verdict: {summary['verdict']}")
    lines += [f"  - {line}" for line in other_lines(summary)]
    return "\n".join(lines)


__all__ = [
    "CritiqueReport", "StemFiles", "critique_audio", "critique_file", "format_critique", "format_time",
    "given_stem_files", "open_audio", "other_lines", "timeline_figure", "window_advice",
]
