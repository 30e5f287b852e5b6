"""train_sft.py's data safety: it writes only into a new or empty folder, its own run's folder when resuming, or with
--overwrite_output_dir an earlier training folder, never onto its inputs; a failed run leaves no folder behind;
resuming a run that evaluates is bit-identical; and bad arguments or damaged checkpoints are one line, exit 2."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from mixingbuddy.files import MARKER, read_marker, write_marker
from mixingbuddy.training.run import run

REPO = Path(__file__).resolve().parents[1]
EVALUATING = ("--eval_strategy", "steps", "--eval_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
              "--save_total_limit", "3", "--max_steps", "6", "--per_device_eval_batch_size", "8",
              "--learning_rate", "0.3")  # a rate at which the eval loss rises at step 4: the dropout is lowered


def argv(synthetic_data, output_dir, *extra) -> list[str]:
    stems, dataset, cache = synthetic_data
    return ["--config", str(REPO / "configs" / "tiny.yaml"), "--dataset_name", str(dataset), "--stems_dir", str(stems),
            "--stem_cache_dir", str(cache), "--output_dir", str(output_dir), "--feature_statistics_clips", "16",
            "--max_steps", "2", "--per_device_train_batch_size", "2", "--eval_strategy", "no", "--save_strategy", "no",
            "--disable_tqdm", "true", *extra]


def refused(capsys, args, fragment):
    capsys.readouterr()  # what earlier runs printed
    with pytest.raises(SystemExit) as exit_info:
        run(args)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("train_sft.py: error:") and fragment in err[0], err


def contents(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


class FailAtStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("the run failed")


def test_an_existing_folder_it_did_not_write_is_refused_even_with_overwrite(tmp_path, synthetic_data, capsys):
    user = tmp_path / "U"
    user.mkdir()
    (user / "README.md").write_text("notes\n")
    (user / "config.json").write_text("{}\n")
    refused(capsys, argv(synthetic_data, user), "already exists and is not empty")
    refused(capsys, argv(synthetic_data, user, "--overwrite_output_dir", "true"), f"no {MARKER} says training")
    write_marker(user, "dataset")
    refused(capsys, argv(synthetic_data, user, "--overwrite_output_dir", "true"), "not written by train_sft.py")
    assert (user / "README.md").read_text() == "notes\n" and (user / "config.json").read_text() == "{}\n"


def test_the_inputs_and_the_current_folder_are_never_written(tmp_path, synthetic_data, capsys, monkeypatch):
    stems, dataset, _ = synthetic_data
    before = contents(dataset)
    for output_dir, fragment in ((dataset, "overlaps the data set folder"), (dataset / "run", "overlaps the data set"),
                                 (stems, "overlaps the stems folder"), (dataset.parent, "overlaps the")):
        for extra in ((), ("--overwrite_output_dir", "true")):
            refused(capsys, argv(synthetic_data, output_dir, *extra), fragment)
    monkeypatch.chdir(tmp_path)
    refused(capsys, argv(synthetic_data, ".", "--overwrite_output_dir", "true"), "is the current folder or holds it")
    assert contents(dataset) == before and not (dataset / "run").exists()


def test_overwrite_replaces_an_earlier_training_run_whole(tmp_path, synthetic_data, capsys):
    out = tmp_path / "out"
    run(argv(synthetic_data, out))
    assert read_marker(out)["kind"] == "training" and (out / "model.safetensors").is_file()
    refused(capsys, argv(synthetic_data, out), "--overwrite_output_dir")
    (out / "stray.txt").write_text("from the earlier run")
    run(argv(synthetic_data, out, "--overwrite_output_dir", "true"))
    assert not (out / "stray.txt").exists() and (out / "model.safetensors").is_file()
    assert read_marker(out)["kind"] == "training" and not list(tmp_path.glob(".out.*"))


def test_a_failed_run_leaves_the_folders_as_they_were(tmp_path, synthetic_data):
    """A new folder (and the parents it needed) goes, an empty one stays empty, an earlier run replaced with
    --overwrite_output_dir comes back; a run that failed after a checkpoint keeps its folder, to resume from."""
    def fails(output_dir, *extra, step=1):
        with pytest.raises(RuntimeError, match="the run failed"):
            run(argv(synthetic_data, output_dir, *extra), callbacks=[FailAtStep(step)])

    fails(tmp_path / "new" / "deeper" / "out")
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    fails(empty)
    assert empty.is_dir() and not any(empty.iterdir())
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    write_marker(earlier, "training")
    (earlier / "model.safetensors").write_bytes(b"the earlier run's")
    kept = contents(earlier)
    fails(earlier, "--overwrite_output_dir", "true")
    assert contents(earlier) == kept and not list(tmp_path.glob(".earlier.*"))
    resumable = tmp_path / "resumable"
    fails(resumable, "--save_strategy", "steps", "--save_steps", "1", step=2)
    assert (resumable / "checkpoint-1" / "trainer_state.json").is_file()


@pytest.fixture(scope="module")
def evaluating_run(synthetic_data, tmp_path_factory):
    """The folder of an uninterrupted 6-step run that evaluates and saves every 2 steps."""
    out = tmp_path_factory.mktemp("evaluating") / "full"
    run(argv(synthetic_data, out, *EVALUATING))
    return out


def test_resuming_a_run_that_evaluates_is_bit_identical(tmp_path, synthetic_data, evaluating_run):
    """The projector-dropout schedule lowered the dropout at step 4; resuming from checkpoint-4 in the run's own
    folder (a copy, its final model removed) must keep that decision and end with exactly the same weights."""
    saved = json.loads((evaluating_run / "checkpoint-4" / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"]["ProjectorDropoutSchedule"]["attributes"]["lowered"]
    copy = tmp_path / "copy"
    shutil.copytree(evaluating_run, copy)
    (copy / "model.safetensors").unlink()
    trainer = run(argv(synthetic_data, copy, *EVALUATING, "--resume_from_checkpoint", str(copy / "checkpoint-4")))
    assert {round(m.p, 6) for m in trainer.model.model.projector.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}
    resumed, full = load_file(copy / "model.safetensors"), load_file(evaluating_run / "model.safetensors")
    assert resumed.keys() == full.keys()
    assert [name for name in full if not torch.equal(resumed[name], full[name])] == []


def test_bad_arguments_and_damaged_checkpoints_are_one_line(tmp_path, synthetic_data, evaluating_run, capsys):
    out = tmp_path / "out"
    refused(capsys, argv(synthetic_data, out, "--per_device_train_batch_size", "0"),
            "--per_device_train_batch_size is 0; it must be 1 or more")
    refused(capsys, argv(synthetic_data, out, "--language_model", "x"), "not used by the HfArgumentParser")
    for damaged, cut, fragment in (("model.safetensors", 0.5, "model.safetensors cannot be read"),
                                   ("optimizer.pt", 0.0, "optimizer.pt cannot be read")):
        checkpoint = tmp_path / damaged / "checkpoint-2"
        shutil.copytree(evaluating_run / "checkpoint-2", checkpoint)
        data = (checkpoint / damaged).read_bytes()
        (checkpoint / damaged).write_bytes(data[: int(len(data) * cut)])
        refused(capsys, argv(synthetic_data, out, "--resume_from_checkpoint", str(checkpoint)), fragment)
    assert not out.exists()
