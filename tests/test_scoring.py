"""The scorer (mixingbuddy.evaluation) and the `evaluate` metric: exact counts on hand-made answers, a perfect score
for the ground truth, the report folder and the confusion plots."""

import json
from pathlib import Path

import pytest

from mixingbuddy.evaluation.report import metrics_markdown, plot_confusions, write_report
from mixingbuddy.evaluation.scoring import (
    advice_label,
    labels_from_response,
    prediction_record,
    score_predictions,
    true_advice,
)
from mixingbuddy.hub.vocabulary_mixingbuddy import (
    CATEGORIES,
    RESPONSE_TEMPLATES,
    STEMS,
    TARGET_STEMS,
    format_response,
)

METRIC_DIR = Path(__file__).resolve().parents[1] / "metrics" / "mixingbuddy_gain"
ACCURACIES = ("joint_accuracy", "stem_accuracy", "direction_accuracy", "magnitude_accuracy")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def record(target_stem, category, generated, anchor="vocals", stems_present=STEMS):
    return {
        "target_stem": target_stem,
        "error_category": category,
        "anchor_stem": anchor,
        "stems_present": list(stems_present),
        "generated": generated,
    }


# Each row: what it is right about (joint, stem, direction, magnitude) and what is odd about it, worked out by hand.
HAND_MADE = [
    record("bass", "loud", "The bass is a little too loud. Reduce the bass by 3 to 6 dB."),  # all right
    record("bass", "very_quiet", "Raise the bass by 3 to 6 dB."),  # joint right, magnitude wrong
    record("drums", "quiet", "Cut the drums by 3 to 6 dB."),  # stem and magnitude right, opposite direction
    record("drums", "very_loud", "Reduce the vocals by 6 to 12 dB."),  # names the anchor: impossible
    record("vocals", "loud", "The mix is well balanced. No gain change is needed.", anchor="bass"),  # a miss
    record("vocals", "quiet", "I have no idea.", anchor="drums"),  # unparseable
    record("bass", "quiet", "Turn it up by 2 to 5 dB.", anchor="drums"),  # no stem, impossible range
    record("drums", "loud", "Lower the vocals by 3 to 6 dB.", anchor="bass", stems_present=("bass", "drums", "other")),
    record("bass", "no_error", "The levels are balanced. There is nothing to fix.", anchor="drums"),  # true negative
    record("bass", "no_error", "The bass is far too loud. Reduce the bass by 6 to 12 dB.", anchor="drums"),  # alarm
    record("drums", "no_error", "", anchor="bass"),  # unparseable on a balanced mix: a false positive
    record("vocals", "no_error", "Everything sits well, leave it at 3 dB.", anchor="bass"),  # balanced with an amount
]


def summary(n, n_error, joint, stem, direction, magnitude, unparseable=0.0, impossible=0.0):
    return {
        "n": n,
        "n_error": n_error,
        "joint_accuracy": pytest.approx(joint),
        "stem_accuracy": pytest.approx(stem),
        "direction_accuracy": pytest.approx(direction),
        "magnitude_accuracy": pytest.approx(magnitude),
        "unparseable_share": pytest.approx(unparseable),
        "impossible_share": pytest.approx(impossible),
    }


def table(tp, fp, fn, tn, precision, recall, f1):
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": pytest.approx(precision),
            "recall": pytest.approx(recall), "f1": pytest.approx(f1)}


BALANCED = summary(4, 0, 2 / 4, 2 / 4, 2 / 4, 0.0, unparseable=1 / 4, impossible=1 / 4)


@pytest.fixture(scope="module")
def metrics():
    return score_predictions(HAND_MADE)


def ground_truth_records():
    return [
        record(stem, category, format_response(category, stem, template), anchor=anchor)
        for category in CATEGORIES
        for stem in TARGET_STEMS
        for anchor in TARGET_STEMS
        if anchor != stem
        for template in range(len(RESPONSE_TEMPLATES[category]))
    ]


def test_ground_truth_scores_100_percent():
    """Every wording of every advice (5 categories × 3 targets × 2 anchors × 3 wordings) graded against its own truth."""
    metrics = score_predictions(ground_truth_records())
    assert metrics["overall"] == summary(90, 72, 1.0, 1.0, 1.0, 1.0)
    for task in ("error_detection", "stem_identification", "direction_prediction"):
        assert metrics[task] == table(72, 0, 0, 18, 1.0, 1.0, 1.0)
    for key in ("by_category", "by_stem", "by_direction"):
        for group, values in metrics[key].items():
            assert values["n"] > 0, (key, group)
            scored = ACCURACIES if values["n_error"] else ACCURACIES[:3]  # no magnitude without a flawed mix
            assert all(values[accuracy] == 1.0 for accuracy in scored), (key, group, values)


def test_overall_counts_and_shares(metrics):
    assert metrics["overall"] == summary(12, 8, 4 / 12, 5 / 12, 7 / 12, 4 / 8, unparseable=2 / 12, impossible=4 / 12)


def test_detection_tables(metrics):
    assert metrics["error_detection"] == table(6, 2, 2, 2, 6 / 8, 6 / 8, 6 / 8)
    assert metrics["stem_identification"] == table(3, 4, 3, 2, 3 / 7, 3 / 6, 6 / 13)
    assert metrics["direction_prediction"] == table(5, 3, 2, 2, 5 / 8, 5 / 7, 2 / 3)


def test_by_category(metrics):
    assert metrics["by_category"] == {
        "very_quiet": summary(1, 1, 1.0, 1.0, 1.0, 0.0),
        "quiet": summary(3, 3, 0.0, 1 / 3, 1 / 3, 1 / 3, unparseable=1 / 3, impossible=1 / 3),
        "no_error": BALANCED,
        "loud": summary(3, 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3, impossible=1 / 3),
        "very_loud": summary(1, 1, 0.0, 0.0, 1.0, 1.0, impossible=1.0),
    }


def test_by_stem_groups_balanced_mixes_under_none(metrics):
    assert metrics["by_stem"] == {
        "bass": summary(3, 3, 2 / 3, 2 / 3, 1.0, 1 / 3, impossible=1 / 3),
        "drums": summary(3, 3, 0.0, 1 / 3, 2 / 3, 1.0, impossible=2 / 3),
        "vocals": summary(2, 2, 0.0, 0.0, 0.0, 0.0, unparseable=1 / 2),
        "none": BALANCED,
    }


def test_by_direction(metrics):
    assert metrics["by_direction"] == {
        "increase": summary(4, 4, 1 / 4, 2 / 4, 2 / 4, 1 / 4, unparseable=1 / 4, impossible=1 / 4),
        "decrease": summary(4, 4, 1 / 4, 1 / 4, 3 / 4, 3 / 4, impossible=2 / 4),
        "none": BALANCED,
    }


def test_empty_input_gives_zeros_not_nan():
    metrics = score_predictions([])
    assert metrics["overall"] == summary(0, 0, 0.0, 0.0, 0.0, 0.0)
    assert metrics["error_detection"] == table(0, 0, 0, 0, 0.0, 0.0, 0.0)
    assert "NaN" not in json.dumps(metrics)


def test_markdown_tables(metrics):
    markdown = metrics_markdown(metrics)
    assert "| 12 | 33.33 % | 41.67 % | 58.33 % | 50.00 % | 8 | 16.67 % | 33.33 % |" in markdown
    assert "| error detection | 6 | 2 | 2 | 2 | 75.00 % | 75.00 % | 75.00 % |" in markdown
    assert "| direction prediction | 5 | 3 | 2 | 2 | 62.50 % | 71.43 % | 66.67 % |" in markdown
    assert "| no error | 4 | 50.00 % | 50.00 % | 50.00 % | — |" in markdown  # no magnitude on balanced mixes
    assert "| vocals | 2 | 0.00 % | 0.00 % | 0.00 % | 0.00 % |" in markdown
    for title in ("Table I", "Table II", "Table III", "Table IV"):
        assert f"## {title} " in markdown


def test_true_advice_and_labels_read_back_from_responses():
    for category in CATEGORIES:
        for stem in TARGET_STEMS:
            for template in range(len(RESPONSE_TEMPLATES[category])):
                labels = labels_from_response(format_response(category, stem, template))
                expected_stem = None if category == "no_error" else stem
                assert labels == {"target_stem": expected_stem, "error_category": category}
    assert true_advice("drums", "very_quiet") == {"stem": "drums", "direction": "increase", "min_db": 6.0, "max_db": 12.0}
    with pytest.raises(ValueError, match="Cannot read"):
        labels_from_response("Raise the bass by 2 to 5 dB.")


@pytest.mark.parametrize(
    "advice, label",
    [
        ({"stem": "bass", "direction": "increase", "min_db": 6.0, "max_db": 12.0}, "bass:very_quiet"),
        ({"stem": "vocals", "direction": "decrease", "min_db": 3.0, "max_db": 6.0}, "vocals:loud"),
        ({"stem": None, "direction": "none", "min_db": None, "max_db": None}, "no_error"),
        ({"stem": None, "direction": "decrease", "min_db": 3.0, "max_db": 6.0}, "other"),
        ({"stem": "drums", "direction": "increase", "min_db": 2.0, "max_db": 5.0}, "other"),
        ({"stem": None, "direction": None, "min_db": None, "max_db": None}, "unparseable"),
    ],
)
def test_advice_label(advice, label):
    assert advice_label(advice) == label


def test_prediction_record():
    example = {"track": "Song A", "start_sec": 20.0, "anchor_stem": "bass", "target_stem": "drums",
               "error_category": "loud", "instruction": "Check the balance.",
               "response": format_response("loud", "drums", 0)}
    result = prediction_record(example, "Cut the drums by 3 to 6 dB.")
    assert result["uid"] == "Song A/20.0/drums/loud/bass"
    assert result["stems_present"] == list(STEMS)
    assert result["parsed"] == {"stem": "drums", "direction": "decrease", "min_db": 3.0, "max_db": 6.0}
    assert result["truth"] == result["parsed"]
    assert result["correct"] == {"joint": True, "stem": True, "direction": True, "magnitude": True}
    assert (result["unparseable"], result["impossible"]) == (False, False)
    assert prediction_record({**example, "uid": 7}, "")["uid"] == "7"


def test_write_report(tmp_path, metrics):
    records = [prediction_record({**r, "uid": i, "instruction": "?", "response": "."}, r["generated"])
               for i, r in enumerate(HAND_MADE)]
    returned = write_report(records, tmp_path / "report")
    out = tmp_path / "report"
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["generated"] for line in lines] == [r["generated"] for r in HAND_MADE]
    assert json.loads((out / "metrics.json").read_text()) == returned == metrics
    assert (out / "metrics.md").read_text() == metrics_markdown(metrics)
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_advice.png", "confusion_direction.png", "metrics.json", "metrics.md", "predictions.jsonl",
    ]  # no temporary files left behind


def test_plot_confusions_writes_pngs(tmp_path):
    paths = plot_confusions(HAND_MADE, tmp_path)
    assert [p.name for p in paths] == ["confusion_advice.png", "confusion_direction.png"]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE)
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width >= 500 and height >= 400


def test_evaluate_metric_matches_the_scorer(metrics):
    evaluate = pytest.importorskip("evaluate")
    metric = evaluate.load(str(METRIC_DIR), keep_in_memory=True)
    references = [format_response(r["error_category"], r["target_stem"]) for r in HAND_MADE]
    results = metric.compute(
        predictions=[r["generated"] for r in HAND_MADE],
        references=references,
        anchor_stem=[r["anchor_stem"] for r in HAND_MADE],
        stems_present=[r["stems_present"] for r in HAND_MADE],
    )
    assert results == metrics
    perfect = metric.compute(predictions=references, references=references)
    assert perfect["overall"]["joint_accuracy"] == perfect["overall"]["magnitude_accuracy"] == 1.0
