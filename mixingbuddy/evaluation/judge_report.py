"""The LLM judge's summary: mean scores per criterion (overall and per error category), unreadable replies, and how
the scores agree with the parser's correctness and with listeners' ratings.

Only readable judgments (scores not None) enter means and agreements; a mean or a statistic that has too few
values to exist is None, never NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
from scipy import stats

from ..files import write_file_atomic
from ..hub.vocabulary_mixingbuddy import CATEGORIES
from ..markdown import markdown_table
from .rubric import CRITERIA


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def mean_scores(judgments: list[Mapping]) -> dict:
    """{"n", "unreadable", criterion: mean score or None} of a group of judgments."""
    readable = [j["scores"] for j in judgments if j["scores"] is not None]
    return {"n": len(judgments), "unreadable": len(judgments) - len(readable),
            **{c: _mean([s[c] for s in readable]) for c in CRITERIA}}


def correctness_agreement(scores: list[int], correct: list[bool]) -> dict:
    """How one criterion's scores separate correct from incorrect answers: the mean score of each, the point-biserial
    correlation and the AUC (the chance that a correct answer scores above an incorrect one, ties counting half)."""
    right = [s for s, c in zip(scores, correct) if c]
    wrong = [s for s, c in zip(scores, correct) if not c]
    both = bool(right) and bool(wrong)
    distinct = len(set(scores)) > 1
    return {
        "n_correct": len(right),
        "n_incorrect": len(wrong),
        "mean_correct": _mean(right),
        "mean_incorrect": _mean(wrong),
        "point_biserial": _finite(stats.pointbiserialr(correct, scores).statistic) if both and distinct else None,
        "auc": float(stats.mannwhitneyu(right, wrong).statistic) / (len(right) * len(wrong)) if both else None,
    }


def parser_agreement(judgments: list[Mapping], predictions: Mapping[str, Mapping]) -> dict:
    """`correctness_agreement` of each criterion against the parser's joint correctness of the judged answers
    (`predictions` by uid)."""
    readable = [j for j in judgments if j["scores"] is not None]
    correct = [bool(predictions[j["uid"]]["correct"]["joint"]) for j in readable]
    return {c: correctness_agreement([j["scores"][c] for j in readable], correct) for c in CRITERIA}


def answer_key(instruction: str, target_stem: str | None, error_category: str, text: str) -> tuple:
    """What the judge's prompt is made of, so what ties a study's answer to a judged prediction: two answers with
    the same key get the same prompt, so the same (deterministic) scores."""
    return instruction, target_stem, error_category, text.strip()


def human_agreement(judgments: list[Mapping], predictions: Mapping[str, Mapping], ratings: Iterable[Mapping]) -> dict:
    """Spearman's rank correlation per criterion between the judge's score and the listeners' mean rating of the same
    answer, over the rated answers the judge scored (matched by instruction, true flaw and answer text).

    `ratings` are a listening study's rows as `mixingbuddy.study.export.study_rows` gives them: one per participant,
    item and rated answer (`system`, `answer` text, the item's `instruction`, `target_stem`, `error_category` and
    the criteria), skipped items with `system` None."""
    judged = {}
    for judgment in judgments:
        record = predictions[judgment["uid"]]
        if judgment["scores"] is not None:
            key = answer_key(record["instruction"], record["target_stem"], record["error_category"],
                             record["generated"])
            judged[key] = judgment["scores"]
    rated: dict[tuple, list[Mapping]] = {}
    for row in ratings:
        if row["system"] is not None:
            rated.setdefault((row["item_id"], row["system"]), []).append(row)
    pairs = []  # (the judge's scores, the listeners' mean rating per criterion) of each matched answer
    for rows in rated.values():
        first = rows[0]
        key = answer_key(first["instruction"], first["target_stem"], first["error_category"], first["answer"] or "")
        if key in judged:
            pairs.append((judged[key], {c: float(np.mean([r[c] for r in rows])) for c in CRITERIA}))
    result = {"rated_answers": len(rated), "matched": len(pairs)}
    for criterion in CRITERIA:
        judge = [p[0][criterion] for p in pairs]
        human = [p[1][criterion] for p in pairs]
        varied = len(pairs) >= 3 and len(set(judge)) > 1 and len(set(human)) > 1
        result[criterion] = _finite(stats.spearmanr(judge, human).statistic) if varied else None
    return result


def summarize_judgments(
    judgments: list[Mapping], predictions: Iterable[Mapping], ratings: Iterable[Mapping] | None = None
) -> dict:
    """The summary of judgments of `predictions` (their records, with uid, error_category and correct): `overall`
    and `by_category` (`mean_scores`), `parser_agreement`, and with a study's `ratings`, `human_agreement`."""
    by_uid = {p["uid"]: p for p in predictions}
    summary = {
        "overall": mean_scores(judgments),
        "by_category": {
            category: mean_scores([j for j in judgments if by_uid[j["uid"]]["error_category"] == category])
            for category in CATEGORIES
        },
        "parser_agreement": parser_agreement(judgments, by_uid),
    }
    if ratings is not None:
        summary["human_agreement"] = human_agreement(judgments, by_uid, ratings)
    return summary


def _number(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def summary_markdown(summary: Mapping) -> str:
    """The summary as markdown tables."""
    header = ["N", "Unreadable", *(c.capitalize() for c in CRITERIA)]
    groups = {"all": summary["overall"], **summary["by_category"]}
    sections = [
        "## Mean scores (1–7)",
        markdown_table(["Group", *header], [[name.replace("_", " "), g["n"], g["unreadable"],
                                             *(_number(g[c]) for c in CRITERIA)] for name, g in groups.items()]),
        "## Agreement with the parser's correctness (joint)",
        markdown_table(
            ["Criterion", "Correct (n)", "Mean if correct", "Incorrect (n)", "Mean if incorrect", "Point-biserial r",
             "AUC"],
            [[c, a["n_correct"], _number(a["mean_correct"]), a["n_incorrect"], _number(a["mean_incorrect"]),
              _number(a["point_biserial"], 3), _number(a["auc"], 3)] for c, a in summary["parser_agreement"].items()],
        ),
    ]
    if "human_agreement" in summary:
        human = summary["human_agreement"]
        sections += [
            "## Agreement with the listeners' ratings",
            f"{human['matched']} of {human['rated_answers']} rated answers were judged.",
            markdown_table(["Criterion", "Spearman ρ"], [[c, _number(human[c], 3)] for c in CRITERIA]),
        ]
    return "\n\n".join(sections) + "\n"


def write_summary(out_dir: str | Path, summary: dict) -> dict:
    """Write `summary.json` and `summary.md` into `out_dir`; return the summary."""
    write_file_atomic(Path(out_dir) / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    write_file_atomic(Path(out_dir) / "summary.md", summary_markdown(summary))
    return summary
