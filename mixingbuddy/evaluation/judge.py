"""`mixingbuddy judge`: a chat language model rates every answer of a `predictions.jsonl` on the rubric's three
criteria (`rubric.py`), in batches, greedily and resumably; `judgments.jsonl` gets one line per answer and
`summary.json` / `summary.md` the summary (`judge_report.py`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..files import error_summary, folder_fingerprint
from ..models.checkpoints import SMALL_MODEL_PARAMETERS, nf4_config, quiet_progress, resolve_model
from ..models.devices import compute_dtype, local_device
from .judge_report import summarize_judgments, write_summary
from .report import jsonl_line, read_whole_lines
from .rubric import CRITERIA, RUBRIC_VERSION, format_scores, parse_scores, reply_prefix, rubric_messages

JUDGMENTS = "judgments.jsonl"
PREDICTION_FIELDS = ("uid", "instruction", "generated", "target_stem", "error_category", "anchor_stem", "correct")


def read_predictions(path: str | Path, limit: int | None = None) -> list[dict]:
    """The first `limit` records (all without it) of a `predictions.jsonl` that `mixingbuddy evaluate` wrote; raises
    `ValueError` naming the file and line for a record that is not a JSON object, lacks a field the rubric or the
    summary needs, or repeats a uid."""
    records, uids = [], set()
    with open(path) as file:
        for number, line in enumerate(file, start=1):
            if limit is not None and len(records) == limit:
                break
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict):
                raise ValueError(f"{path}, line {number}: not a JSON record; pass a predictions.jsonl.")
            missing = [field for field in PREDICTION_FIELDS if field not in record]
            if missing:
                raise ValueError(f"{path}, line {number}: no {', '.join(missing)}; pass a mixingbuddy evaluate "
                                 "predictions.jsonl.")
            if record["uid"] in uids:
                raise ValueError(f"{path}, line {number}: uid {record['uid']!r} appears twice.")
            uids.add(record["uid"])
            records.append(record)
    if not records:
        raise ValueError(f"{path} holds no predictions.")
    return records


def judge_run(
    predictions: str | Path, judge_model: str, limit: int | None = None, constrained: bool = False,
    max_new_tokens: int = 32, dtype: torch.dtype | None = None, load_in_4bit: bool = False,
) -> dict:
    """What makes a judgment what it is, as the output folder records it (a resumed run must match): the
    predictions (path and content hash), the judge (`model`, and its files' fingerprint for a folder), the rubric
    version and the decoding. The batch size is left out: a run may resume with a smaller one."""
    if not Path(predictions).is_file():
        raise FileNotFoundError(f"Predictions file {predictions} does not exist; pass a predictions.jsonl that "
                                "mixingbuddy evaluate wrote.")
    content = hashlib.sha256(Path(predictions).read_bytes()).hexdigest()[:16]
    local = Path(judge_model).expanduser().is_dir()
    return {"predictions": str(predictions), "predictions_sha256": content, "model": judge_model,
            "model_files": folder_fingerprint(Path(judge_model).expanduser()) if local else None,
            "rubric_version": RUBRIC_VERSION, "constrained": constrained,
            "max_new_tokens": None if constrained else max_new_tokens, "limit": limit,
            "dtype": None if dtype is None else str(dtype).removeprefix("torch."), "load_in_4bit": load_in_4bit}


def load_judge(model: str, device=None, dtype: torch.dtype | None = None, load_in_4bit: bool = False):
    """(model, tokenizer) of a chat language model (folder or Hub id) in eval mode on `device` (default: this
    process's GPU, else the CPU) in `dtype` (default bfloat16 on a GPU, float32 on the CPU), or in NF4. The tokenizer
    pads on the left; the model decodes greedily whatever its own generation defaults say."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    path = resolve_model(model)
    device = torch.device(device) if device is not None else local_device()
    dtype = compute_dtype(dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32), device)
    kwargs = {"dtype": dtype}
    if load_in_4bit:
        kwargs.update(quantization_config=nf4_config(dtype), device_map={"": device})
    weights = sum(f.stat().st_size for f in Path(path).glob("*.safetensors")) if Path(path).is_dir() else None
    try:
        with quiet_progress(weights is not None and weights < 4 * SMALL_MODEL_PARAMETERS):  # float32 bytes
            tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
            loaded = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError, RuntimeError) as err:
        raise OSError(f"Cannot load the judge model {model}: {error_summary(err)}") from None
    if tokenizer.chat_template is None:
        raise ValueError(f"The tokenizer of judge model {model} has no chat template; the judge must be a chat model.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Chat models ship sampling defaults (Qwen2-Instruct: temperature, top-p, a repetition penalty): a judge that
    # must give the same scores twice decodes greedily with none of them.
    loaded.generation_config = GenerationConfig(
        do_sample=False, num_beams=1, eos_token_id=loaded.generation_config.eos_token_id or tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return (loaded if load_in_4bit else loaded.to(device)).eval(), tokenizer


def judge_prompts(tokenizer, records: list[Mapping]) -> list[str]:
    """Each record's rubric chat, rendered by the judge's chat template up to the start of its reply."""
    return [tokenizer.apply_chat_template(rubric_messages(record), tokenize=False, add_generation_prompt=True)
            for record in records]


def _tokenized(tokenizer, texts: list[str], device):
    # The chat template already wrote any special tokens the model expects.
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)


@torch.no_grad()
def generate_replies(model, tokenizer, prompts: list[str], max_new_tokens: int = 32) -> list[str]:
    """The judge's greedy replies to rendered prompts, one batch (left padding)."""
    inputs = _tokenized(tokenizer, prompts, model.device)
    output = model.generate(**inputs, max_new_tokens=max_new_tokens)
    return tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def digit_token_ids(tokenizer) -> list[int]:
    """The token ids of the digits 1–7; `ValueError` when the tokenizer writes one of them in several tokens."""
    ids = [tokenizer.encode(str(digit), add_special_tokens=False) for digit in range(1, 8)]
    if any(len(i) != 1 for i in ids):
        raise ValueError("The judge's tokenizer writes some digit 1-7 in several tokens; --constrained needs one each.")
    return [i[0] for i in ids]


@torch.no_grad()
def constrained_scores(model, tokenizer, prompts: list[str]) -> list[tuple[dict[str, int], dict[str, list[float]]]]:
    """(scores, probabilities) per prompt: each criterion in turn, after "criterion: " and the scores chosen so far,
    gets the digit 1–7 the judge finds most likely; its probabilities over the seven digits are kept."""
    digits = torch.tensor(digit_token_ids(tokenizer), device=model.device)
    scores = [{} for _ in prompts]
    probabilities = [{} for _ in prompts]
    for criterion in CRITERIA:
        texts = [prompt + reply_prefix(chosen) for prompt, chosen in zip(prompts, scores)]
        logits = model(**_tokenized(tokenizer, texts, model.device), logits_to_keep=1).logits[:, -1]  # [batch, vocab]
        shares = logits[:, digits].float().softmax(-1)  # [batch, 7]: renormalised over the digits
        for row, share in enumerate(shares.tolist()):
            scores[row][criterion] = 1 + max(range(7), key=share.__getitem__)
            probabilities[row][criterion] = [round(p, 4) for p in share]
    return list(zip(scores, probabilities))


def judge_batch(model, tokenizer, records: list[Mapping], judge_model: str, constrained: bool = False,
                max_new_tokens: int = 32) -> list[dict]:
    """The `judgments.jsonl` lines of a batch of prediction records: uid, rubric version, judge model, the judge's
    reply and its scores (None when the reply is unreadable); with `constrained`, also the digit probabilities."""
    prompts = judge_prompts(tokenizer, records)
    base = [{"uid": r["uid"], "rubric_version": RUBRIC_VERSION, "judge_model": judge_model} for r in records]
    if constrained:
        return [{**b, "reply": format_scores(scores), "scores": scores, "probabilities": shares}
                for b, (scores, shares) in zip(base, constrained_scores(model, tokenizer, prompts))]
    replies = generate_replies(model, tokenizer, prompts, max_new_tokens)
    return [{**b, "reply": reply, "scores": parse_scores(reply)} for b, reply in zip(base, replies)]


def judge_predictions(
    predictions: str | Path,
    judge_model: str,
    out_dir: str | Path,
    batch_size: int = 8,
    limit: int | None = None,
    constrained: bool = False,
    max_new_tokens: int = 32,
    device=None,
    dtype: torch.dtype | None = None,
    load_in_4bit: bool = False,
    resume: bool = False,
    ratings: list[Mapping] | None = None,
    run: Mapping | None = None,
    on_ready: Callable[[], object] | None = None,
) -> dict:
    """Judge the first `limit` records of `predictions` with `judge_model` and write `judgments.jsonl`,
    `summary.json` (with `run`, e.g. `judge_run`) and `summary.md` into `out_dir`; return the summary.

    Judgments are appended a batch at a time; with `resume`, the answers already judged there are skipped, so that
    the file ends as an uninterrupted run writes it. A listening study's `ratings` (`study.export.study_rows`) add
    the judge's agreement with the listeners. `on_ready()` (`start_output`, say) runs once everything has loaded,
    before anything is written.
    """
    if batch_size < 1 or (limit is not None and limit < 1) or max_new_tokens < 1:
        raise ValueError(f"--batch-size, --limit and --max-new-tokens must be at least 1, got {batch_size}, {limit} "
                         f"and {max_new_tokens}.")
    records = read_predictions(predictions, limit)
    model, tokenizer = load_judge(judge_model, device, dtype, load_in_4bit)
    if constrained:
        digit_token_ids(tokenizer)  # refuse before anything is written
    if on_ready is not None:
        on_ready()
    path = Path(out_dir) / JUDGMENTS
    judgments = read_whole_lines(path) if resume else []
    done = {j["uid"] for j in judgments}
    if not done <= {r["uid"] for r in records}:
        raise ValueError(f"{path} holds judgments of other predictions; judge again without --resume.")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(map(jsonl_line, judgments)))
    todo = [r for r in records if r["uid"] not in done]
    with open(path, "a") as file:
        for start in tqdm(range(0, len(todo), batch_size), desc="judge", unit="batch"):
            new = judge_batch(model, tokenizer, todo[start : start + batch_size], judge_model, constrained,
                              max_new_tokens)
            file.write("".join(map(jsonl_line, new)))
            file.flush()
            judgments += new
    summary = summarize_judgments(judgments, records, ratings)
    return write_summary(out_dir, {"run": dict(run or {}), **summary})
