"""Semantic similarity of answers to the references with a tiny random encoder: the pooling and batching, the means
beside the accuracies, and `mixingbuddy evaluate --semantic-model`. A random encoder's similarities mean nothing."""

import json

import pytest
from helpers import one_line_error, write_song

from dataset_builder import build_dataset
from mixingbuddy.cli import main
from mixingbuddy.evaluation.report import metrics_markdown
from mixingbuddy.evaluation.scoring import prediction_record, score_predictions
from mixingbuddy.evaluation.semantic import SentenceEmbedder, add_semantic_similarity
from mixingbuddy.hub.vocabulary_mixingbuddy import format_instruction, format_response
from mixingbuddy.models.tiny import save_tiny_checkpoint, save_tiny_encoder

TEXTS = ["The bass is too quiet: raise it by 3 to 6 dB.", "The mix is balanced.", "Turn the drums down a lot",
         "vocals"]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return save_tiny_encoder(tmp_path_factory.mktemp("encoder") / "tiny-encoder")


@pytest.fixture(scope="module")
def embedder(encoder_dir):
    return SentenceEmbedder(str(encoder_dir), device="cpu")


def test_a_text_is_fully_similar_to_itself_and_embeddings_are_unit_vectors(embedder):
    assert embedder.similarities(TEXTS, TEXTS) == pytest.approx([1.0] * len(TEXTS), abs=1e-5)
    assert embedder.embed(TEXTS).norm(dim=-1).tolist() == pytest.approx([1.0] * len(TEXTS), abs=1e-5)
    assert embedder.similarities(TEXTS[:1], TEXTS[1:2])[0] < 0.9999


def test_batches_give_what_one_text_at_a_time_gives(embedder):
    references = TEXTS[::-1]
    assert embedder.similarities(TEXTS, references, batch_size=3) == pytest.approx(
        embedder.similarities(TEXTS, references, batch_size=1), abs=1e-5
    )


def record(category, target, answer, similarity=None):
    row = {"uid": f"{category}/{target}", "instruction": format_instruction("vocals"), "target_stem": target,
           "error_category": category, "anchor_stem": "vocals", "response": format_response(category, target)}
    made = prediction_record(row, answer)
    return made if similarity is None else {**made, "semantic_similarity": similarity}


def test_the_means_per_group_sit_beside_the_accuracies():
    records = [record("quiet", "bass", format_response("quiet", "bass"), 0.9),
               record("quiet", "drums", format_response("loud", "drums"), 0.5),
               record("loud", "bass", "no idea", 0.1)]
    metrics = score_predictions(records)
    assert metrics["overall"]["semantic_similarity"] == pytest.approx(0.5)
    assert metrics["by_category"]["quiet"]["semantic_similarity"] == pytest.approx(0.7)
    assert metrics["by_category"]["loud"]["semantic_similarity"] == pytest.approx(0.1)
    assert metrics["by_category"]["no_error"] == {**metrics["by_category"]["no_error"], "n": 0,
                                                  "semantic_similarity": 0.0}
    assert metrics["by_stem"]["bass"]["semantic_similarity"] == pytest.approx(0.5)
    table = metrics_markdown(metrics)
    assert "| Category | N | Joint | Stem | Direction | Magnitude | Semantic similarity |" in table
    assert "| quiet | 2 | 50.00 % | 100.00 % | 50.00 % | 100.00 % | 0.700 |" in table
    assert "| no error | 0 | — | — | — | — | — |" in table

    unscored = score_predictions([{k: v for k, v in r.items() if k != "semantic_similarity"} for r in records])
    assert "semantic_similarity" not in unscored["overall"] and "Semantic" not in metrics_markdown(unscored)


def test_every_record_gets_its_answers_similarity_to_its_reference(embedder):
    records = [record("quiet", "bass", format_response("quiet", "bass")), record("loud", "drums", "no idea")]
    scored = add_semantic_similarity(records, embedder, batch_size=1)
    assert scored[0]["semantic_similarity"] == pytest.approx(1.0, abs=1e-5)  # the answer is the reference
    assert scored[1]["semantic_similarity"] == pytest.approx(embedder.similarities(["no idea"],
                                                                                   [records[1]["response"]])[0])
    assert [{k: v for k, v in s.items() if k != "semantic_similarity"} for s in scored] == records


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(data set, stem cache, tiny model) of a corpus of two train songs and one test song."""
    root = tmp_path_factory.mktemp("semantic")
    for seed, (split, name) in enumerate((("train", "A"), ("train", "B"), ("test", "C"))):
        write_song(root / "corpus" / split / name, 24000, 1, seed)
    build_dataset(root / "corpus", root / "dataset", cache_dir=root / "cache")
    return root / "dataset", root / "cache", save_tiny_checkpoint(root / "model")


def evaluate_command(built, out, *extra):
    dataset, cache, model = built
    return ["evaluate", "--model", str(model), "--dataset", str(dataset), "--out", str(out), "--limit", "4",
            "--batch-size", "2", "--cache-dir", str(cache), "--device", "cpu", *extra]


def test_evaluate_with_a_semantic_model_adds_the_similarities(built, encoder_dir, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(evaluate_command(built, out, "--semantic-model", str(encoder_dir))) == 0
    assert ", semantic similarity " in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    embedder = SentenceEmbedder(str(encoder_dir), device="cpu")
    expected = embedder.similarities([r["generated"] for r in records], [r["response"] for r in records])
    assert [r["semantic_similarity"] for r in records] == pytest.approx(expected, abs=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["overall"]["semantic_similarity"] == pytest.approx(sum(expected) / len(expected))
    assert all("semantic_similarity" in group for group in metrics["by_category"].values())
    assert metrics["run"]["semantic_model"] == str(encoder_dir)
    assert "Semantic similarity" in (out / "metrics.md").read_text()


def test_a_finished_evaluation_resumed_with_a_semantic_model_is_scored_without_generating_again(
    built, encoder_dir, tmp_path, monkeypatch
):
    from mixingbuddy.evaluation import generation

    out = tmp_path / "eval"
    assert main(evaluate_command(built, out)) == 0
    before = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    monkeypatch.setattr(generation, "generate_advice", lambda *a, **k: pytest.fail("generated again"))
    assert main(evaluate_command(built, out, "--resume", "--semantic-model", str(encoder_dir))) == 0
    after = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if k != "semantic_similarity"} for r in after] == before
    assert all("semantic_similarity" in r for r in after)
    assert "semantic_similarity" in json.loads((out / "metrics.json").read_text())["overall"]


def test_evaluate_refuses_a_missing_semantic_model_before_anything_loads(built, tmp_path, capsys):
    assert main(evaluate_command(built, tmp_path / "eval", "--semantic-model", str(tmp_path / "nowhere"))) == 2
    one_line_error(capsys, "nowhere")
    assert not (tmp_path / "eval").exists()
