"""Scoring MixingBuddy's advice against the ground truth: the paper's accuracies and detection tables.

Every generated answer is read back with `parse_advice` into `{"stem", "direction", "min_db", "max_db"}` and compared
with the ground truth in the same shape (`true_advice`). A flawed mix (category other than `no_error`) asks for one
target stem, a direction ("increase" for a too-quiet stem, "decrease" for a too-loud one) and the category's correction
range in dB; a balanced mix (`no_error`) asks for direction "none" and no stem.

Per example (see `grade`):

- **stem**: on a flawed mix, the named stem is the target; on a balanced mix, the answer says the mix is balanced.
- **direction**: the parsed direction equals the true one ("none" on a balanced mix).
- **joint**: stem and direction both right. A balanced mix is joint-correct iff the answer says it is balanced.
- **magnitude** (flawed mixes only): the parsed (min_db, max_db) equals the category's correction range.
- **unparseable**: no direction can be read (`parse_advice` gives direction None).
- **impossible**: a readable answer that no correct answer to this instruction could be (`advice_validity`): it asks
  to change the anchor or a stem that is not in the mix or not a target stem, gives a dB range that is not the
  correction range of a category of its direction, or says the mix is balanced while naming a stem or an amount.
  (Advice with a direction but no stem or no amount is incomplete, not impossible: it scores wrong on stem or
  magnitude.)

Detection tables (see `detection_cell`), over all examples, one cell per example: on a balanced mix the answer is a
true negative iff it says the mix is balanced, and a false positive otherwise (an unparseable answer is no correct
"balanced"). On a flawed mix it is a true positive when the task's answer is right, a false negative when the answer
gives none (no stem named, no direction), and a false positive when it gives a wrong one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ..hub.vocabulary_mixingbuddy import (
    ADVICE_CLASSES,
    CATEGORIES,
    STEMS,
    TARGET_STEMS,
    Advice,
    advice_class,
    advice_validity,
    parse_advice,
)

FLAW_DIRECTIONS = ("increase", "decrease")
DIRECTIONS = FLAW_DIRECTIONS + ("none",)
ACCURACY_KEYS = ("joint", "stem", "direction", "magnitude")
PREDICTED_CLASSES = ADVICE_CLASSES + ("other", "unparseable")  # "other": advice that names no class (no stem, odd dB)


# ---------------------------------------------------------------------------------------------
# One example: ground truth, grading, the JSONL record
# ---------------------------------------------------------------------------------------------


def true_advice(target_stem: str | None, error_category: str) -> Advice:
    """The ground truth as `parse_advice` gives advice: what a perfect answer reads back as."""
    category = CATEGORIES[error_category]
    if category.direction == "none":
        return Advice(stem=None, direction="none", min_db=None, max_db=None)
    low, high = category.correction_db
    return Advice(stem=target_stem, direction=category.direction, min_db=low, max_db=high)


def advice_category(advice: Mapping) -> str | None:
    """The error category an advice answers: "no_error" for "none", else the category with its direction and dB range."""
    if advice["direction"] == "none":
        return "no_error"
    amount = (advice["min_db"], advice["max_db"])
    return next(
        (name for name, c in CATEGORIES.items() if c.direction == advice["direction"] and c.correction_db == amount),
        None,
    )


def advice_label(advice: Mapping) -> str:
    """The class of an advice: one of `ADVICE_CLASSES` ("no_error", "bass:loud", ...), "other" or "unparseable"."""
    if advice["direction"] is None:
        return "unparseable"
    category = advice_category(advice)
    if category == "no_error":
        return "no_error"
    if category is None or advice["stem"] is None:
        return "other"
    return ADVICE_CLASSES[advice_class(advice["stem"], category)]


def labels_from_response(response: str) -> dict:
    """Ground-truth labels `{"target_stem", "error_category"}` read from a ground-truth response text."""
    advice = parse_advice(response)
    category = advice_category(advice)
    if category is None or (category != "no_error" and advice["stem"] is None):
        raise ValueError(f"Cannot read a target stem and error category from the reference {response!r}.")
    return {"target_stem": advice["stem"], "error_category": category}


def grade(record: Mapping) -> dict:
    """Parse `record["generated"]` and judge it against the record's ground-truth fields.

    Returns `{"truth", "parsed"}` (advice dicts), `"correct"` (`{"joint", "stem", "direction", "magnitude"}`, booleans;
    magnitude is None on a balanced mix), `"unparseable"` and `"impossible"` (booleans).
    """
    truth = true_advice(record["target_stem"], record["error_category"])
    parsed = parse_advice(record["generated"])
    balanced = truth["direction"] == "none"
    stem = parsed["direction"] == "none" if balanced else parsed["stem"] == truth["stem"]
    direction = parsed["direction"] == truth["direction"]
    magnitude = None if balanced else (parsed["min_db"], parsed["max_db"]) == (truth["min_db"], truth["max_db"])
    return {
        "truth": truth,
        "parsed": parsed,
        "correct": {"joint": stem and direction, "stem": stem, "direction": direction, "magnitude": magnitude},
        "unparseable": parsed["direction"] is None,
        "impossible": advice_validity(parsed, record["stems_present"], record["anchor_stem"]) == "impossible",
    }


def example_uid(example: Mapping) -> str:
    """The example's `uid`, or its track, start second, target, category and anchor joined by "/"."""
    if "uid" in example:
        return str(example["uid"])
    return "/".join(str(example[k]) for k in ("track", "start_sec", "target_stem", "error_category", "anchor_stem"))


def prediction_record(example: Mapping, generated: str) -> dict:
    """The `predictions.jsonl` record for a dataset row and the model's answer: inputs, labels, parse and grades."""
    record = {
        "uid": example_uid(example),
        "instruction": example["instruction"],
        "response": example["response"],
        "generated": generated,
        "target_stem": example["target_stem"],
        "error_category": example["error_category"],
        "anchor_stem": example["anchor_stem"],
        "stems_present": list(example.get("stems_present", STEMS)),
    }
    return {**record, **grade(record)}


# ---------------------------------------------------------------------------------------------
# Aggregates: accuracies by group and the detection tables
# ---------------------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def summarize(grades: list[dict], similarity: bool = False) -> dict:
    """Accuracies and shares of a group of graded examples (0.0 for an empty group, never NaN), and with
    `similarity` the mean `semantic_similarity` of their answers to the references."""
    flawed = [g for g in grades if g["correct"]["magnitude"] is not None]
    summary = {"n": len(grades), "n_error": len(flawed)}
    for key in ACCURACY_KEYS:
        pool = flawed if key == "magnitude" else grades
        summary[f"{key}_accuracy"] = _ratio(sum(g["correct"][key] for g in pool), len(pool))
    summary["unparseable_share"] = _ratio(sum(g["unparseable"] for g in grades), len(grades))
    summary["impossible_share"] = _ratio(sum(g["impossible"] for g in grades), len(grades))
    if similarity:
        summary["semantic_similarity"] = _ratio(sum(g["semantic_similarity"] for g in grades), len(grades))
    return summary


def flagged_error(advice: Mapping) -> str | None:
    """Error detection's answer: "error" when the advice asks for a gain change."""
    return "error" if advice["direction"] in FLAW_DIRECTIONS else None


def named_stem(advice: Mapping) -> str | None:
    """Stem identification's answer: the stem the advice names."""
    return advice["stem"]


def flaw_direction(advice: Mapping) -> str | None:
    """Direction prediction's answer: "increase" or "decrease"."""
    return advice["direction"] if advice["direction"] in FLAW_DIRECTIONS else None


DETECTION_TASKS: dict[str, Callable[[Mapping], str | None]] = {
    "error_detection": flagged_error,
    "stem_identification": named_stem,
    "direction_prediction": flaw_direction,
}


def detection_cell(task_answer: Callable[[Mapping], str | None], truth: Mapping, parsed: Mapping) -> str:
    """The table cell ("tp", "fp", "fn" or "tn") of one example; the rules are in the module docstring."""
    if truth["direction"] == "none":
        return "tn" if parsed["direction"] == "none" else "fp"
    answer = task_answer(parsed)
    if answer is None:
        return "fn"
    return "tp" if answer == task_answer(truth) else "fp"


def detection_table(task_answer: Callable[[Mapping], str | None], grades: list[dict]) -> dict:
    """`{"tp", "fp", "fn", "tn", "precision", "recall", "f1"}` of one detection task over all examples."""
    cells = [detection_cell(task_answer, g["truth"], g["parsed"]) for g in grades]
    table = {cell: cells.count(cell) for cell in ("tp", "fp", "fn", "tn")}
    precision = _ratio(table["tp"], table["tp"] + table["fp"])
    recall = _ratio(table["tp"], table["tp"] + table["fn"])
    return {**table, "precision": precision, "recall": recall, "f1": _ratio(2 * precision * recall, precision + recall)}


def graded(records: Iterable[Mapping]) -> list[dict]:
    """Each record's `grade`, with its true error category and its `semantic_similarity` (None when not scored)."""
    return [{**grade(record), "category": record["error_category"],
             "semantic_similarity": record.get("semantic_similarity")} for record in records]


def _grouped(grades: list[dict], group_of: Callable[[dict], str], groups: Iterable[str], similarity: bool) -> dict:
    return {group: summarize([g for g in grades if group_of(g) == group], similarity) for group in groups}


def score_predictions(records: Iterable[Mapping]) -> dict:
    """Metrics of generated answers against the ground truth.

    Each record needs `generated`, `target_stem`, `error_category`, `anchor_stem` (None skips the anchor check) and
    `stems_present`. Returns `overall` (`summarize`), `error_detection`, `stem_identification`, `direction_prediction`
    (`detection_table`), and `by_category`, `by_stem` (true stem; "none" for balanced mixes) and `by_direction` (true
    direction), each group a `summarize` dict. Every group is present, empty ones with n = 0. When every record has
    a `semantic_similarity` (`semantic.add_semantic_similarity`), every group has its mean.
    """
    grades = graded(records)
    similarity = bool(grades) and all(g["semantic_similarity"] is not None for g in grades)
    return {
        "overall": summarize(grades, similarity),
        **{task: detection_table(answer, grades) for task, answer in DETECTION_TASKS.items()},
        "by_category": _grouped(grades, lambda g: g["category"], CATEGORIES, similarity),
        "by_stem": _grouped(grades, lambda g: g["truth"]["stem"] or "none", TARGET_STEMS + ("none",), similarity),
        "by_direction": _grouped(grades, lambda g: g["truth"]["direction"], DIRECTIONS, similarity),
    }
