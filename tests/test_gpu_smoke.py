"""bench/gpu_smoke.py in its tiny CPU form, so that the GPU check cannot rot between the sessions that have a GPU."""

import json
import runpy
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # trains twice, decodes and critiques: about a minute
BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_smoke.py"


def test_the_smoke_check_passes_on_a_tiny_model_on_the_cpu(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", [str(BENCH), "--tiny", "--steps", "2", "--work-dir", str(tmp_path)])
    try:
        runpy.run_path(str(BENCH), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr().out  # the Trainer's log lines, then the summary
    summary = json.loads(out[out.index('{\n  "device"') :])
    assert code == 0 and summary["ok"], json.dumps(summary, indent=2)
    for pooling, tokens in ((1, 749), (10, 75)):
        training = summary[f"training_pooling_{pooling}"]
        assert training["audio_tokens_per_sample"] == tokens and training["losses_finite"]
        assert training["placement"]["lora_wrapper"] == "peft.tuners.lora.bnb.Linear4bit"
    assert summary["save_and_load"]["adapter_max_logit_difference"] < 1e-3
    assert summary["merged_export"]["merged_bf16_max_logit_difference"] < 0.5
    assert {"convert_pooling_1", "train_pooling_10", "save_and_load", "critique"} <= set(summary["stages"])
    assert summary["checkpointing"]["max_gradient_difference"] < 1e-2
    assert {d: summary["decoding"][d]["answers"] for d in ("greedy", "constrained", "ranked")} == dict.fromkeys(
        ("greedy", "constrained", "ranked"), 32
    )
