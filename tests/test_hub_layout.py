"""Hub layout: a saved folder loads in a fresh offline process — without this repository, its package or its site
hooks — through the Auto classes with identical outputs; the environment's start-up imports nothing of this repository
and a folder loads without it; the Hub files import by plain name from a folder that holds them; PEFT saves only what
was trained; a merged export loads without peft; real components load from local folders."""

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import sysconfig
from helpers import make_clips, make_prompts, write_component_folders
from peft import get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoProcessor, AutoTokenizer

from mixingbuddy.hub.modeling_mixingbuddy import MixingBuddyForConditionalGeneration
from mixingbuddy.models.checkpoints import save_hub_folder
from mixingbuddy.models.convert import convert
from mixingbuddy.models.tiny import build_tiny_model_and_processor, save_tiny_checkpoint
from mixingbuddy.training.lora import lora_config, paper_model_args

REPO = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter started with -S (no site hooks, so not the editable install's finder either)
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


@pytest.mark.slow
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
    peft_model = get_peft_model(model, lora_config(paper_model_args(), model))
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


def test_convert_writes_one_folder_from_mert_and_qwen2(component_folders, tmp_path):
    root, hubert, text_model = component_folders
    out = convert(root / "mert", root / "qwen", tmp_path / "base", audio_pooling=10, max_shard_size="100KB")
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # sharded safetensors
    assert {f"{name}.py" for name in HUB_FILES} <= {p.name for p in out.iterdir()}
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    assert model.config.audio_pooling == 10 and model.config.audio_tokens_per_clip == 75
    assert processor.audio_tokens_per_clip == 75 and processor.audio_token == model.config.audio_token
    tokenizer = processor.tokenizer
    assert tokenizer.convert_tokens_to_ids(processor.audio_token) == model.config.audio_token_id
    original = AutoTokenizer.from_pretrained(root / "qwen")
    assert len(tokenizer) == len(original) + (processor.audio_token not in original.get_vocab())  # at most once
    assert processor.sampling_rate == 24000 and tokenizer.padding_side == "left"
    audio, ids = torch.randn(1, 24000), torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(model.model.audio_tower(audio).last_hidden_state, hubert(audio).last_hidden_state)
        torch.testing.assert_close(model(input_ids=ids).logits, text_model(input_ids=ids).logits)
    again = convert(root / "mert", out, tmp_path / "again", audio_pooling=10)  # a converted tokenizer gains nothing
    assert len(AutoTokenizer.from_pretrained(again)) == len(tokenizer)


def test_convert_with_the_log_mel_front_end_reads_no_audio_encoder(component_folders, tmp_path):
    root, _, _ = component_folders
    out = convert(tmp_path / "no-such-encoder", root / "qwen", tmp_path / "base", audio_frontend="log_mel",
                  mel_hop_length=960, audio_pooling=8, aux_loss="label")
    model = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    assert type(model.model.audio_tower).__name__ == "MixingBuddyLogMelEncoder" and model.advice_head is not None
    assert model.config.audio_tokens_per_clip == 32 and not model.config.freeze_audio_tower
    processor = AutoProcessor.from_pretrained(out, trust_remote_code=True)
    inputs = processor(text=make_prompts(processor)[:2], audio=make_clips(2), sampling_rate=24000)
    with torch.no_grad():
        assert model(**inputs).logits.isfinite().all()


def test_convert_and_lora_errors(component_folders, tmp_path):
    root, _, _ = component_folders
    with pytest.raises(ValueError, match="does not hold HuBERT-layout weights"):
        convert(root / "qwen", root / "qwen", tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    model, _ = build_tiny_model_and_processor()
    with pytest.raises(ValueError, match="lora_target_modules"):
        lora_config(paper_model_args(lora_target_modules=None), model)


HUB_FILES = ("configuration_mixingbuddy", "vocabulary_mixingbuddy", "processing_mixingbuddy", "modeling_mixingbuddy")
# An expression: the imported modules of this repository, by their top-level names. (setuptools' editable install has a
# module of its own imported at start-up, `__editable___mixingbuddy_<version>_finder`: standard library only, it maps
# these names to the checkout when they are imported.)
TOP_LEVEL_NAMES = ("mixingbuddy", "dataset_builder", *HUB_FILES)
REPOSITORY_MODULES = f"sorted(m for m in sys.modules if m.split('.')[0] in {TOP_LEVEL_NAMES})"

# Runs as a user's process does (site runs, the environment's .pth files included), isolated (-I: no PYTHON* variables,
# no script folder or working folder on sys.path) in a folder outside the checkout: checks that start-up imported
# nothing of this repository, loads FOLDER with the Auto classes, runs a forward pass, and prints what was imported.
ISOLATED_LOAD_SCRIPT = textwrap.dedent(
    """
    import json, sys
    at_start = REPOSITORY_MODULES
    import numpy as np, torch
    from transformers import AutoModelForCausalLM, AutoProcessor
    folder = sys.argv[1]
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    prompt = processor.apply_chat_template(processor.build_conversation("vocals"), add_generation_prompt=True)
    audio = 0.1 * np.random.default_rng(0).standard_normal(24000).astype(np.float32)
    inputs = processor(text=[prompt], audio=[audio], sampling_rate=24000)
    with torch.no_grad():
        logits = model(**inputs).logits
    print(json.dumps({"at_start": at_start, "repository": REPOSITORY_MODULES,
                      "modules": sorted(m for m in sys.modules if "mixingbuddy" in m and "__editable__" not in m),
                      "classes": [type(model).__module__, type(processor).__module__],
                      "finite": bool(torch.isfinite(logits).all()), "shape": list(logits.shape)}))
    """
).replace("REPOSITORY_MODULES", REPOSITORY_MODULES)


@pytest.mark.slow
def test_start_up_imports_nothing_of_the_repository_and_a_copied_folder_loads_without_it(tmp_path):
    folder = shutil.copytree(save_tiny_checkpoint(tmp_path / "saved"), tmp_path / "elsewhere" / "model")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    started = f"import sys; print({REPOSITORY_MODULES})"
    bare = subprocess.run([sys.executable, "-I", "-c", started], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=True)
    assert bare.stdout.strip() == "[]"
    done = subprocess.run([sys.executable, "-I", "-c", ISOLATED_LOAD_SCRIPT, str(folder)], cwd=tmp_path / "elsewhere",
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["at_start"] == [] and result["repository"] == []
    assert result["finite"] and result["shape"][0] == 1
    assert all(name.startswith("transformers_modules.") for name in result["modules"]), result["modules"]
    assert {name.rsplit(".", 1)[-1] for name in result["modules"]} == set(HUB_FILES)
    assert [name.rsplit(".", 1)[-1] for name in result["classes"]] == ["modeling_mixingbuddy", "processing_mixingbuddy"]


@pytest.mark.slow
def test_hub_files_import_by_plain_name_from_a_folder_that_holds_them():
    script = (
        "import sys\n"
        "from processing_mixingbuddy import parse_advice\n"
        "print(parse_advice('The drums are too loud. Reduce the drums by 3 to 6 dB.'))\n"
        f"print({REPOSITORY_MODULES})"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    advice, modules = done.stdout.strip().splitlines()
    assert ast.literal_eval(advice)["stem"] == "drums"
    # top-level modules of the files in the working folder, not the package: nothing else of the repository
    assert ast.literal_eval(modules) == ["processing_mixingbuddy", "vocabulary_mixingbuddy"]


def test_the_package_and_the_public_names_are_one_set_of_modules():
    import mixingbuddy
    import mixingbuddy.hub.processing_mixingbuddy
    import mixingbuddy.hub.vocabulary_mixingbuddy

    assert mixingbuddy.hub.processing_mixingbuddy.MixingBuddyProcessor is mixingbuddy.MixingBuddyProcessor
    model_class = mixingbuddy.hub.modeling_mixingbuddy.MixingBuddyForConditionalGeneration
    assert model_class is MixingBuddyForConditionalGeneration is mixingbuddy.MixingBuddyForConditionalGeneration
    assert mixingbuddy.hub.processing_mixingbuddy.parse_advice is mixingbuddy.hub.vocabulary_mixingbuddy.parse_advice
    assert mixingbuddy.parse_advice is mixingbuddy.hub.vocabulary_mixingbuddy.parse_advice


@pytest.mark.slow
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
