"""The commands never write onto their inputs, replace only what is of their own kind, keep an earlier result until
the new one can take its place, and refuse bad arguments in one line before any model loads."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import one_line_error, write_song

from dataset_builder import build_dataset
from mixingbuddy.cli import main
from mixingbuddy.critique.windows import too_quiet
from mixingbuddy.files import MARKER, write_marker
from mixingbuddy.models.tiny import save_tiny_checkpoint

RATE = 24000
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(root, data set, stem cache, tiny model): three 21 s songs, one of them in the test split."""
    root = tmp_path_factory.mktemp("command_safety")
    for seed, (split, name) in enumerate((("train", "A"), ("train", "B"), ("test", "C"))):
        write_song(root / "corpus" / split / name, RATE, 1, seed)
    build_dataset(root / "corpus", root / "dataset", cache_dir=root / "cache")
    return root, root / "dataset", root / "cache", save_tiny_checkpoint(root / "model")


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model fails the test: what is refused must be refused before."""

    def load_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    for module in ("mixingbuddy.critique", "mixingbuddy.evaluation.generation", "mixingbuddy.models.export"):
        monkeypatch.setattr(f"{module}.load_model", load_model)


def folder_bytes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def song(path: Path, seconds: float = 12.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.random.default_rng(0).standard_normal((int(seconds * RATE), 2))).astype(np.float32), RATE)
    return path


# 1. critique --plot


def test_the_plot_never_replaces_the_audio_the_model_or_a_foreign_file(built, tmp_path, capsys, no_model_load):
    model = built[3]
    audio = song(tmp_path / "A" / "1s.wav", 1.5)
    before = audio.read_bytes()
    (tmp_path / "notes.png").write_text("not a picture")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "plots").mkdir()
    refused = {
        audio: "overlaps the audio file",
        tmp_path / "A" / "link.png": "overlaps the audio file",  # a link to the audio
        model / "timeline.png": "overlaps the model",
        tmp_path / "A": "overlaps the audio file",  # the folder that holds it
        tmp_path / "plots": "is a folder",
        tmp_path / "folder.png": "is a folder",
        tmp_path / "timeline.txt": "must end in .png",
        tmp_path / "missing" / "timeline.png": "does not exist",
        tmp_path / "notes.png": "already exists (use --overwrite to replace it)",
    }
    (tmp_path / "A" / "link.png").symlink_to(audio)
    for plot, reason in refused.items():
        assert main(["critique", str(audio), "--anchor", "vocals", "--model", str(model), "--plot", str(plot)]) == 2
        one_line_error(capsys, reason)
    assert main(["critique", str(audio), "--anchor", "vocals", "--model", str(model), "--plot",
                 str(tmp_path / "notes.png"), "--overwrite"]) == 2
    one_line_error(capsys, "is not a .png file; --overwrite replaces only those")
    assert audio.read_bytes() == before and (tmp_path / "notes.png").read_text() == "not a picture"


def test_an_earlier_plot_is_replaced_only_with_overwrite(built, tmp_path, capsys):
    audio, plot = song(tmp_path / "song.wav"), tmp_path / "timeline.png"
    command = ["critique", str(audio), "--anchor", "vocals", "--model", str(built[3]), "--plot", str(plot)]
    assert main(command) == 0 and plot.read_bytes().startswith(PNG)
    plot.write_bytes(PNG + b"an older plot")
    assert main(command) == 2
    one_line_error(capsys, "already exists (use --overwrite to replace it)")
    assert main([*command, "--overwrite"]) == 0
    assert plot.read_bytes().startswith(PNG) and plot.read_bytes() != PNG + b"an older plot"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["song.wav", "timeline.png"]  # no temporary left


# 2. evaluate --overwrite, --split, --resume


def evaluate_command(built, out, *extra, model=None):
    _, dataset, cache, tiny = built
    return ["evaluate", "--model", str(model or tiny), "--dataset", str(dataset), "--out", str(out), "--limit", "4",
            "--batch-size", "4", "--cache-dir", str(cache), *extra]


def test_overwrite_keeps_the_earlier_evaluation_until_the_model_has_loaded(built, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(evaluate_command(built, out)) == 0
    before = folder_bytes(out)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    assert main(evaluate_command(built, out, "--overwrite", model=broken)) == 2
    one_line_error(capsys, "Cannot load the model")
    assert folder_bytes(out) == before
    assert main(evaluate_command(built, tmp_path / "new", model=broken)) == 2  # a new folder is not even made
    assert not (tmp_path / "new").exists()


def test_an_unknown_split_is_refused_before_anything_is_written(built, tmp_path, capsys, no_model_load):
    out = tmp_path / "eval"
    assert main(evaluate_command(built, out, "--split", "nope")) == 2
    one_line_error(capsys, "nope")
    assert not out.exists()


def test_a_resume_with_other_model_files_is_refused(built, tmp_path, capsys):
    model, out = tmp_path / "model", tmp_path / "eval"
    shutil.copytree(built[3], model)
    assert main(evaluate_command(built, out, model=model)) == 0
    assert main(evaluate_command(built, out, "--resume", model=model)) == 0  # the same model: resumes
    shutil.rmtree(model)
    save_tiny_checkpoint(model, seed=1)  # another model at the same path
    before = folder_bytes(out)
    assert main(evaluate_command(built, out, "--resume", model=model)) == 2
    one_line_error(capsys, f"The files of model {model} changed since", "--overwrite")
    assert folder_bytes(out) == before


@pytest.mark.parametrize("where", ["model", "data set", "inside the model"])
def test_evaluate_never_writes_onto_its_inputs(built, tmp_path, capsys, no_model_load, where):
    _, dataset, _, model = built
    out = {"model": model, "data set": dataset, "inside the model": model / "eval"}[where]
    before = folder_bytes(model)
    assert main(evaluate_command(built, out, "--overwrite")) == 2
    one_line_error(capsys, f"overlaps the {where.removeprefix('inside the ')}")
    assert folder_bytes(model) == before and not (model / "eval").exists()


# 3. export


def test_export_never_writes_onto_the_model_or_the_evaluation(built, tmp_path, capsys, no_model_load):
    earlier = tmp_path / "X2"
    earlier.mkdir()
    write_marker(earlier, "model")  # an earlier export, replaceable with --overwrite
    model = shutil.copytree(built[3], earlier / "run")
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text("{}")
    (evaluation / "metrics.md").write_text("")
    before = folder_bytes(earlier)
    for out, reason in ((earlier, "overlaps the model"), (model, "overlaps the model"),
                        (model / "merged", "overlaps the model"), (evaluation, "overlaps the evaluation folder"),
                        (tmp_path, "overlaps the model")):
        assert main(["export", "--model", str(model), "--out", str(out), "--eval-dir", str(evaluation),
                     "--overwrite"]) == 2
        one_line_error(capsys, reason)
    assert folder_bytes(earlier) == before and (earlier / MARKER).exists()


@pytest.mark.parametrize("metrics", ["[]", '{"run": []}', "{not json"])
def test_export_refuses_metrics_that_evaluate_did_not_write(built, tmp_path, capsys, no_model_load, metrics):
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text(metrics)
    (evaluation / "metrics.md").write_text("")
    assert main(["export", "--model", str(built[3]), "--out", str(tmp_path / "out"), "--eval-dir",
                 str(evaluation)]) == 2
    one_line_error(capsys, "metrics.json is not")
    assert not (tmp_path / "out").exists()


# 4. Bad arguments: one line, before the model loads


BAD_DEVICES = {"banana": "--device 'banana' is not a device torch knows", "cuda:x": "is not a device torch knows"}
BAD_DEVICES.update({"cuda:99": "there are only"} if torch.cuda.is_available() else {"cuda": "--device cuda: torch"})


@pytest.mark.parametrize("argv, message", [
    *[(["--hop", hop], f"--hop must lie in (0, 10] seconds, so that the windows cover the song; got {got}")
      for hop, got in (("inf", "inf"), ("nan", "nan"), ("0", "0.0"), ("-2", "-2.0"), ("10.5", "10.5"))],
    *[(["--device", device], message) for device, message in BAD_DEVICES.items()],
    (["--stems", "vocals"], "Nothing to compare: among the stems ['vocals'], the only bass, drums or vocals stem is "
                            "the anchor 'vocals'"),
    (["--stems", "other,vocals"], "the only bass, drums or vocals stem is the anchor 'vocals'"),
])
def test_critique_refuses_bad_arguments_in_one_line_before_loading(built, tmp_path, capsys, no_model_load, argv,
                                                                    message):
    assert main(["critique", str(song(tmp_path / "song.wav")), "--anchor", "vocals", "--model", str(built[3]),
                 *argv]) == 2
    one_line_error(capsys, message)


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_evaluate_and_export_refuse_a_bad_device_in_one_line(built, tmp_path, capsys, no_model_load, command):
    argv = (evaluate_command(built, tmp_path / "out") if command == "evaluate"
            else ["export", "--model", str(built[3]), "--out", str(tmp_path / "out")])
    assert main([*argv, "--device", "banana"]) == 2
    one_line_error(capsys, "--device 'banana' is not a device torch knows")
    assert not (tmp_path / "out").exists()


# 5. Verdicts on nothing


def test_a_constant_signal_has_nothing_to_judge(built, tmp_path, capsys):
    assert "too quiet to judge" in too_quiet(np.full(10 * RATE, 0.5, dtype=np.float32), RATE)
    offset = 0.5 + 0.1 * np.random.default_rng(0).standard_normal(10 * RATE)
    assert too_quiet(offset.astype(np.float32), RATE) is None  # an offset does not hide the sound on it
    path = tmp_path / "dc.wav"
    sf.write(path, np.full((25 * RATE, 2), 0.5, dtype=np.float32), RATE)
    assert main(["critique", str(path), "--anchor", "vocals", "--model", str(built[3]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["windows"] == [] and len(report["skipped"]) == 3
    assert report["summary"]["verdict"].startswith("nothing to judge") and not report["summary"]["conclusive"]
