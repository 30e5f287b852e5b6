"""`mixingbuddy evaluate`: batched generation (greedy, constrained or ranked) over a data-set split, then the report."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

from datasets import load_dataset
from tqdm.auto import tqdm

from .. import __version__
from ..files import check_location, check_output_folder, read_marker, write_marker
from ..models.checkpoints import load_model
from ..training.collator import FlawedMixCollator
from . import DECODINGS
from .decoding import decode_advice
from .report import prediction_line, write_report
from .scoring import example_uid, prediction_record


def generate_advice(
    model, collator: FlawedMixCollator, rows: list[dict], decoding: str = "greedy", ranked_chunk_size: int | None = None
) -> list[str]:
    """Answers for a batch of data-set rows (left padding, KV cache) with one of the three decodings (`decode_advice`)."""
    inputs = collator(rows, labels=False).to(model.device)
    prompts = [(r["stems_present"], r["anchor_stem"]) for r in rows]
    return decode_advice(model, collator.processor, inputs, prompts, decoding, ranked_chunk_size)


def check_evaluation_arguments(decodings, batch_size: int, limit: int | None) -> None:
    """Raise `ValueError` for an unknown decoding or a batch size or row limit below 1."""
    unknown = [d for d in decodings if d not in DECODINGS]
    if unknown:
        raise ValueError(f"Unknown decoding(s) {unknown}; choose from {list(DECODINGS)}.")
    if batch_size < 1 or (limit is not None and limit < 1):
        raise ValueError(f"--batch-size and --limit must be at least 1, got {batch_size} and {limit}.")


def prepare_output(out_dir: str | Path, run: dict, overwrite: bool = False, resume: bool = False, protected=()) -> Path:
    """The evaluation folder, ready before any model loads: new, or emptied with `overwrite` when it is an earlier
    evaluation, or kept with `resume` when it holds an evaluation of the same `run` (model, data set, split, ...)."""
    if resume:
        path = check_location(out_dir, protected)
        if (read_marker(path) or {}).get("run") != run:
            raise ValueError(f"{path} holds no evaluation with these arguments to resume; start one without --resume.")
        return path
    path = check_output_folder(out_dir, overwrite, kind="evaluation", protected=protected)
    if path.exists():
        shutil.rmtree(path)  # no stale sub-folder of an earlier run survives
    write_marker(path, "evaluation", run=run)
    return path


def evaluate_split(
    model_path: str,
    dataset: str,
    out_dir: str | Path,
    stems_dir: str | Path,
    split: str = "test",
    batch_size: int = 16,
    limit: int | None = None,
    decodings=("greedy",),
    limits: dict[str, int] | None = None,
    cache_dir=None,
    resume: bool = False,
    device=None,
    dtype=None,
    ranked_chunk_size: int | None = None,
) -> dict[str, dict]:
    """Generate advice for `split` of `dataset` (a folder or Hub id) and write, per decoding, `predictions.jsonl`,
    `metrics.json`, `metrics.md` and confusion plots: the first decoding in `out_dir`, the others in
    `out_dir/<decoding>`. Returns the metrics per decoding.

    `stems_dir` is the folder the rows are rendered from (check it against the data set with
    `dataset_builder.provenance.check_audio` first). `limits` caps the rows of some decodings (e.g. {"constrained":
    600}). Predictions are appended to `predictions.jsonl` batch by batch; with `resume`, the whole batches already
    there are kept and the run goes on from there, to the same files an uninterrupted run writes. The model loads on
    `device` in `dtype` (`load_model`); ranked decoding scores `ranked_chunk_size` candidates at a time.
    """
    check_evaluation_arguments(decodings, batch_size, limit)
    rows = load_dataset(str(dataset), split=split)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    model, processor = load_model(model_path, device=device, dtype=dtype)
    collator = FlawedMixCollator(processor, stems_dir, cache_dir=cache_dir)
    results = {}
    for decoding in decodings:
        n = min(len(rows), (limits or {}).get(decoding, len(rows)))
        target = Path(out_dir) if decoding == decodings[0] else Path(out_dir) / decoding
        advise = functools.partial(
            generate_advice, model, collator, decoding=decoding, ranked_chunk_size=ranked_chunk_size
        )
        records = _predict(advise, rows, n, batch_size, target / "predictions.jsonl", resume, f"evaluate ({decoding})")
        run = {"model": str(model_path), "dataset": str(dataset), "split": split, "decoding": decoding, "rows": n,
               "version": __version__}
        results[decoding] = write_report(records, target, run)
    return results


def _predict(advise, rows, n: int, batch_size: int, path: Path, resume: bool, description: str) -> list[dict]:
    """The records of the first `n` rows, their answers from `advise(batch)`, appended to `path` a whole batch at a
    time (after the whole batches a resumed run finds there)."""
    done = _whole_batches(path, batch_size, n) if resume else []
    if any(record["uid"] != example_uid(rows[i]) for i, record in enumerate(done)):
        raise ValueError(f"{path} holds predictions for other rows; evaluate again without --resume.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(map(prediction_line, done)))
    records = list(done)
    with open(path, "a") as file:
        for start in tqdm(range(len(done), n, batch_size), desc=description, unit="batch"):
            batch = [rows[i] for i in range(start, min(start + batch_size, n))]
            texts = advise(batch)
            new = [prediction_record(row, text) for row, text in zip(batch, texts)]
            file.write("".join(map(prediction_line, new)))
            file.flush()
            records += new
    return records


def _whole_batches(path: Path, batch_size: int, n: int) -> list[dict]:
    """The records of an earlier run's `predictions.jsonl`, cut to whole batches (a killed run may have left half a
    line, or half a batch written by an older version)."""
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
    return records[: n if len(records) >= n else len(records) // batch_size * batch_size]
