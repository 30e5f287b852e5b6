"""`mixingbuddy evaluate`: batched generation (greedy, constrained or ranked) over a data-set split, then the report.

Under `accelerate launch` the processes share the batches out and the main process writes the same files as one
process would."""

from __future__ import annotations

import contextlib
import functools
import shutil
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object
from datasets import load_dataset
from tqdm.auto import tqdm

from .. import __version__
from ..files import check_location, check_output_folder, read_marker, write_marker
from ..models.checkpoints import load_model
from ..models.devices import local_device
from ..training.collator import FlawedMixCollator
from . import DECODINGS
from .decoding import decode_advice
from .report import jsonl_line, read_whole_lines, write_report
from .scoring import example_uid, prediction_record
from .semantic import SentenceEmbedder, add_semantic_similarity


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


def evaluation_processes(device=None) -> PartialState:
    """The processes `accelerate launch` started (this one alone without it), each evaluating on its own device
    (`device`, default `local_device`); on the CPU they talk over gloo."""
    return PartialState(cpu=(torch.device(device) if device is not None else local_device()).type == "cpu")


def on_main_process(state: PartialState, function, *args, **kwargs):
    """`function(*args, **kwargs)` run by the main process alone while the others wait; every process returns its
    result or raises the error it raised, so that a refusal ends all of them alike."""
    if state.num_processes == 1:
        return function(*args, **kwargs)
    outcome = [None, None]  # [result, error]
    if state.is_main_process:
        try:
            outcome[0] = function(*args, **kwargs)
        except Exception as err:
            outcome[1] = err
    broadcast_object_list(outcome)
    if outcome[1] is not None:
        raise outcome[1]
    return outcome[0]


def check_output(
    out_dir: str | Path, run: dict, overwrite: bool = False, resume: bool = False, protected=(), kind: str = "evaluation"
) -> Path:
    """The output folder (of an evaluation, or another `kind` of run such as "judgment"), checked before any model
    loads and left as it is: clear of the inputs (`protected`), and new, or an earlier one of its kind with
    `overwrite`, or with `resume` one of the same `run` (model files included)."""
    if not resume:
        return check_output_folder(out_dir, overwrite, kind=kind, protected=protected)
    path = check_location(out_dir, protected)
    marker = read_marker(path) or {}
    earlier = (marker.get("run") or {}) if marker.get("kind") == kind else {}
    if {**earlier, "model_files": None} != {**run, "model_files": None}:
        raise ValueError(f"{path} holds no {kind} with these arguments to resume; start one without --resume.")
    if earlier.get("model_files") != run.get("model_files"):
        raise ValueError(f"The files of model {run['model']} changed since {path} was begun; resuming would mix two "
                         "models' answers: evaluate again with --overwrite.")
    return path


def start_output(
    out_dir: str | Path, run: dict, overwrite: bool = False, resume: bool = False, protected=(), kind: str = "evaluation"
) -> Path:
    """`check_output` again once the model has loaded, then, unless resuming, the earlier output deleted (no stale
    sub-folder of it survives) and the new folder marked with `kind` and `run`."""
    path = check_output(out_dir, run, overwrite, resume, protected, kind)
    if not resume:
        if path.exists():
            shutil.rmtree(path)
        write_marker(path, kind, run=run)
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
    load_in_4bit: bool = False,
    ranked_chunk_size: int | None = None,
    semantic_model: str | None = None,
    on_ready=None,
) -> dict[str, dict]:
    """Generate advice for `split` of `dataset` (a folder or Hub id) and write, per decoding, `predictions.jsonl`,
    `metrics.json`, `metrics.md` and confusion plots: the first decoding in `out_dir`, the others in
    `out_dir/<decoding>`. Returns the metrics per decoding.

    `stems_dir` is the folder the rows are rendered from (check it against the data set with
    `dataset_builder.provenance.check_audio` first). `limits` caps the rows of some decodings (e.g. {"constrained":
    600}). Predictions are appended to `predictions.jsonl` batch by batch; with `resume`, the whole batches already
    there are kept and the run goes on from there, to the same files an uninterrupted run writes. The model loads on
    `device` in `dtype`, with `load_in_4bit` in NF4 (`load_model`); ranked decoding scores `ranked_chunk_size`
    candidates at a time. With `semantic_model` (an encoder's folder or Hub id, `semantic.SentenceEmbedder`), every
    record gets the `semantic_similarity` of its answer to the reference and the metrics get its means. `on_ready()`
    (`start_output`, say) runs on the main process once the rows and the models are ready, before anything is written.

    Under `accelerate launch` every process loads the model on its own device and answers every P-th batch of the same
    batches one process would answer; the main process writes the answers in row order, and every process returns
    the metrics.
    """
    check_evaluation_arguments(decodings, batch_size, limit)
    state = evaluation_processes(device)
    rows = load_dataset(str(dataset), split=split)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    model, processor = load_model(model_path, device=device, dtype=dtype, load_in_4bit=load_in_4bit)
    collator = FlawedMixCollator(processor, stems_dir, cache_dir=cache_dir)
    embedder = SentenceEmbedder(semantic_model, device) if semantic_model and state.is_main_process else None
    if on_ready is not None:
        on_main_process(state, on_ready)
    results = {}
    for decoding in decodings:
        n = min(len(rows), (limits or {}).get(decoding, len(rows)))
        target = Path(out_dir) if decoding == decodings[0] else Path(out_dir) / decoding
        advise = functools.partial(
            generate_advice, model, collator, decoding=decoding, ranked_chunk_size=ranked_chunk_size
        )
        path = target / "predictions.jsonl"
        records = _predict(advise, rows, n, batch_size, path, resume, f"evaluate ({decoding})", state)
        if embedder is not None:  # the main process's records, the only whole ones
            records = add_semantic_similarity(records, embedder, batch_size)
        run = {"model": str(model_path), "dataset": str(dataset), "split": split, "decoding": decoding, "rows": n,
               **({"semantic_model": semantic_model} if semantic_model else {}), "version": __version__}
        results[decoding] = on_main_process(state, write_report, records, target, run)
    return results


def _predict(
    advise, rows, n: int, batch_size: int, path: Path, resume: bool, description: str, state: PartialState
) -> list[dict]:
    """The records of the first `n` rows, their answers from `advise(batch)`, appended to `path` a whole batch at a
    time (after the whole batches a resumed run finds there).

    The batches go round in turns of one per process (process p answers batches p, p + P, ...); the main process
    gathers each turn's answers and appends them in row order; only its records are whole."""
    done = _whole_batches(path, batch_size, n) if resume else []
    if any(record["uid"] != example_uid(rows[i]) for i, record in enumerate(done)):
        raise ValueError(f"{path} holds predictions for other rows; evaluate again without --resume.")
    state.wait_for_everyone()  # all have read `path` before the main process rewrites it
    main = state.is_main_process
    if main:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(map(jsonl_line, done)))
    records = list(done)
    starts = range(len(done), n, batch_size)
    with (
        open(path, "a") if main else contextlib.nullcontext() as file,
        tqdm(total=len(starts), desc=description, unit="batch", disable=not main) as progress,
    ):
        for turn in range(0, len(starts), state.num_processes):
            batches = [_batch(rows, start, batch_size, n) for start in starts[turn : turn + state.num_processes]]
            mine = batches[state.process_index : state.process_index + 1]  # [] when this turn has no batch left for it
            texts = gather_object([advise(batch) for batch in mine])  # one list of answers per batch, in order
            if main:
                new = [prediction_record(row, text) for batch, answers in zip(batches, texts)
                       for row, text in zip(batch, answers)]
                file.write("".join(map(jsonl_line, new)))
                file.flush()
                records += new
            progress.update(len(batches))
    return records


def _batch(rows, start: int, batch_size: int, n: int) -> list[dict]:
    return [rows[i] for i in range(start, min(start + batch_size, n))]


def _whole_batches(path: Path, batch_size: int, n: int) -> list[dict]:
    """The records of an earlier run's `predictions.jsonl`, cut to whole batches (a killed run may have left half a
    line, or half a batch written by an older version)."""
    records = read_whole_lines(path)
    return records[: n if len(records) >= n else len(records) // batch_size * batch_size]
