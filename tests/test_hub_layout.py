"""Hub layout: a saved folder loads in a fresh offline process — without this repository, its package or its site
hooks — through the Auto classes with identical outputs; the plain names of the Hub files alias one set of modules;
PEFT saves only what was trained; a merged export loads without peft; real components load from local folders."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import sysconfig
from helpers import make_clips, make_prompts, write_component_folders
from safetensors.torch import load_file

from mixingbuddy.models.checkpoints import save_hub_folder
from mixingbuddy.models.components import apply_lora, load_components, paper_model_args
from mixingbuddy.models.tiny import build_tiny_model_and_processor
from modeling_mixingbuddy import MixingBuddyForConditionalGeneration

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter started with -S (no site hooks: neither the editable install nor mixingbuddy-hub.pth)
# in a folder outside the checkout, offline, with the installed libraries on sys.path but not the repository: loads
# FOLDER with the Auto classes and writes logits and greedy generations to OUT.
LOAD_SCRIPT = textwrap.dedent(
    """
    import importlib.util, sys
    sys.path.append(sys.argv.pop())  # site-packages, without running its .pth files
    import numpy as np, torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoProcessor
    folder, inputs_path, out = sys.argv[1:4]
    if len(sys.argv) > 4:
        sys.modules["peft"] = None  # prove the folder needs no peft
    for name in ("mixingbuddy", "dataset_builder", "modeling_mixingbuddy", "vocabulary_mixingbuddy"):
        assert importlib.util.find_spec(name) is None, name  # only the folder's own files can be used
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    data = np.load(inputs_path)
    prompts = [str(p) for p in data["prompts"]]
    inputs = processor(text=prompts, audio=list(data["clips"]), sampling_rate=24000)
    results = {}
    for name, auto in (("model", AutoModel), ("causal", AutoModelForCausalLM)):
        model = auto.from_pretrained(folder, trust_remote_code=True).eval()
        with torch.no_grad():
            results[name + "_logits"] = model(**inputs).logits.numpy()
        results[name + "_generated"] = model.generate(**inputs, max_new_tokens=8).numpy()
    results["class"] = np.array([type(processor).__name__, config.model_type])
    results["modules"] = np.array(sorted(m for m in sys.modules if m.endswith("_mixingbuddy")))
    np.savez(out, **results)
    """
)


def run_fresh_process(folder, tmp_path, prompts, clips, block_peft=False):
    np.savez(tmp_path / "inputs.npz", prompts=np.array(prompts), clips=np.stack(clips))
    script = tmp_path / "load.py"
    script.write_text(LOAD_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    args = [sys.executable, "-S", str(script), str(folder), str(tmp_path / "inputs.npz"), str(tmp_path / "out.npz")]
    args += ["--block-peft"] if block_peft else []
    subprocess.run([*args, sysconfig.get_path("purelib")], check=True, cwd=tmp_path, env=env)
    return np.load(tmp_path / "out.npz")


def reference_outputs(model, processor, prompts, clips):
    inputs = processor(text=prompts, audio=clips, sampling_rate=24000)
    with torch.no_grad():
        logits = model(**inputs).logits.numpy()
    return logits, model.generate(**inputs, max_new_tokens=8).numpy()


def test_hub_folder_round_trip_in_a_fresh_offline_process(tmp_path):
    model, processor = build_tiny_model_and_processor(seed=3)
    folder = save_hub_folder(model, processor, tmp_path / "checkpoint")
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "configuration_mixingbuddy.py",
            "modeling_mixingbuddy.py", "processing_mixingbuddy.py", "vocabulary_mixingbuddy.py", "processor_config.json",
            "tokenizer.json", "tokenizer_config.json"} <= files
    config = json.loads((folder / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForMultimodalLM"}
    assert json.loads((folder / "generation_config.json").read_text())["do_sample"] is False

    prompts, clips = make_prompts(processor)[:2], make_clips(2)
    logits, generated = reference_outputs(model, processor, prompts, clips)
    loaded = run_fresh_process(folder, tmp_path, prompts, clips)
    assert list(loaded["class"]) == ["MixingBuddyProcessor", "mixingbuddy"]
    hub_files = {"configuration_mixingbuddy", "modeling_mixingbuddy", "processing_mixingbuddy", "vocabulary_mixingbuddy"}
    assert {name.rsplit(".", 1)[-1] for name in loaded["modules"]} == hub_files
    assert all(name.startswith("transformers_modules.") for name in loaded["modules"])
    for name in ("model", "causal"):
        np.testing.assert_array_equal(loaded[f"{name}_logits"], logits)
        np.testing.assert_array_equal(loaded[f"{name}_generated"], generated)


def test_save_refuses_a_non_empty_folder(tmp_path, tiny):
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        save_hub_folder(*tiny, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def trained_peft_model():
    model, processor = build_tiny_model_and_processor(aux_loss="label")
    peft_model = apply_lora(model)
    with torch.no_grad():  # stand-in for training: move every trainable tensor
        for param in peft_model.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    return peft_model.eval(), processor


def test_peft_saves_only_the_trained_parts_and_reloads_identically(tmp_path):
    from peft import PeftModel

    peft_model, processor = trained_peft_model()
    inputs = processor(text=make_prompts(processor)[:2], audio=make_clips(2), sampling_rate=24000)
    with torch.no_grad():
        expected = peft_model(**inputs).logits
    peft_model.save_pretrained(tmp_path / "adapter")
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert all("lora_" in k or k.split(".")[3] in ("layer_weights", "projector") or "advice_head" in k for k in saved)
    assert not any("audio_tower" in k or "embed_tokens" in k for k in saved)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert sum(t.numel() for t in saved.values()) == trainable

    base, _ = build_tiny_model_and_processor(aux_loss="label")
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, expected, rtol=0, atol=0)


def test_merged_export_loads_without_peft(tmp_path):
    peft_model, processor = trained_peft_model()
    prompts, clips = make_prompts(processor)[:2], make_clips(2)
    logits, _ = reference_outputs(peft_model, processor, prompts, clips)
    merged = peft_model.merge_and_unload()
    assert type(merged) is MixingBuddyForConditionalGeneration
    folder = save_hub_folder(merged, processor, tmp_path / "merged")
    loaded = run_fresh_process(folder, tmp_path, prompts, clips, block_peft=True)
    np.testing.assert_allclose(loaded["causal_logits"], logits, atol=1e-5)


@pytest.fixture(scope="module")
def component_folders(tmp_path_factory):
    return write_component_folders(tmp_path_factory.mktemp("components"))


def test_load_components_assembles_mert_and_qwen2(component_folders):
    root, hubert, text_model = component_folders
    model_args = paper_model_args(load_in_4bit=False)  # the NF4 path: tests/test_qlora.py
    peft_model, processor = load_components(root / "mert", root / "qwen", model_args, audio_pooling=10)
    model = peft_model.base_model.model
    assert model.config.audio_pooling == 10 and model.config.audio_tokens_per_clip == 75
    assert processor.audio_tokens_per_clip == 75 and processor.audio_token == model.config.audio_token
    assert processor.tokenizer.convert_tokens_to_ids(processor.audio_token) == model.config.audio_token_id
    assert processor.sampling_rate == 24000 and processor.tokenizer.padding_side == "left"
    audio, ids = torch.randn(1, 24000), torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(model.model.audio_tower(audio).last_hidden_state, hubert(audio).last_hidden_state)
        torch.testing.assert_close(model(input_ids=ids).logits, text_model(input_ids=ids).logits)
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert any("language_model" in n and "lora_A" in n for n in trainable)
    assert not any("audio_tower" in n for n in trainable)


def test_load_components_errors(component_folders):
    root, _, _ = component_folders
    with pytest.raises(ValueError, match="does not hold HuBERT-layout weights"):
        load_components(root / "qwen", root / "qwen", paper_model_args(load_in_4bit=False))
    model, _ = build_tiny_model_and_processor()
    with pytest.raises(ValueError, match="lora_target_modules"):
        apply_lora(model, paper_model_args(lora_target_modules=None))


def test_plain_hub_file_names_alias_the_package_modules_in_a_fresh_process():
    script = (
        "import processing_mixingbuddy, modeling_mixingbuddy, vocabulary_mixingbuddy, mixingbuddy.hub as hub\n"
        "assert modeling_mixingbuddy is hub.modeling_mixingbuddy\n"
        "assert processing_mixingbuddy is hub.processing_mixingbuddy\n"
        "assert processing_mixingbuddy.parse_advice is vocabulary_mixingbuddy.parse_advice\n"
        "print(processing_mixingbuddy.parse_advice('Cut the drums by 3 to 6 dB.')['stem'])"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=Path("/"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "drums"


def test_cli_tiny_checkpoint_and_user_errors(tmp_path):
    out = tmp_path / "tiny"
    done = subprocess.run([sys.executable, "-m", "mixingbuddy", "tiny-checkpoint", str(out)], cwd=REPO,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (out / "model.safetensors").exists()
    again = subprocess.run([sys.executable, "-m", "mixingbuddy", "tiny-checkpoint", str(out)], cwd=REPO,
                           capture_output=True, text=True)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines() == [
        f"mixingbuddy tiny-checkpoint: error: Output folder {out} already exists and is not empty."
    ]
