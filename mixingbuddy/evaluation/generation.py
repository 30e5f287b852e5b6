"""`mixingbuddy evaluate`: batched generation (greedy, constrained or ranked) over a data-set split, then the report."""

from __future__ import annotations

from pathlib import Path

import torch
from datasets import load_dataset
from tqdm.auto import tqdm

from ..models.checkpoints import load_model
from ..training.collator import FlawedMixCollator
from . import DECODINGS
from .constrained import constrained_generate_kwargs
from .ranked import rank_advice
from .report import write_report
from .scoring import prediction_record


@torch.no_grad()
def generate_advice(model, collator: FlawedMixCollator, rows: list[dict], decoding: str = "greedy") -> list[str]:
    """Answers for a batch of data-set rows (left padding, KV cache): greedy; greedy constrained to valid advice; or
    ranked, the valid advice with the largest probability summed over its wordings (`rank_advice`)."""
    inputs = collator(rows, labels=False).to(model.device)
    prompt_length = inputs["input_ids"].shape[1]
    prompts = [(r["stems_present"], r["anchor_stem"]) for r in rows]
    if decoding == "ranked":
        return rank_advice(model, collator.processor, inputs, prompts)
    kwargs = {}
    if decoding == "constrained":
        kwargs = constrained_generate_kwargs(collator.processor, [a for _, a in prompts], [s for s, _ in prompts], prompt_length)
    generated = model.generate(**inputs, do_sample=False, **kwargs)
    return collator.processor.batch_decode(generated[:, prompt_length:], skip_special_tokens=True)


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
) -> dict[str, dict]:
    """Generate advice for `split` of `dataset` (a folder or Hub id) and write, per decoding, `predictions.jsonl`,
    `metrics.json`, `metrics.md` and confusion plots: the first decoding in `out_dir`, the others in
    `out_dir/<decoding>`. `limits` caps the rows of some decodings (e.g. {"constrained": 600}). Returns the metrics per
    decoding."""
    unknown = [d for d in decodings if d not in DECODINGS]
    if unknown:
        raise ValueError(f"Unknown decoding(s) {unknown}; choose from {list(DECODINGS)}.")
    model, processor = load_model(model_path)
    rows = load_dataset(str(dataset), split=split)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    collator = FlawedMixCollator(processor, stems_dir, cache_dir=cache_dir)
    results = {}
    for decoding in decodings:
        n, records = min(len(rows), (limits or {}).get(decoding, len(rows))), []
        for start in tqdm(range(0, n, batch_size), desc=f"evaluate ({decoding})", unit="batch"):
            batch = [rows[i] for i in range(start, min(start + batch_size, n))]
            texts = generate_advice(model, collator, batch, decoding)
            records += [prediction_record(row, text) for row, text in zip(batch, texts)]
        target = Path(out_dir) if decoding == decodings[0] else Path(out_dir) / decoding
        results[decoding] = write_report(records, target)
    return results
