"""The paper's path in its tiny CPU form: NF4 components with 4-bit LoRA layers, what trains, a training result that
loads in one call with the logits it had, and a merged export that needs neither peft nor bitsandbytes."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_clips, make_prompts, write_component_folders, write_song

from dataset_builder import build_dataset
from mixingbuddy.cli import main
from mixingbuddy.models.checkpoints import ADAPTER_RECORD, load_model
from mixingbuddy.models.components import load_components, paper_model_args
from mixingbuddy.training.run import run

REPO = Path(__file__).resolve().parents[1]
RESPONSES = ["The drums are far too loud. Reduce the drums by 6 to 12 dB.",
             "The mix is well balanced. No gain change is needed."]


@pytest.fixture(scope="module")
def components(tmp_path_factory):
    return write_component_folders(tmp_path_factory.mktemp("components"))


def nf4_model(components):
    root = components[0]
    return load_components(root / "mert", root / "qwen", paper_model_args(dtype="float32"), device="cpu",
                           audio_pooling=25)


def test_nf4_lora_uses_4bit_layers_and_trains_only_lora_projector_and_layer_weights(components):
    model, processor = nf4_model(components)
    base = model.base_model.model
    assert base.is_loaded_in_4bit and type(base.model.language_model.layers[0].self_attn.q_proj).__module__ == (
        "peft.tuners.lora.bnb"
    )
    assert type(base.model.language_model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    assert type(base.model.audio_tower.encoder.layers[0].attention.q_proj) is torch.nn.Linear  # no LoRA on HuBERT
    inputs = processor(text=make_prompts(processor)[:2], audio=make_clips(2), sampling_rate=24000, responses=RESPONSES)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    model.train()
    model(**inputs).loss.backward()
    with_gradient = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any("lora_B" in n for n in with_gradient)
    assert any("modules_to_save" in n and "projector" in n for n in with_gradient)
    assert any("modules_to_save" in n and "layer_weights" in n for n in with_gradient)
    assert not any("audio_tower" in n for n in with_gradient)
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0).step()
    changed = {name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert changed == with_gradient  # LoRA's B (A gets no gradient while B is zero), projector, layer weights


@pytest.fixture(scope="module")
def qlora_run(components, tmp_path_factory):
    """Three QLoRA steps on the CPU with the tiny components, as train_sft.py runs them."""
    root = tmp_path_factory.mktemp("qlora")
    for seed, (split, name) in enumerate((("train", "A"), ("train", "B"), ("test", "C"))):
        write_song(root / "corpus" / split / name, 24000, 1, seed)
    build_dataset(root / "corpus", root / "dataset", cache_dir=root / "cache")
    mert, qwen = components[0] / "mert", components[0] / "qwen"
    trainer = run([
        "--config", str(REPO / "configs" / "tiny.yaml"), "--tiny", "false", "--audio_encoder", str(mert),
        "--model_name_or_path", str(qwen), "--load_in_4bit", "true", "--use_bnb_nested_quant", "true",
        "--use_peft", "true", "--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
        "up_proj", "down_proj", "--dtype", "float32", "--audio_frontend", "hubert", "--audio_pooling", "25",
        "--aux_loss", "norm", "--max_steps", "3", "--per_device_train_batch_size", "2", "--eval_strategy", "no",
        "--save_strategy", "no", "--dataset_name", str(root / "dataset"), "--stem_cache_dir", str(root / "cache"),
        "--output_dir", str(root / "out"), "--disable_tqdm", "true",
    ])
    return trainer, root


def test_a_qlora_result_loads_in_one_call_with_the_logits_it_had(qlora_run):
    trainer, root = qlora_run
    out = root / "out"
    assert (out / ADAPTER_RECORD).exists() and (out / "adapter_model.safetensors").exists()
    assert trainer.model.base_model.model.is_loaded_in_4bit
    model, processor = load_model(str(out), device="cpu")
    inputs = processor(text=make_prompts(processor)[:2], audio=make_clips(2), sampling_rate=24000)
    with torch.no_grad():
        expected = trainer.model.eval()(**inputs).logits
        torch.testing.assert_close(model(**inputs).logits, expected, rtol=0, atol=1e-5)
    assert main(["evaluate", "--model", str(out), "--dataset", str(root / "dataset"), "--out", str(root / "eval"),
                 "--limit", "4", "--batch-size", "4", "--cache-dir", str(root / "cache")]) == 0


LOAD_WITHOUT_PEFT = textwrap.dedent(
    """
    import sys
    sys.modules["peft"] = sys.modules["bitsandbytes"] = None  # neither may be needed
    import numpy as np, torch
    from transformers import AutoModelForCausalLM, AutoProcessor
    folder, inputs_path, out = sys.argv[1:4]
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, dtype=torch.float32).eval()
    data = np.load(inputs_path)
    inputs = processor(text=[str(p) for p in data["prompts"]], audio=list(data["clips"]), sampling_rate=24000)
    with torch.no_grad():
        np.save(out, model(**inputs).logits.numpy())
    """
)


@pytest.mark.parametrize("dtype, tolerance", [("float32", 5e-3), ("bfloat16", 0.05)])
def test_the_export_merges_into_a_folder_that_needs_neither_peft_nor_bitsandbytes(qlora_run, tmp_path, dtype, tolerance):
    """The merged float32 export stays within 5e-3 of the adapter model's logits (the adapter runs its LoRA in
    bfloat16, as TRL trained it, and bitsandbytes' 4-bit kernel; the merge adds the same weights in float32); the
    bfloat16 export within 0.05."""
    _, root = qlora_run
    assert main(["export", "--model", str(root / "out"), "--out", str(tmp_path / "merged"), "--dtype", dtype]) == 0
    adapter, processor = load_model(str(root / "out"), device="cpu")
    prompts, clips = make_prompts(processor)[:2], make_clips(2)
    with torch.no_grad():
        expected = adapter(**processor(text=prompts, audio=clips, sampling_rate=24000)).logits.numpy()
    np.savez(tmp_path / "inputs.npz", prompts=np.array(prompts), clips=np.stack(clips))
    (tmp_path / "load.py").write_text(LOAD_WITHOUT_PEFT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(tmp_path / "load.py"), str(tmp_path / "merged"), str(tmp_path / "inputs.npz"),
               str(tmp_path / "logits.npy")]
    subprocess.run(command, check=True, cwd=tmp_path, env=env)
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected, atol=tolerance)


@pytest.mark.parametrize("extra, message", [
    (["--tiny", "true"], "The tiny model is built in memory and cannot be quantized"),
    (["--tiny", "false", "--use_peft", "false"], "A quantized language model trains only through LoRA"),
])
def test_quantization_options_that_cannot_train_are_refused(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_:
        run(["--config", str(REPO / "configs" / "tiny.yaml"), "--load_in_4bit", "true", "--dataset_name",
             str(tmp_path / "unused"), "--output_dir", str(tmp_path / "out"), *extra])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_fsdp_with_a_quantized_model_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(SystemExit) as exit_:
        run(["--config", str(REPO / "configs" / "paper.yaml"), "--use_cpu", "true", "--dataset_name",
             str(tmp_path / "unused"), "--output_dir", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "FSDP cannot shard a bitsandbytes-quantized model" in capsys.readouterr().err
