"""The listening study's core: the ratings database is safe under concurrent writers and killed processes, prepare
writes a deterministic study folder, export round-trips the ratings, and the report's numbers are right."""

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from mixingbuddy.models.tiny import save_tiny_checkpoint
from mixingbuddy.study import CRITERIA, answer_order, item_order, load_study
from mixingbuddy.study.cli import add_study_commands
from mixingbuddy.study.database import StudyDatabase
from mixingbuddy.study.export import export_ratings
from mixingbuddy.study import CONSENT_TEMPLATE
from mixingbuddy.study.prepare import draw_rows, prepare_study
from mixingbuddy.study.report import bootstrap_mean, study_report

ROOT = Path(__file__).resolve().parents[1]


def scores(effectiveness: int, actionability: int = 4, conventions: int = 4) -> dict:
    return {"effectiveness": effectiveness, "actionability": actionability, "conventions": conventions}


def write_study(folder: Path, n_items: int = 4, systems=("model", "reference"), correct=(True, False)) -> Path:
    """A hand-made study.json (no audio: the database, export and report do not read it)."""
    categories = ("quiet", "loud", "no_error", "very_loud")
    items = [
        {"item_id": f"item-{i:03d}", "audio": f"audio/item-{i:03d}.wav", "track": "Song", "start_sec": 10.0 * i,
         "anchor_stem": "drums", "target_stem": ("bass", "vocals")[i % 2], "error_category": categories[i % 4],
         "gain_db": 3.0, "instruction": "Fix the balance?", "stems_present": ["bass", "drums", "other", "vocals"],
         "answers": [{"system": s, "text": f"{s} advice {i}", "correct": c} for s, c in zip(systems, correct)]}
        for i in range(n_items)
    ]
    study = {"format": 1, "seed": 0, "model": "m", "dataset": "d", "split": "test", "second_model": None,
             "reference": "reference" in systems, "created": "2025-01-01T00:00:00+00:00", "items": items}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "study.json").write_text(json.dumps(study))
    return folder


def run_study_command(*argv: str) -> int:
    """A `study` command through a parser of its own (as mixingbuddy.cli builds it)."""
    parser = argparse.ArgumentParser(prog="mixingbuddy")
    add_study_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["study", *argv])
    return args.func(args)


# ---------------------------------------------------------------------------------------------
# The database
# ---------------------------------------------------------------------------------------------

SUBMITTER = """
import sys
from mixingbuddy.study.database import StudyDatabase
database = StudyDatabase(sys.argv[1])
values = {"effectiveness": 5, "actionability": 6, "conventions": 7}
for i in range(int(sys.argv[3])):
    assert database.submit(sys.argv[2], f"item-{i:05d}", {"model": values})
    print(i, flush=True)
"""


def submitter(path: Path, code: str, n: int) -> subprocess.Popen:
    """A process that submits `n` ratings as `code`, printing each item's number once its transaction committed."""
    return subprocess.Popen([sys.executable, "-c", SUBMITTER, str(path), code, str(n)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_the_database_is_in_wal_mode_and_records_its_schema_version(tmp_path):
    StudyDatabase(tmp_path / "ratings.sqlite")
    with sqlite3.connect(tmp_path / "ratings.sqlite") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)


def test_a_newer_schema_or_a_foreign_file_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "ratings.sqlite"
    StudyDatabase(path)
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with pytest.raises(ValueError, match=r"ratings\.sqlite has schema version 2"):
        StudyDatabase(path)
    (tmp_path / "notes.sqlite").write_text("not a database at all, just some text " * 40)
    with pytest.raises(ValueError, match=r"notes\.sqlite is not a study database"):
        StudyDatabase(tmp_path / "notes.sqlite")


def test_two_processes_and_many_threads_writing_at_once_lose_nothing(tmp_path):
    database = StudyDatabase(tmp_path / "ratings.sqlite")
    processes = [submitter(database.path, f"proc-{k}", 60) for k in range(2)]
    errors = []

    def rate(code: str) -> None:
        try:
            for i in range(40):
                assert database.submit(code, f"item-{i:05d}", {"model": scores(1 + i % 7), "second": scores(2)},
                                       preferred="model", comment=f"{code} {i}")
        except Exception as err:  # noqa: BLE001  (reported below, from the main thread)
            errors.append(err)

    threads = [threading.Thread(target=rate, args=(f"thread-{k}",)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.communicate(timeout=120)
        assert process.returncode == 0
    assert not errors
    responses, ratings = database.responses(), database.ratings()
    assert len(responses) == 2 * 60 + 6 * 40
    assert len(ratings) == 2 * 60 + 6 * 40 * 2
    assert {(r["participant"], r["item_id"]) for r in responses} == {
        *((f"proc-{k}", f"item-{i:05d}") for k in range(2) for i in range(60)),
        *((f"thread-{k}", f"item-{i:05d}") for k in range(6) for i in range(40)),
    }


def test_a_killed_process_loses_no_committed_rating(tmp_path):
    path = tmp_path / "ratings.sqlite"
    StudyDatabase(path)
    process = submitter(path, "killed", 100_000)
    committed = [int(process.stdout.readline()) for _ in range(30)]
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    answered = StudyDatabase(path).answered("killed")
    assert {f"item-{i:05d}" for i in committed} <= answered
    ratings = StudyDatabase(path).ratings()
    assert len(ratings) == len(answered)  # no response without its ratings: each answer is one transaction


def test_a_repeated_submit_returns_false_and_never_double_counts(tmp_path):
    database = StudyDatabase(tmp_path / "ratings.sqlite")
    assert database.submit("ann", "item-000", {"model": scores(6)}, comment="first")
    assert not database.submit("ann", "item-000", {"model": scores(1)}, comment="second")
    assert not database.submit("ann", "item-000", None, skipped=True)
    assert [(r["effectiveness"], r["comment"]) for r in database.ratings()] == [(6, "first")]
    assert len(database.responses()) == 1
    outcomes = []
    def submit():
        outcomes.append(database.submit("bob", "item-001", {"model": scores(3)}))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [False] * 7 + [True]
    assert database.answered("bob") == {"item-001"}


def test_register_is_idempotent_and_skips_are_answers(tmp_path):
    database = StudyDatabase(tmp_path / "ratings.sqlite")
    database.register("ann")
    database.register("ann")
    assert database.answered("ann") == set()
    assert database.submit("ann", "item-004", None, comment="could not hear it", skipped=True)
    assert database.answered("ann") == {"item-004"}
    assert database.ratings() == []
    (response,) = database.responses()
    assert response["skipped"] is True and response["comment"] == "could not hear it" and response["preferred"] is None
    database.close()
    with pytest.raises(ValueError, match="closed"):
        database.answered("ann")


@pytest.mark.parametrize(
    ("code", "item", "ratings", "preferred", "skipped", "message"),
    [
        ("ann smith", "item-000", {"model": scores(4)}, None, False, "Participant code 'ann smith'"),
        ("a@b.org", "item-000", {"model": scores(4)}, None, False, "Participant code"),
        ("x" * 41, "item-000", {"model": scores(4)}, None, False, "Participant code"),
        ("", "item-000", {"model": scores(4)}, None, False, "Participant code"),
        ("ann", "item-000", {"model": scores(8)}, None, False, "effectiveness of 'model' must be an integer 1-7"),
        ("ann", "item-000", {"model": scores(0)}, None, False, "must be an integer 1-7"),
        ("ann", "item-000", {"model": scores(True)}, None, False, "must be an integer 1-7"),
        ("ann", "item-000", {"model": scores(4.5)}, None, False, "must be an integer 1-7"),
        ("ann", "item-000", {"model": {"effectiveness": 4}}, None, False, "exactly effectiveness, actionability"),
        ("ann", "item-000", {"model": {**scores(4), "fun": 3}}, None, False, "exactly"),
        ("ann", "item-000", {"human": scores(4)}, None, False, "unknown system 'human'"),
        ("ann", "item-000", {}, None, False, "give ratings"),
        ("ann", "item-000", {"model": scores(4)}, "model", False, "preference 'model' must be one of the two"),
        ("ann", "item-000", {"model": scores(4), "second": scores(4)}, "reference", False, "preference"),
        ("ann", "item-000", {"model": scores(4)}, None, True, "skipped item takes no ratings"),
        ("ann", "", {"model": scores(4)}, None, False, "Item id"),
    ],
)
def test_bad_codes_and_values_are_refused_with_a_message_and_store_nothing(
    tmp_path, code, item, ratings, preferred, skipped, message
):
    database = StudyDatabase(tmp_path / "ratings.sqlite")
    with pytest.raises(ValueError, match=message):
        database.submit(code, item, ratings, preferred=preferred, skipped=skipped)
    assert database.responses() == [] and database.ratings() == []


def test_the_item_order_is_fixed_per_code_and_seed_and_differs_between_codes():
    ids = [f"item-{i:03d}" for i in range(20)]
    order = item_order(ids, "ann", 0)
    assert order == item_order(ids, "ann", 0) and sorted(order) == ids
    assert order != item_order(ids, "bob", 0) and order != item_order(ids, "ann", 1)
    orders = {tuple(answer_order(2, f"p{k}", "item-000", 0)) for k in range(20)}
    assert orders == {(0, 1), (1, 0)}  # both orders occur over participants
    assert answer_order(2, "ann", "item-003", 5) == answer_order(2, "ann", "item-003", 5)


def test_load_study_names_the_file_when_it_is_missing_or_bad(tmp_path):
    with pytest.raises(FileNotFoundError, match="study.json does not exist"):
        load_study(tmp_path)
    write_study(tmp_path)
    assert len(load_study(tmp_path)["items"]) == 4
    study = json.loads((tmp_path / "study.json").read_text())
    study["items"][1]["answers"].append({"system": "second", "text": "x", "correct": None})
    (tmp_path / "study.json").write_text(json.dumps(study))
    with pytest.raises(ValueError, match=r"study\.json: item 'item-001' needs 1 or 2 answers"):
        load_study(tmp_path)
    (tmp_path / "study.json").write_text("{")
    with pytest.raises(ValueError, match="not readable JSON"):
        load_study(tmp_path)


# ---------------------------------------------------------------------------------------------
# prepare
# ---------------------------------------------------------------------------------------------


def test_the_draw_is_seeded_and_balanced_over_categories():
    categories = ["a"] * 10 + ["b"] * 10 + ["c"] * 2
    rows = draw_rows(categories, 9, seed=4)
    assert rows == draw_rows(categories, 9, seed=4) != draw_rows(categories, 9, seed=5)
    counts = {c: sum(categories[i] == c for i in rows) for c in "abc"}
    assert counts["c"] == 2 and abs(counts["a"] - counts["b"]) <= 1
    with pytest.raises(ValueError, match="--items must be between 1 and the split's 22 rows"):
        draw_rows(categories, 23, seed=0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("study_models")
    return save_tiny_checkpoint(root / "model", seed=0), save_tiny_checkpoint(root / "second", seed=1)


def test_prepare_writes_n_items_with_audio_and_two_blind_answers_deterministically(synthetic_data, models, tmp_path):
    stems, dataset, cache = synthetic_data
    folders = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "consent.md").write_text("Our own consent text.")  # written before prepare: kept
        folders.append(prepare_study(str(models[0]), str(dataset), "test", 5, tmp_path / name, seed=3,
                                     second_model=str(models[1]), cache_dir=cache, batch_size=4))
    study = load_study(folders[0])
    assert len(study["items"]) == 5 and study["seed"] == 3 and study["second_model"] == str(models[1])
    assert len({item["error_category"] for item in study["items"]}) == 5  # 5 items over 5 categories
    rows = {(r["track"], r["start_sec"], r["target_stem"], r["error_category"], r["anchor_stem"]): r
            for r in datasets.load_dataset(str(dataset), split="test")}
    for item in study["items"]:
        row = rows[item["track"], item["start_sec"], item["target_stem"], item["error_category"], item["anchor_stem"]]
        assert item["instruction"] == row["instruction"] and item["gain_db"] == row["gain_db"]
        assert [a["system"] for a in item["answers"]] == ["model", "second"]
        assert all(a["text"] and isinstance(a["correct"], bool) for a in item["answers"])
        info = sf.info(str(folders[0] / item["audio"]))
        assert info.subtype == "PCM_16" and info.samplerate == 24000 and info.frames == 240_000
    other = load_study(folders[1])
    assert study["items"] == other["items"]
    assert all((folders[0] / i["audio"]).read_bytes() == (folders[1] / i["audio"]).read_bytes() for i in study["items"])
    assert (folders[0] / "consent.md").read_text() == "Our own consent text."
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        prepare_study(str(models[0]), str(dataset), "test", 5, folders[0], cache_dir=cache)


def test_prepare_writes_the_consent_template_and_never_replaces_a_rated_study(synthetic_data, models, tmp_path):
    stems, dataset, cache = synthetic_data
    out = prepare_study(str(models[0]), str(dataset), "test", 2, tmp_path / "study", reference=True, cache_dir=cache)
    assert (out / "consent.md").read_text() == CONSENT_TEMPLATE
    assert CONSENT_TEMPLATE.splitlines()[0] == "<!-- mixingbuddy: edit this consent text before running the study -->"
    study = load_study(out)
    assert [a["system"] for a in study["items"][0]["answers"]] == ["model", "reference"]
    assert all(item["answers"][1]["correct"] for item in study["items"])  # the reference answers parse as right
    StudyDatabase(out / "ratings.sqlite").submit("ann", "item-000", None, skipped=True)
    with pytest.raises(FileExistsError, match="holds 1 answers"):
        prepare_study(str(models[0]), str(dataset), "test", 2, out, cache_dir=cache, overwrite=True)
    with pytest.raises(ValueError, match="Choose one of --second-model and --reference"):
        prepare_study(str(models[0]), str(dataset), "test", 2, tmp_path / "x", second_model=str(models[1]),
                      reference=True)


# ---------------------------------------------------------------------------------------------
# export and report
# ---------------------------------------------------------------------------------------------


def test_export_round_trips_the_ratings_with_codes_as_given(tmp_path):
    study = write_study(tmp_path / "study")
    database = StudyDatabase(study / "ratings.sqlite")
    database.submit("Ann-01", "item-000", {"model": scores(7, 6, 5), "reference": scores(2)}, preferred="model",
                    comment="crisp")
    database.submit("bob_B", "item-001", None, skipped=True, comment="no sound")
    database.submit("bob_B", "item-002", {"model": scores(3), "reference": scores(4)})
    out = export_ratings(study, tmp_path / "ratings")
    table = datasets.load_dataset(str(out), split="ratings")
    rated = [row for row in table if not row["skipped"]]
    keys = ("participant", "item_id", "system", *CRITERIA, "comment", "preferred", "submitted_at")
    assert [{k: row[k] for k in keys} for row in rated] == database.ratings()
    (skipped,) = [row for row in table if row["skipped"]]
    assert skipped["participant"] == "bob_B" and skipped["comment"] == "no sound" and skipped["system"] is None
    first = rated[0]
    assert (first["error_category"], first["target_stem"], first["anchor_stem"], first["answer"], first["correct"]) \
        == ("quiet", "bass", "drums", "model advice 0", True)
    assert rated[1]["correct"] is False
    assert "Participants: 2; ratings: 4; skipped: 1" in (out / "README.md").read_text()
    with pytest.raises(FileExistsError):
        export_ratings(study, out)
    assert run_study_command("export", str(study), "--out", str(out), "--overwrite") == 0


def test_export_and_report_refuse_a_study_without_answers(tmp_path):
    study = write_study(tmp_path / "study")
    with pytest.raises(FileNotFoundError, match="no participant has answered"):
        export_ratings(study, tmp_path / "ratings")
    StudyDatabase(study / "ratings.sqlite")
    with pytest.raises(ValueError, match="holds no answers yet"):
        study_report(study)


def test_the_report_gives_the_known_means_perfect_agreement_and_the_preference_share(tmp_path, capsys):
    study = write_study(tmp_path / "study")
    database = StudyDatabase(study / "ratings.sqlite")
    # every participant gives each answer the same ratings: the model's answers (parser: correct) 6, 4, 6, 4 on
    # effectiveness, the reference's (parser: wrong) 2, 3, 2, 3; the model is preferred on items 0-2, not on 3
    for code in ("p1", "p2", "p3"):
        for i in range(4):
            ratings = {"model": scores((6, 4)[i % 2], 5, 7), "reference": scores(2 + i % 2)}
            database.submit(code, f"item-{i:03d}", ratings, preferred="model" if i < 3 else "reference")
    assert run_study_command("report", str(study), "--seed", "1", "--resamples", "500") == 0
    printed = capsys.readouterr().out
    report = json.loads((study / "report" / "report.json").read_text())
    assert (study / "report" / "report.md").read_text() in printed
    assert (study / "report" / "report.png").read_bytes().startswith(b"\x89PNG")
    model, reference = report["means"]["model"], report["means"]["reference"]
    assert model["effectiveness"]["mean"] == pytest.approx(5.0) and model["effectiveness"]["n"] == 12
    assert 4.0 <= model["effectiveness"]["low"] <= 5.0 <= model["effectiveness"]["high"] <= 6.0
    assert model["actionability"] == {"mean": 5.0, "low": 5.0, "high": 5.0, "n": 12}  # no spread: no width
    assert reference["effectiveness"]["mean"] == pytest.approx(2.5)
    assert report["by_category"]["quiet"]["model"]["effectiveness"]["mean"] == 6.0
    assert report["by_category"]["quiet"]["model"]["effectiveness"]["low"] is None  # one item: no interval
    assert report["by_target_stem"]["vocals"]["reference"]["effectiveness"]["mean"] == 3.0
    assert report["agreement"]["alpha"]["effectiveness"] == pytest.approx(1.0)
    assert report["agreement"]["alpha"]["conventions"] == pytest.approx(1.0)
    assert report["agreement"]["raters"] == 3 and report["agreement"]["units_rated_twice"] == 8
    preference = report["preference"]
    assert preference["compared"] == 12 and preference["counts"] == {"model": 9, "reference": 3}
    assert preference["model_share"]["mean"] == pytest.approx(0.75)
    assert preference["model_share"]["low"] <= 0.75 <= preference["model_share"]["high"]
    parser = report["parser"]["effectiveness"]
    assert parser["correct"] == {"mean": 5.0, "n": 12} and parser["incorrect"] == {"mean": 2.5, "n": 12}
    effectiveness = [r for i in range(4) for r in ((6, 4)[i % 2], 2 + i % 2)] * 3
    expected = np.corrcoef(effectiveness, [1, 0] * 12)[0, 1]
    assert parser["point_biserial"]["r"] == pytest.approx(expected) and parser["spearman"]["rho"] > 0
    assert report["counts"] == {"participants": 3, "responses": 12, "skipped": 0, "ratings": 24}


def test_the_report_says_when_agreement_cannot_be_computed(tmp_path):
    study = write_study(tmp_path / "study", systems=("model",), correct=(True,))
    database = StudyDatabase(study / "ratings.sqlite")
    database.submit("solo", "item-000", {"model": scores(5)})
    database.submit("solo", "item-001", {"model": scores(3)})
    report = study_report(study, out=tmp_path / "report")
    assert report["agreement"]["alpha"] == dict.fromkeys(CRITERIA)
    assert "too few raters" in report["agreement"]["note"]
    assert report["preference"] is None
    assert report["parser"]["effectiveness"]["point_biserial"] is None  # every answer correct: nothing to relate
    assert (tmp_path / "report" / "report.json").is_file() and not (study / "report").exists()


def test_the_bootstrap_resamples_items_and_is_seeded():
    values, items = [1, 1, 7, 7], ["a", "a", "b", "b"]
    first = bootstrap_mean(values, items, resamples=300, seed=2)
    assert first == bootstrap_mean(values, items, resamples=300, seed=2)
    assert first["mean"] == 4.0 and first["low"] == 1.0 and first["high"] == 7.0  # two items: all-a or all-b resamples
    assert bootstrap_mean([], [], seed=0) == {"mean": None, "low": None, "high": None, "n": 0}
