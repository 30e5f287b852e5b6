"""The LLM judge's plumbing with a tiny random chat model: the rubric prompt, the strict reading of replies, batching,
resumption, determinism, the summary's maths and the command's one-line errors. A random judge's scores mean
nothing; what is tested is that they are asked for, read and counted as the rubric says."""

import json

import numpy as np
import pytest
from scipy import stats
from helpers import one_line_error

from mixingbuddy.cli import main
from mixingbuddy.evaluation import judge as judge_module
from mixingbuddy.evaluation.judge import judge_batch, judge_predictions, judge_prompts, load_judge, read_predictions
from mixingbuddy.evaluation.judge_report import correctness_agreement, human_agreement, summarize_judgments
from mixingbuddy.evaluation.rubric import (
    CRITERIA, RUBRIC_VERSION, format_scores, parse_scores, reply_prefix, rubric_messages,
)
from mixingbuddy.evaluation.scoring import prediction_record
from mixingbuddy.files import MARKER
from mixingbuddy.hub.vocabulary_mixingbuddy import format_instruction, format_response
from mixingbuddy.models.tiny import save_tiny_chat_model

ANSWERS = [
    ("bass", "quiet", "vocals", format_response("quiet", "bass")),  # right
    ("drums", "very_loud", "bass", format_response("loud", "drums")),  # right stem and direction, wrong amount
    ("vocals", "no_error", "drums", format_response("no_error")),  # right: balanced
    ("vocals", "loud", "bass", format_response("quiet", "bass")),  # changes the anchor
    ("bass", "very_quiet", "drums", "Sounds great to me!"),  # unparseable
]


def records() -> list[dict]:
    """Prediction records as `mixingbuddy evaluate` writes them, one per `ANSWERS` entry."""
    rows = [{"uid": f"song/{i}", "instruction": format_instruction(anchor, template=i), "target_stem": target,
             "error_category": category, "anchor_stem": anchor, "response": format_response(category, target)}
            for i, (target, category, anchor, _) in enumerate(ANSWERS)]
    return [prediction_record(row, answer) for row, (*_, answer) in zip(rows, ANSWERS)]


@pytest.fixture(scope="module")
def judge_dir(tmp_path_factory):
    return save_tiny_chat_model(tmp_path_factory.mktemp("judge") / "tiny-judge")


@pytest.fixture(scope="module")
def judge(judge_dir):
    return load_judge(str(judge_dir), device="cpu")


@pytest.fixture
def predictions(tmp_path):
    path = tmp_path / "eval" / "predictions.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in records()))
    return path


def test_the_prompt_holds_the_rubric_version_the_instruction_the_true_flaw_and_the_answer(judge):
    _, tokenizer = judge
    prompts = judge_prompts(tokenizer, records())
    for record, prompt in zip(records(), prompts):
        assert f"rubric, version {RUBRIC_VERSION}." in prompt
        assert record["instruction"] in prompt and record["generated"] in prompt
        assert f"reference stem, which must stay as it is: the {record['anchor_stem']}" in prompt
        assert prompt.endswith("<|im_start|>assistant\n")  # the chat template's generation prompt
    assert "The true flaw: the bass is 3 to 6 dB too quiet; the correction is raising the bass by 3 to 6 dB." \
        in prompts[0]
    assert "The true flaw: the drums is 6 to 12 dB too loud; the correction is lowering the drums" in prompts[1]
    assert "The true flaw: none: the mix is balanced" in prompts[2]
    assert rubric_messages(records()[0])[0]["role"] == "system"


@pytest.mark.parametrize("reply", [
    "effectiveness: 7\nactionability: 1\nconventions: 4",
    "  effectiveness: 7\nactionability: 1\nconventions: 4\n\n",
])
def test_the_parser_reads_the_rubric_format(reply):
    assert parse_scores(reply) == {"effectiveness": 7, "actionability": 1, "conventions": 4}
    assert parse_scores(format_scores(parse_scores(reply))) == parse_scores(reply)


@pytest.mark.parametrize("reply", [
    "",
    "effectiveness: 8\nactionability: 1\nconventions: 4",  # off the scale
    "effectiveness: 0\nactionability: 1\nconventions: 4",
    "effectiveness: 5\nactionability: 1",  # a criterion missing
    "actionability: 1\neffectiveness: 5\nconventions: 4",  # out of order
    "Effectiveness: 5\nActionability: 1\nConventions: 4",  # other case
    "**effectiveness**: 5\nactionability: 1\nconventions: 4",
    "effectiveness: 5/7\nactionability: 1\nconventions: 4",
    "effectiveness: 4.5\nactionability: 1\nconventions: 4",
    "effectiveness: 5\nactionability: 1\nconventions: 4\nThe advice is good.",  # more than the format
    "I would rate it effectiveness: 5\nactionability: 1\nconventions: 4",
    "effectiveness: 5, actionability: 1, conventions: 4",
])
def test_the_parser_refuses_anything_else(reply):
    assert parse_scores(reply) is None


def test_the_constrained_prefix_carries_the_scores_chosen_so_far():
    assert reply_prefix({}) == "effectiveness: "
    assert reply_prefix({"effectiveness": 5, "actionability": 2}) == "effectiveness: 5\nactionability: 2\nconventions: "


@pytest.mark.parametrize("constrained", [False, True])
def test_a_batch_gives_what_one_answer_at_a_time_gives(judge, constrained):
    model, tokenizer = judge
    together = judge_batch(model, tokenizer, records(), "tiny", constrained=constrained, max_new_tokens=12)
    alone = [judge_batch(model, tokenizer, [r], "tiny", constrained=constrained, max_new_tokens=12)[0]
             for r in records()]
    assert together == alone
    assert [j["uid"] for j in together] == [r["uid"] for r in records()]
    assert all(j["rubric_version"] == RUBRIC_VERSION and j["judge_model"] == "tiny" for j in together)


def test_constrained_scoring_is_always_readable(judge):
    judgments = judge_batch(*judge, records(), "tiny", constrained=True)
    for judgment in judgments:
        assert parse_scores(judgment["reply"]) == judgment["scores"]
        assert all(len(p) == 7 and abs(sum(p) - 1) < 1e-3 for p in judgment["probabilities"].values())


def test_a_random_judges_free_replies_are_counted_unreadable_not_guessed(judge_dir, predictions, tmp_path):
    summary = judge_predictions(predictions, str(judge_dir), tmp_path / "judged", max_new_tokens=8, device="cpu")
    lines = [json.loads(line) for line in (tmp_path / "judged" / "judgments.jsonl").read_text().splitlines()]
    assert all(line["scores"] is None and parse_scores(line["reply"]) is None for line in lines)
    assert summary["overall"] == {"n": 5, "unreadable": 5, "effectiveness": None, "actionability": None,
                                  "conventions": None}
    assert json.loads((tmp_path / "judged" / "summary.json").read_text())["overall"]["unreadable"] == 5
    assert "| all | 5 | 5 | — | — | — |" in (tmp_path / "judged" / "summary.md").read_text()


def test_resuming_skips_the_judged_answers_and_ends_with_the_file_of_an_uninterrupted_run(
    judge_dir, predictions, tmp_path, monkeypatch
):
    options = {"batch_size": 2, "constrained": True, "device": "cpu"}
    whole = judge_predictions(predictions, str(judge_dir), tmp_path / "whole", **options)
    again = judge_predictions(predictions, str(judge_dir), tmp_path / "again", **options)
    expected = (tmp_path / "whole" / "judgments.jsonl").read_bytes()
    assert (tmp_path / "again" / "judgments.jsonl").read_bytes() == expected and again == whole  # deterministic

    lines = expected.decode().splitlines(keepends=True)
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "judgments.jsonl").write_text("".join(lines[:3]) + lines[3][:20])  # killed mid-line
    judged, batch = [], judge_module.judge_batch
    monkeypatch.setattr(judge_module, "judge_batch", lambda m, t, rows, *a: judged.extend(r["uid"] for r in rows)
                        or batch(m, t, rows, *a))
    resumed = judge_predictions(predictions, str(judge_dir), tmp_path / "cut", resume=True, **options)
    assert judged == [r["uid"] for r in records()[3:]]
    assert (tmp_path / "cut" / "judgments.jsonl").read_bytes() == expected and resumed == whole


def hand_judgment(uid, scores):
    return {"uid": uid, "rubric_version": 1, "judge_model": "hand", "reply": "",
            "scores": None if scores is None else dict(zip(("effectiveness", "actionability", "conventions"), scores))}


def test_the_summary_of_hand_made_judgments():
    predictions = records()  # joint-correct: 1, 2, 3 (the third balanced); wrong: 4 (anchor), 5 (unparseable)
    assert [p["correct"]["joint"] for p in predictions] == [True, True, True, False, False]
    scores = [(7, 6, 5), (5, 6, 5), None, (2, 3, 1), (1, 6, 4)]
    judgments = [hand_judgment(p["uid"], s) for p, s in zip(predictions, scores)]
    summary = summarize_judgments(judgments, predictions)
    assert summary["overall"] == {"n": 5, "unreadable": 1, "effectiveness": 15 / 4, "actionability": 21 / 4,
                                  "conventions": 15 / 4}
    assert summary["by_category"]["quiet"] == {"n": 1, "unreadable": 0, "effectiveness": 7.0, "actionability": 6.0,
                                               "conventions": 5.0}
    assert summary["by_category"]["no_error"] == {"n": 1, "unreadable": 1, "effectiveness": None,
                                                  "actionability": None, "conventions": None}
    effectiveness = summary["parser_agreement"]["effectiveness"]
    assert effectiveness["n_correct"] == 2 and effectiveness["n_incorrect"] == 2
    assert effectiveness["mean_correct"] == 6.0 and effectiveness["mean_incorrect"] == 1.5
    correct, values = [1, 1, 0, 0], [7, 5, 2, 1]
    assert effectiveness["point_biserial"] == pytest.approx(np.corrcoef(correct, values)[0, 1])
    assert effectiveness["auc"] == 1.0
    # actionability: correct (6, 6) vs incorrect (3, 6): of the 4 pairs, 2 won and 2 tied -> (2 + 2 / 2) / 4
    assert summary["parser_agreement"]["actionability"]["auc"] == 0.75


def test_agreement_statistics_that_cannot_exist_are_none():
    assert correctness_agreement([4, 5], [True, True])["auc"] is None
    constant = correctness_agreement([4, 4, 4], [True, False, True])
    assert constant["point_biserial"] is None and constant["auc"] == 0.5
    assert correctness_agreement([], [])["mean_correct"] is None


def study_items(predictions) -> list[dict]:
    """Listening-study items (study.json) of the predictions: the model's answer beside the reference."""
    return [{"item_id": f"item-{i:03d}", "audio": f"audio/item-{i:03d}.wav", "track": "song", "start_sec": 0.0,
             "gain_db": 0.0, "stems_present": p["stems_present"],
             **{key: p[key] for key in ("instruction", "target_stem", "error_category", "anchor_stem")},
             "answers": [{"system": "model", "text": p["generated"], "correct": p["correct"]["joint"]},
                         {"system": "reference", "text": p["response"], "correct": True}]}
            for i, p in enumerate(predictions)]


def test_agreement_with_listeners_matches_answers_by_instruction_flaw_and_text():
    predictions = records()
    scores = [(7, 6, 5), (5, 6, 5), (4, 4, 4), (2, 3, 1), (1, 6, 4)]
    judgments = [hand_judgment(p["uid"], s) for p, s in zip(predictions, scores)]
    items = study_items(predictions)
    human = {0: 6, 1: 5, 2: 4, 3: 2, 4: 1}  # the listeners' mean effectiveness: in the judge's order
    ratings = [{**item, "participant": who, "system": "model", "answer": item["answers"][0]["text"],
                "effectiveness": human[i] + delta, "actionability": 4, "conventions": 7 - i}
               for i, item in enumerate(items) for who, delta in (("p1", 0.5), ("p2", -0.5))]
    ratings.append({**items[0], "participant": "p1", "system": "reference", "answer": items[0]["answers"][1]["text"],
                    "effectiveness": 7, "actionability": 4, "conventions": 7})
    ratings.append({**items[1], "participant": "p3", "system": None, "answer": None})  # a skipped item
    agreement = human_agreement(judgments, {p["uid"]: p for p in predictions}, ratings)
    # the reference answer of item-000 is also the model's answer (a right answer in its first wording): both match
    assert agreement["rated_answers"] == 6 and agreement["matched"] == 6
    judge, listeners = [7, 5, 4, 2, 1, 7], [6, 5, 4, 2, 1, 7]  # first rated first; item-000's two answers tie
    assert agreement["effectiveness"] == pytest.approx(stats.spearmanr(judge, listeners).statistic)
    assert agreement["actionability"] is None  # the listeners gave every answer the same rating


def test_the_command_reports_agreement_with_a_study_rated_in_its_database(judge_dir, predictions, tmp_path, capsys):
    from mixingbuddy.study.database import StudyDatabase

    study = tmp_path / "study"
    study.mkdir()
    items = study_items(records())
    (study / "study.json").write_text(json.dumps({"format": 1, "seed": 0, "items": items}))
    with StudyDatabase(study / "ratings.sqlite") as database:
        for i, item in enumerate(items):
            values = {"effectiveness": 1 + i, "actionability": 7 - i, "conventions": 4}
            database.submit("listener-1", item["item_id"], {"model": values, "reference": values})
    out = tmp_path / "judged"
    assert main(judge_command(predictions, judge_dir, out, "--constrained", "--study", str(study))) == 0
    assert "7 of the study's 10 rated answers were judged" in capsys.readouterr().out  # 2 references too
    human = json.loads((out / "summary.json").read_text())["human_agreement"]
    assert human["rated_answers"] == 10 and set(human) == {"rated_answers", "matched", *CRITERIA}
    assert "## Agreement with the listeners' ratings" in (out / "summary.md").read_text()


# The command.


def judge_command(predictions, judge_dir, out, *extra):
    return ["judge", "--predictions", str(predictions), "--judge-model", str(judge_dir), "--out", str(out),
            "--device", "cpu", *extra]


def test_the_command_writes_judgments_summary_and_marker(judge_dir, predictions, tmp_path, capsys):
    out = tmp_path / "judged"
    assert main(judge_command(predictions, judge_dir, out, "--constrained", "--batch-size", "3", "--limit", "4")) == 0
    assert "Judged 4 answers (0 unreadable): effectiveness" in capsys.readouterr().out
    assert len((out / "judgments.jsonl").read_text().splitlines()) == 4
    summary = json.loads((out / "summary.json").read_text())
    marker = json.loads((out / MARKER).read_text())
    assert marker["kind"] == "judgment" and marker["run"] == summary["run"]
    assert summary["run"]["rubric_version"] == RUBRIC_VERSION and summary["run"]["constrained"] is True
    assert set(summary) == {"run", "overall", "by_category", "parser_agreement"}
    assert read_predictions(predictions, limit=2) == records()[:2]


@pytest.mark.parametrize("extra, fragment", [
    (["--batch-size", "0"], "must be at least 1"),
    (["--limit", "0"], "must be at least 1"),
    (["--max-new-tokens", "0"], "must be at least 1"),
])
def test_the_command_refuses_bad_numbers_in_one_line(judge_dir, predictions, tmp_path, capsys, extra, fragment):
    assert main(judge_command(predictions, judge_dir, tmp_path / "out", *extra)) == 2
    one_line_error(capsys, fragment)
    assert not (tmp_path / "out").exists()


def test_the_command_refuses_bad_inputs_in_one_line(judge_dir, predictions, tmp_path, capsys):
    assert main(judge_command(tmp_path / "missing.jsonl", judge_dir, tmp_path / "out")) == 2
    one_line_error(capsys, "does not exist")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"uid": "a"}\nnot json\n')
    assert main(judge_command(broken, judge_dir, tmp_path / "out")) == 2
    one_line_error(capsys, "line 1", "no instruction")
    assert main(judge_command(predictions, tmp_path / "no-model", tmp_path / "out")) == 2
    one_line_error(capsys, "no-model")
    assert main(judge_command(predictions, judge_dir, predictions.parent)) == 2  # the folder of the predictions
    one_line_error(capsys, "overlaps the predictions")
    assert not (tmp_path / "out").exists()


def test_the_command_resumes_only_the_same_run(judge_dir, predictions, tmp_path, capsys):
    out = tmp_path / "judged"
    assert main(judge_command(predictions, judge_dir, out, "--constrained", "--limit", "2")) == 0
    assert main(judge_command(predictions, judge_dir, out, "--constrained", "--limit", "3", "--resume")) == 2
    one_line_error(capsys, "holds no judgment with these arguments to resume")
    assert main(judge_command(predictions, judge_dir, out, "--constrained", "--limit", "2")) == 2
    one_line_error(capsys, "already exists")
    assert main(judge_command(predictions, judge_dir, out, "--constrained", "--limit", "2", "--resume")) == 0
    assert main(judge_command(predictions, judge_dir, out, "--limit", "2", "--max-new-tokens", "4",
                              "--overwrite")) == 0
