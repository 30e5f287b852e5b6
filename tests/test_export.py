"""The exported folder: a model card whose metadata parses, the evaluation's metrics and plots, loading in a fresh
offline process, and transformers' own any-to-any pipeline on a saved folder."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import write_song

from dataset_builder import build_dataset
from mixingbuddy.cli import main
from mixingbuddy.files import MARKER
from mixingbuddy.models.tiny import save_tiny_checkpoint

CHECK_EXPORT = textwrap.dedent(
    """
    import sys
    import numpy as np, torch
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM, AutoProcessor, pipeline
    folder = sys.argv[1]
    card = ModelCard.load(f"{folder}/README.md")
    assert card.data.license == "apache-2.0" and card.data.pipeline_tag == "any-to-any", card.data
    assert "mixingbuddy" in card.data.tags and card.data.library_name == "transformers"
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    audio = (0.1 * np.random.default_rng(0).standard_normal(240000)).astype(np.float32)
    instruction = processor.build_conversation(anchor="vocals")[0]["content"][1]["text"]
    inputs = processor(text=processor.apply_chat_template(processor.build_conversation("vocals"),
                                                          add_generation_prompt=True), audio=audio, sampling_rate=24000)
    generated = model.generate(**inputs, max_new_tokens=12)
    expected = processor.batch_decode(generated[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)[0]
    pipe = pipeline("any-to-any", model=folder, trust_remote_code=True)
    messages = [{"role": "user", "content": [{"type": "audio", "audio": audio}, {"type": "text", "text": instruction}]}]
    answer = pipe(text=messages, max_new_tokens=12)[0]["generated_text"][-1]
    assert answer["role"] == "assistant" and answer["content"] == expected, (answer, expected)
    print("ok")
    """
)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    for seed, (split, name) in enumerate((("train", "A"), ("train", "B"), ("test", "C"))):
        write_song(root / "corpus" / split / name, 24000, 1, seed)
    build_dataset(root / "corpus", root / "dataset", cache_dir=root / "cache")
    model = save_tiny_checkpoint(root / "model")
    assert main(["evaluate", "--model", str(model), "--dataset", str(root / "dataset"), "--out", str(root / "eval"),
                 "--limit", "8", "--batch-size", "8", "--cache-dir", str(root / "cache")]) == 0
    return root


@pytest.mark.slow
def test_the_export_has_a_card_with_metrics_and_loads_offline_and_in_the_pipeline(evaluated, tmp_path):
    out = tmp_path / "export"
    assert main(["export", "--model", str(evaluated / "model"), "--out", str(out), "--eval-dir",
                 str(evaluated / "eval")]) == 0
    card = (out / "README.md").read_text()
    assert "## Evaluation" in card and "| N | Joint |" in card and "![confusion_advice](confusion_advice.png)" in card
    assert "## Intended use and limitations" in card and "trust_remote_code=True" in card
    assert (out / "confusion_advice.png").exists() and (out / MARKER).exists()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CHECK_EXPORT, str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_export_refuses_a_bad_eval_dir_and_a_reused_out(evaluated, tmp_path, capsys):
    assert main(["export", "--model", str(evaluated / "model"), "--out", str(tmp_path / "e"), "--eval-dir",
                 str(tmp_path)]) == 2
    assert "holds no metrics.json" in capsys.readouterr().err
    assert main(["export", "--model", str(evaluated / "model"), "--out", str(evaluated / "corpus")]) == 2
    assert "already exists and is not empty" in capsys.readouterr().err
