"""Nothing lost, nothing run that the user did not ask for: overwrite rules, local-or-Hub, the data set's record of its
audio, short tracks, checks before any model loads, evaluation that survives an interruption, no litter."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import one_line_error, write_song

from dataset_builder import build_dataset
from dataset_builder.examples import expanded_rows
from mixingbuddy.cli import main
from mixingbuddy.files import MARKER, atomic_folder, write_file_atomic
from mixingbuddy.models.tiny import save_tiny_checkpoint
from mixingbuddy.training.run import run

RATE = 24000
REPO = Path(__file__).resolve().parents[1]


def write_corpus(root: Path, seconds=(21.0, 21.0, 21.0)) -> Path:
    """Two train songs and one test song, mono at 24 kHz."""
    for seed, (split, name) in enumerate((("train", "Song A"), ("train", "Song B"), ("test", "Song C"))):
        write_song(root / split / name, RATE, 1, seed, seconds=seconds[seed])
    return root


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(corpus, data set, stem cache, tiny model) made once; tests that change the corpus copy it first."""
    root = tmp_path_factory.mktemp("safety")
    corpus = write_corpus(root / "corpus")
    build_dataset(corpus, root / "dataset", cache_dir=root / "cache")
    model = save_tiny_checkpoint(root / "model")
    return corpus, root / "dataset", root / "cache", model


# 1. Overwrite only what the project wrote.


def test_overwrite_never_deletes_the_stems_the_current_folder_or_a_foreign_folder(built, tmp_path, capsys, monkeypatch):
    corpus, dataset, cache, _ = built
    stems = tmp_path / "stems"
    shutil.copytree(corpus, stems)
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    for out, reason in ((stems, "overlaps the stems folder"), (stems / "train", "overlaps the stems folder"),
                        (tmp_path, "current folder"), (Path("."), "current folder"),
                        (foreign, "was not written by MixingBuddy")):
        command = ["build-dataset", "--stems", str(stems), "--out", str(out), "--overwrite", "--cache-dir", str(cache)]
        assert main(command) == 2
        one_line_error(capsys, reason)
    assert (foreign / "keep.txt").read_text() == "mine" and len(list(stems.rglob("*.wav"))) == 12

    copy = tmp_path / "dataset"
    shutil.copytree(dataset, copy)
    assert main(["build-dataset", "--stems", str(stems), "--out", str(copy), "--cache-dir", str(cache)]) == 2
    one_line_error(capsys, "already exists and is not empty (use --overwrite to replace it)")
    assert main(["build-dataset", "--stems", str(stems), "--out", str(copy), "--overwrite", "--cache-dir", str(cache)]) == 0
    assert json.loads((copy / MARKER).read_text())["kind"] == "dataset"


# 2. One rule for "local or Hub".


@pytest.mark.parametrize("model", ["./missing", "runs/paper/final", "missing", "/tmp/no/such/model"])
def test_a_missing_local_model_fails_at_once(built, model, capsys):
    _, dataset, _, _ = built
    started = time.monotonic()
    assert main(["evaluate", "--model", model, "--dataset", str(dataset), "--out", "unused"]) == 2
    one_line_error(capsys, f"Model folder {model} does not exist")
    assert time.monotonic() - started < 10


def test_the_default_model_is_never_looked_up_on_the_hub(tmp_path, capsys, monkeypatch):
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((2 * RATE, 2), dtype=np.float32), RATE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("huggingface_hub.model_info", lambda *a, **k: pytest.fail("the Hub was asked"))
    assert main(["critique", str(song), "--anchor", "vocals"]) == 2
    one_line_error(capsys, "Model folder demo_out/model does not exist (`mixingbuddy demo` makes it)")


@pytest.mark.slow
def test_an_unreachable_hub_id_is_one_line_within_seconds(tmp_path):
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((2 * RATE, 2), dtype=np.float32), RATE)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "mixingbuddy", "critique", str(song), "--anchor", "vocals", "--model", "someone/model"]
    started = time.monotonic()
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and time.monotonic() - started < 30
    assert done.stderr.count("\n") == 1 and "someone/model is neither a local folder nor a model on the Hub" in done.stderr
    assert "./someone/model" in done.stderr


# 3. The data set knows its audio.


def changed_corpus(built, tmp_path):
    corpus, dataset, _, _ = built
    stems, copy = tmp_path / "stems", tmp_path / "dataset"
    shutil.copytree(corpus, stems)
    build_dataset(stems, copy, cache_dir=tmp_path / "cache")
    return stems, copy


def silence(path: Path) -> None:
    audio, rate = sf.read(path)
    sf.write(path, np.zeros_like(audio), rate, subtype="PCM_16")


@pytest.mark.parametrize("change", ["silenced", "shortened"])
def test_changed_stems_stop_training_and_evaluation_with_one_line(built, tmp_path, capsys, change):
    stems, dataset = changed_corpus(built, tmp_path)
    capsys.readouterr()
    assert json.loads((dataset / MARKER).read_text())["stems_dir"] == str(stems.resolve())
    target = stems / "test" / "Song C" / "drums.wav"
    if change == "silenced":
        silence(target)
    else:
        for stem in ("bass", "drums", "other", "vocals"):
            audio, rate = sf.read(stems / "test" / "Song C" / f"{stem}.wav")
            sf.write(stems / "test" / "Song C" / f"{stem}.wav", audio[: 5 * rate], rate, subtype="PCM_16")
    assert main(["evaluate", "--model", str(built[3]), "--dataset", str(dataset), "--out", str(tmp_path / "e")]) == 2
    one_line_error(capsys, "'Song C' changed or went missing")
    with pytest.raises(SystemExit) as exit_:
        run(["--config", str(REPO / "configs" / "tiny.yaml"), "--dataset_name", str(dataset),
             "--output_dir", str(tmp_path / "run"), "--eval_strategy", "no"])
    assert exit_.value.code == 2
    one_line_error(capsys, "train_sft.py: error:", "'Song C' changed or went missing")
    assert not (tmp_path / "e").exists() and not (tmp_path / "run").exists()


def test_a_copied_corpus_keeps_its_fingerprint(built, tmp_path):
    from dataset_builder.provenance import check_audio

    corpus, dataset, _, _ = built
    copy = tmp_path / "elsewhere"
    shutil.copytree(corpus, copy, copy_function=shutil.copy)  # new modification times
    assert check_audio(dataset, copy) == copy
    assert check_audio(dataset) == corpus.resolve()


# 4. Short and silent material is skipped, not fatal.


def test_tracks_shorter_than_a_chunk_are_skipped_and_counted(tmp_path, capsys):
    corpus = write_corpus(tmp_path / "corpus", seconds=(21.0, 4.0, 21.0))
    stats = build_dataset(corpus, tmp_path / "dataset", cache_dir=tmp_path / "cache")
    capsys.readouterr()
    short = sum(split["gating"]["short_tracks"] for split in stats["splits"].values())
    assert short == 1 and "tracks shorter than a chunk" in (tmp_path / "dataset" / "README.md").read_text()

    nothing = write_corpus(tmp_path / "short", seconds=(4.0, 4.0, 4.0))
    assert main(["build-dataset", "--stems", str(nothing), "--out", str(tmp_path / "none")]) == 2
    one_line_error(capsys, "No chunk of", "passes the gating", "short_tracks 1")
    assert not (tmp_path / "none").exists()


# 5. Validate before building.


def run_fails(capsys, *argv, fragment):
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        run(["--config", str(REPO / "configs" / "tiny.yaml"), *argv])
    assert exit_.value.code == 2 and time.monotonic() - started < 30  # before any model is built
    one_line_error(capsys, "train_sft.py: error:", fragment)


def test_train_sft_checks_its_inputs_before_building_a_model(built, tmp_path, capsys):
    corpus, dataset, _, _ = built
    only_train = tmp_path / "only_train"
    (only_train / "data").mkdir(parents=True)
    shutil.copy(dataset / "data" / "train-00000-of-00001.parquet", only_train / "data")
    run_fails(capsys, "--dataset_name", str(only_train), "--stems_dir", str(corpus), "--output_dir",
              str(tmp_path / "a"), fragment="has no validation split (it has train)")
    run_fails(capsys, "--dataset_name", str(dataset), "--stems_dir", str(tmp_path / "nowhere"), "--output_dir",
              str(tmp_path / "b"), fragment="nowhere does not exist")
    half = tmp_path / "c" / "checkpoint-3"
    half.mkdir(parents=True)
    (half / "trainer_state.json").write_text("{}")
    run_fails(capsys, "--dataset_name", str(dataset), "--output_dir", str(tmp_path / "c"),
              "--resume_from_checkpoint", str(half), fragment="checkpoint-3 is missing or incomplete")
    run_fails(capsys, "--dataset_name", str(dataset), "--output_dir", str(corpus / "train"),
              fragment="overlaps the stems folder")


# 6. Evaluation that survives.


@pytest.mark.parametrize("flag, value", [("--limit", "0"), ("--limit", "-3"), ("--batch-size", "0")])
def test_evaluate_refuses_empty_work_before_loading(built, tmp_path, capsys, flag, value):
    _, dataset, _, model = built
    assert main(["evaluate", "--model", str(model), "--dataset", str(dataset), "--out", str(tmp_path / "e"),
                 flag, value]) == 2
    one_line_error(capsys, "must be at least 1")
    assert not (tmp_path / "e").exists()


def evaluate_command(built, out, *extra):
    _, dataset, cache, model = built
    return ["evaluate", "--model", str(model), "--dataset", str(dataset), "--out", str(out), "--limit", "10",
            "--batch-size", "4", "--decoding", "greedy", "ranked", "--cache-dir", str(cache), *extra]


def folder_bytes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_an_interrupted_evaluation_resumes_to_the_same_files(built, tmp_path, capsys, monkeypatch):
    from mixingbuddy.evaluation import generation

    assert main(evaluate_command(built, tmp_path / "whole")) == 0
    metrics = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert metrics["run"] == {"model": str(built[3]), "dataset": str(built[1]), "split": "test", "decoding": "greedy",
                              "rows": 10, "version": "0.1.0"}

    calls, generate = [], generation.generate_advice

    def killed_after_four_batches(*args, **kwargs):
        calls.append(1)
        if len(calls) > 4:  # greedy done (3 batches), one batch of ranked
            raise KeyboardInterrupt
        return generate(*args, **kwargs)

    monkeypatch.setattr(generation, "generate_advice", killed_after_four_batches)
    with pytest.raises(KeyboardInterrupt):
        main(evaluate_command(built, tmp_path / "resumed"))
    monkeypatch.setattr(generation, "generate_advice", generate)
    ranked = tmp_path / "resumed" / "ranked" / "predictions.jsonl"
    assert len(ranked.read_text().splitlines()) == 4
    with open(ranked, "a") as file:
        file.write('{"uid": "half a li')  # the kill came in the middle of a line
    assert main(evaluate_command(built, tmp_path / "resumed", "--resume")) == 0
    assert folder_bytes(tmp_path / "resumed") == folder_bytes(tmp_path / "whole")

    assert main(evaluate_command(built, tmp_path / "whole")) == 2
    one_line_error(capsys, "already exists and is not empty (use --overwrite to replace it)")
    (tmp_path / "whole" / "stale").mkdir()
    assert main(evaluate_command(built, tmp_path / "whole", "--overwrite")) == 0
    assert not (tmp_path / "whole" / "stale").exists()


def test_evaluate_refuses_a_resume_of_other_arguments_and_a_bad_out(built, tmp_path, capsys):
    assert main(evaluate_command(built, tmp_path / "e", "--resume")) == 2
    one_line_error(capsys, "holds no evaluation with these arguments to resume")
    (tmp_path / "file").write_text("x")
    assert main(evaluate_command(built, tmp_path / "file")) == 2
    one_line_error(capsys, "already exists and is not empty")


# 7. No litter.


def test_dead_processes_temporaries_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid, live_pid = int(dead.stdout), os.getppid()
    litter = [tmp_path / f".out.{dead_pid}.abc.incomplete", tmp_path / f".cache.npy.{dead_pid}.abc.tmp"]
    kept = [tmp_path / f".out.{live_pid}.abc.incomplete", tmp_path / f".cache.npy.{live_pid}.abc.tmp"]
    for path in (litter[0], kept[0]):
        path.mkdir()
    for path in (litter[1], kept[1]):
        path.write_text("half")
    with atomic_folder(tmp_path / "out") as staging:
        (staging / "a").write_text("a")
    write_file_atomic(tmp_path / "cache.npy", b"data")
    assert not any(path.exists() for path in litter) and all(path.exists() for path in kept)


# 8. Small things.


def test_validation_fraction_and_anchor_are_checked(built, tmp_path, capsys):
    corpus, _, cache, model = built
    assert main(["build-dataset", "--stems", str(corpus), "--out", str(tmp_path / "d"), "--validation-fraction", "1"]) == 2
    one_line_error(capsys, "validation_fraction must lie in [0, 1), got 1.0")
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((2 * RATE, 2), dtype=np.float32), RATE)
    assert main(["critique", str(song), "--anchor", "other", "--model", str(model)]) == 2
    one_line_error(capsys, "The anchor must be one of ['bass', 'drums', 'vocals'], got 'other'")


def test_stems_cannot_swallow_the_audio_path(built, tmp_path, capsys):
    song = tmp_path / "song.wav"
    sf.write(song, 0.1 * np.random.default_rng(0).standard_normal((12 * RATE, 2)).astype(np.float32), RATE)
    assert main(["critique", "--stems", "bass,drums,vocals", str(song), "--anchor", "vocals", "--model",
                 str(built[3]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["stems"] == ["bass", "drums", "vocals"] and report["file"] == str(song)


@pytest.mark.slow
def test_evaluate_does_not_print_library_noise(built, tmp_path):
    command = [sys.executable, "-m", "mixingbuddy", *evaluate_command(built, tmp_path / "e")]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for noise in ("gemm_4bit_forward", "Loading weights", "Writing model shards", "FutureWarning"):
        assert noise not in done.stderr, noise


def test_uids_stay_unambiguous_whatever_the_track_name():
    from urllib.parse import unquote

    for track in ("Plain - Song", "Odd | Name", "100% | 0001 | bass"):
        for row in expanded_rows(0, track, 3, 10.0):
            fields = row["uid"].split("|")
            assert len(fields) == 5 and unquote(fields[0]) == track
            assert fields[1:] == ["0003", row["target_stem"], row["anchor_stem"], row["error_category"]]


# 9. The README's promises.


def test_a_demo_folder_is_reused_only_with_the_same_settings(tmp_path, capsys):
    from mixingbuddy.demo import prepare_demo_folder

    settings = {"seed": 0, "songs": 6, "seconds": 20.0, "level_spread_db": 1.5}
    out = prepare_demo_folder(tmp_path / "demo", settings)
    (out / "corpus").mkdir()
    assert prepare_demo_folder(out, settings) == out and (out / "corpus").exists()
    assert main(["demo", "--out", str(out), "--songs", "7"]) == 2
    one_line_error(capsys, "holds a demo made with seed 0, songs 6, seconds 20.0", "--overwrite")
    prepare_demo_folder(out, {**settings, "songs": 7}, overwrite=True)
    assert not (out / "corpus").exists()


@pytest.mark.slow
def test_push_to_hub_offline_is_one_line_that_says_the_folder_was_written(built, tmp_path):
    corpus, _, cache, _ = built
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "mixingbuddy", "build-dataset", "--stems", str(corpus), "--out",
               str(tmp_path / "d"), "--cache-dir", str(cache), "--push-to-hub", "someone/data"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert f"Wrote {tmp_path / 'd'}, but could not push it to the Hub dataset someone/data" in last
    assert (tmp_path / "d" / "data" / "test-00000-of-00001.parquet").exists()


def test_corrupt_weights_are_one_line(built, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(built[3], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    song = tmp_path / "song.wav"
    sf.write(song, np.zeros((2 * RATE, 2), dtype=np.float32), RATE)
    assert main(["critique", str(song), "--anchor", "vocals", "--model", str(broken)]) == 2
    one_line_error(capsys, f"Cannot load the model in {broken}")


def test_a_new_result_replaces_an_earlier_one_of_another_kind(built, tmp_path):
    from mixingbuddy.models.checkpoints import ADAPTER_FILES, load_model, save_hub_folder
    from mixingbuddy.models.tiny import build_tiny_model_and_processor

    out = tmp_path / "run"
    out.mkdir()
    for stale in ADAPTER_FILES:
        (out / stale).write_text("{}")  # what an earlier QLoRA run left
    (out / "checkpoint-3").mkdir()
    save_hub_folder(*build_tiny_model_and_processor(), out, overwrite=True)
    assert not any((out / stale).exists() for stale in ADAPTER_FILES) and (out / "checkpoint-3").exists()
    model, _ = load_model(str(out), device="cpu")
    assert type(model).__name__ == "MixingBuddyForConditionalGeneration"


def test_a_data_set_given_as_a_missing_folder_or_with_a_tilde(built, tmp_path, monkeypatch):
    from dataset_builder.provenance import check_audio

    corpus, dataset, _, _ = built
    with pytest.raises(FileNotFoundError, match="Data set folder ./nowhere does not exist"):
        check_audio("./nowhere")
    with pytest.raises(ValueError, match="is not a local folder; as a Hub data set it records no stems folder"):
        check_audio("someone/data")
    monkeypatch.setenv("HOME", str(dataset.parent))
    assert check_audio(f"~/{dataset.name}") == corpus.resolve()
