"""`mixingbuddy evaluate` under `accelerate launch`: two processes on the CPU (gloo) share the batches out and write
byte for byte what one process writes, fresh and resumed."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import write_song

from dataset_builder import build_dataset
from mixingbuddy.evaluation import DECODINGS
from mixingbuddy.models.tiny import save_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
ONE_PROCESS = []
TWO_PROCESSES = ["-m", "accelerate.commands.launch", "--config_file", str(REPO / "configs" / "accelerate" / "ddp.yaml"),
                 "--num_processes", "2"]
# One thread in the one-process run too, as accelerate gives each of the two: the same arithmetic, and the 2 cores.
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}

pytestmark = pytest.mark.slow


def evaluate(root: Path, out: str, launcher: list[str], *extra: str, fails: bool = False) -> subprocess.CompletedProcess:
    """`python [launcher] -m mixingbuddy evaluate` on the first 12 test rows in batches of 4 (3 batches: the second
    turn of two processes has one batch), with every decoding; it must succeed, or with `fails` fail."""
    command = [sys.executable, *launcher, "-m", "mixingbuddy", "evaluate", "--model", str(root / "model"),
               "--dataset", str(root / "dataset"), "--out", str(root / out), "--limit", "12", "--batch-size", "4",
               "--decoding", *DECODINGS, "--cache-dir", str(root / "cache"), *extra]
    done = subprocess.run(command, cwd=root, env=ENV, capture_output=True, text=True, timeout=300)
    assert (done.returncode != 0) == fails, done.stderr[-3000:]
    return done


def outputs(folder: Path) -> dict:
    """Each decoding's predictions.jsonl and metrics.json, parsed."""
    parsed = {}
    for decoding in DECODINGS:
        target = folder if decoding == DECODINGS[0] else folder / decoding
        lines = (target / "predictions.jsonl").read_text().splitlines()
        parsed[decoding] = [json.loads(line) for line in lines], json.loads((target / "metrics.json").read_text())
    return parsed


def folder_bytes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def batches_shown(stderr: str, decoding: str) -> set[int]:
    """The batch counts the progress bar of `decoding` showed."""
    return {int(n) for n in re.findall(rf"evaluate \({decoding}\):[^\n]*?\| (\d+)/", stderr.replace("\r", "\n"))}


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    root = tmp_path_factory.mktemp("processes")
    for seed, (split, name) in enumerate((("train", "A"), ("train", "B"), ("test", "C"))):
        write_song(root / "corpus" / split / name, 24000, 1, seed)
    build_dataset(root / "corpus", root / "dataset", cache_dir=root / "cache")
    save_tiny_checkpoint(root / "model")
    evaluate(root, "one", ONE_PROCESS)
    return root


def test_two_processes_write_what_one_process_writes(one_process):
    root = one_process
    done = evaluate(root, "two", TWO_PROCESSES)
    assert batches_shown(done.stderr, "greedy") == {0, 2, 3}  # two batches a turn: the work was shared
    one, two = outputs(root / "one"), outputs(root / "two")
    for decoding in DECODINGS:
        assert [r["uid"] for r in two[decoding][0]] == [r["uid"] for r in one[decoding][0]]  # the rows' order
        assert two[decoding] == one[decoding], decoding
    assert folder_bytes(root / "two") == folder_bytes(root / "one")  # the plots, tables and marker too
    assert done.stdout.count("Wrote predictions") == 1  # only the main process reports


def test_two_processes_resume_an_interrupted_evaluation_to_the_same_files(one_process):
    """What an evaluation killed during its second decoding leaves: the first decoding whole, one batch and half a
    line of the second, nothing of the third."""
    root = one_process
    shutil.copytree(root / "one", root / "resumed")
    shutil.rmtree(root / "resumed" / DECODINGS[2])
    second = root / "resumed" / DECODINGS[1]
    lines = (second / "predictions.jsonl").read_text().splitlines(keepends=True)
    for path in second.iterdir():
        path.unlink()
    (second / "predictions.jsonl").write_text("".join(lines[:4]) + '{"uid": "half a li')
    evaluate(root, "resumed", TWO_PROCESSES, "--resume")
    assert folder_bytes(root / "resumed") == folder_bytes(root / "one")


def test_a_refusal_ends_both_processes_and_leaves_the_folder_alone(one_process):
    root = one_process
    before = folder_bytes(root / "one")
    done = evaluate(root, "one", TWO_PROCESSES, fails=True)
    assert done.stderr.count("already exists and is not empty (use --overwrite to replace it)") == 2  # one per process
    assert folder_bytes(root / "one") == before
