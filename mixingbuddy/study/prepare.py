"""`mixingbuddy study prepare`: a study folder of N test rows, each the flawed mix the model heard and its advice.

The rows are a seeded draw balanced over the error categories. Each row's mix is rendered exactly as evaluation
renders it (`FlawedMixCollator.render`, no augmentation) and answered through evaluation's own path
(`generate_advice`), then graded by the parser (`prediction_record`), so that the ratings can be set beside the
parser's correctness of the very same answers.
"""

from __future__ import annotations

import gc
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf
from datasets import load_dataset
from tqdm.auto import tqdm

from dataset_builder.provenance import check_audio
from dataset_builder.rows import as_row

from ..evaluation.generation import check_evaluation_arguments, generate_advice
from ..evaluation.scoring import prediction_record
from ..files import atomic_folder, check_location, check_output_folder, write_file_atomic
from ..models.checkpoints import load_model, resolve_model
from ..training.collator import FlawedMixCollator
from . import CONSENT_FILE, CONSENT_TEMPLATE, STUDY_FILE, STUDY_FORMAT
from .database import DATABASE_FILE, StudyDatabase


def draw_rows(categories: list[str], n: int, seed: int) -> list[int]:
    """`n` row indices drawn with `seed`, as balanced over the categories as the split allows: the categories take
    turns (in a seeded order), each giving its next row in a seeded shuffle, until `n` are drawn. Sorted."""
    if not 1 <= n <= len(categories):
        raise ValueError(f"--items must be between 1 and the split's {len(categories)} rows, got {n}.")
    rng = np.random.default_rng(seed)
    names = sorted(set(categories))
    pools = [list(rng.permutation([i for i, c in enumerate(categories) if c == name])) for name in names]
    pools = [pools[i] for i in rng.permutation(len(pools))]
    chosen = []
    while len(chosen) < n:
        for pool in pools:
            if pool and len(chosen) < n:
                chosen.append(int(pool.pop()))
    return sorted(chosen)


def answer_texts(model: str, rows: list[dict], stems, cache_dir, batch_size: int, decoding: str, audio: bool = False):
    """A model's answers to `rows` through evaluation's `generate_advice`, and with `audio` also the flawed mixes it
    heard, float32 [samples] each, and their sampling rate. The model is released before returning."""
    model_object, processor = load_model(model)
    collator = FlawedMixCollator(processor, stems, cache_dir=cache_dir)
    texts = []
    for start in tqdm(range(0, len(rows), batch_size), desc=f"study ({model})", unit="batch"):
        texts += generate_advice(model_object, collator, rows[start : start + batch_size], decoding=decoding)
    clips = [collator.render(row) for row in rows] if audio else []
    del model_object
    gc.collect()
    return texts, clips, processor.sampling_rate


def write_wav(path: Path, clip: np.ndarray, rate: int) -> None:
    """`clip` as 16-bit PCM; scaled down as a whole when a boosted stem would clip, which keeps the balance heard."""
    peak = float(np.max(np.abs(clip))) if clip.size else 0.0
    sf.write(path, clip / peak if peak > 1.0 else clip, rate, subtype="PCM_16")


def study_item(number: int, row: dict, answers: list[dict]) -> dict:
    keys = ("track", "start_sec", "anchor_stem", "target_stem", "error_category", "gain_db", "instruction")
    return {"item_id": f"item-{number:03d}", "audio": f"audio/item-{number:03d}.wav", **{k: row[k] for k in keys},
            "stems_present": list(row["stems_present"]), "answers": answers}


def check_existing_ratings(out: Path) -> None:
    """Refuse to replace a study that participants have answered: its ratings would lose their items."""
    database = out / DATABASE_FILE
    if database.is_file():
        answered = len(StudyDatabase(database).responses())
        if answered:
            raise FileExistsError(f"{database} holds {answered} answers; export them and move the study away before "
                                  "preparing another in its place.")


def prepare_study(
    model: str,
    dataset: str,
    split: str,
    items: int,
    out: str | Path,
    seed: int = 0,
    second_model: str | None = None,
    reference: bool = False,
    stems: str | Path | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 8,
    decoding: str = "ranked",
    overwrite: bool = False,
) -> Path:
    """Write a study folder (see `mixingbuddy.study`) of `items` rows of `split` of `dataset`, drawn with `seed`.

    Each item holds the model's answer and, for an A/B comparison, `second_model`'s or (with `reference`) the data
    set's response; both at once would make three answers, which the study does not show. `out` must be new, empty or
    hold only the author's `consent.md`; `overwrite` replaces a study folder MixingBuddy wrote, never one with
    ratings. An existing `consent.md` is kept, otherwise a template is written. Returns the folder.
    """
    if second_model is not None and reference:
        raise ValueError("Choose one of --second-model and --reference: an item compares at most two answers.")
    check_evaluation_arguments((decoding,), batch_size, None)
    model, stems = resolve_model(model), check_audio(dataset, stems)
    protected = {"stems folder": stems, "data set": dataset, "model": model}
    if second_model is not None:
        second_model = protected["second model"] = resolve_model(second_model)
    out = Path(out).expanduser()
    # a folder holding only the author's consent text, written first, is a new study folder
    consent_only = out.is_dir() and {p.name for p in out.iterdir()} == {CONSENT_FILE}
    if consent_only:
        out = check_location(out, protected)
    else:
        out = check_output_folder(out, overwrite, kind="study", protected=protected)
    check_existing_ratings(out)
    split_rows = load_dataset(str(dataset), split=split)
    indices = draw_rows(split_rows["error_category"], items, seed)
    rows = [as_row(split_rows[i]) for i in indices]

    texts, clips, rate = answer_texts(model, rows, stems, cache_dir, batch_size, decoding, audio=True)
    answers = [[_answer("model", prediction_record(row, text))] for row, text in zip(rows, texts)]
    if second_model is not None:
        second, _, _ = answer_texts(second_model, rows, stems, cache_dir, batch_size, decoding)
        for row, text, item in zip(rows, second, answers):
            item.append(_answer("second", prediction_record(row, text)))
    if reference:
        for row, item in zip(rows, answers):
            item.append(_answer("reference", prediction_record(row, row["response"])))

    consent = out / CONSENT_FILE
    kept_consent = consent.read_text() if consent.is_file() else CONSENT_TEMPLATE
    study = {"format": STUDY_FORMAT, "seed": seed, "model": str(model), "dataset": str(dataset), "split": split,
             "second_model": None if second_model is None else str(second_model), "reference": reference,
             "decoding": decoding, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
             "items": [study_item(number, row, given) for number, (row, given) in enumerate(zip(rows, answers))]}
    # merging into a consent-only folder replaces nothing of it (its consent.md is written back unchanged)
    replace = overwrite or consent_only
    with atomic_folder(out, replace, merge=consent_only, kind="study", protected=protected) as staging:
        (staging / "audio").mkdir()
        for item, clip in zip(study["items"], clips):
            write_wav(staging / item["audio"], clip, rate)
        (staging / CONSENT_FILE).write_text(kept_consent)
        write_file_atomic(staging / STUDY_FILE, json.dumps(study, indent=2))
    return out


def _answer(system: str, record: dict) -> dict:
    """An answer of an item from its `prediction_record`: the text and the parser's joint correctness."""
    return {"system": system, "text": record["generated"].strip(), "correct": bool(record["correct"]["joint"])}
