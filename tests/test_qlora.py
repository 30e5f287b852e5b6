"""The paper's path in its tiny CPU form, as transformers, peft and TRL run it: `mixingbuddy convert` writes one
untrained folder; `from_pretrained` with NF4 quantizes the language model only; `SFTTrainer(peft_config=...)` trains
4-bit LoRA beside the projector and layer weights; the adapter names its base and loads in one call with the logits it
had; a merged export needs neither peft nor bitsandbytes."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_clips, make_prompts, write_component_folders, write_song
from peft import AutoPeftModelForCausalLM, get_peft_model
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor

from dataset_builder import build_dataset
from mixingbuddy.cli import main
from mixingbuddy.models.checkpoints import load_model, nf4_config
from mixingbuddy.models.devices import cpu_has_native
from mixingbuddy.training.lora import lora_config, paper_model_args
from mixingbuddy.training.run import run

REPO = Path(__file__).resolve().parents[1]
RESPONSES = ["The drums are far too loud. Reduce the drums by 6 to 12 dB.",
             "The mix is well balanced. No gain change is needed."]
LORA = ["--use_peft", "true", "--lora_target_modules", "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
        "down_proj"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A converted folder of tiny MERT-format and Qwen2 components, written by the command line."""
    root = tmp_path_factory.mktemp("components")
    write_component_folders(root)
    assert main(["convert", "--audio-encoder", str(root / "mert"), "--language-model", str(root / "qwen"), "--out",
                 str(root / "base"), "--audio-pooling", "25", "--projector-hidden-sizes", "64", "64"]) == 0
    return root / "base"


def test_nf4_quantizes_the_language_model_only_and_lora_trains_beside_the_projector(converted):
    model = AutoModelForCausalLM.from_pretrained(converted, trust_remote_code=True,
                                                 quantization_config=nf4_config(torch.float32))
    assert model.is_loaded_in_4bit  # said by transformers of the composite model itself
    assert type(model.model.language_model.layers[0].mlp.down_proj).__name__ == "Linear4bit"
    for plain in (model.model.audio_tower.encoder.layers[0].attention.q_proj, model.model.projector.output, model.lm_head):
        assert type(plain) is torch.nn.Linear  # left out by the model's own `_keep_in_fp32_modules`
    peft_model = get_peft_model(model, lora_config(paper_model_args(dtype="float32"), model))
    assert type(model.model.language_model.layers[0].self_attn.q_proj).__module__ == "peft.tuners.lora.bnb"
    assert type(model.model.audio_tower.encoder.layers[0].attention.q_proj) is torch.nn.Linear  # no LoRA on HuBERT
    processor = AutoProcessor.from_pretrained(converted, trust_remote_code=True)
    inputs = processor(text=make_prompts(processor)[:2], audio=make_clips(2), sampling_rate=24000, responses=RESPONSES)
    before = {name: p.detach().clone() for name, p in peft_model.named_parameters()}
    peft_model.train()
    peft_model(**inputs).loss.backward()
    with_gradient = {n for n, p in peft_model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any("lora_B" in n for n in with_gradient)
    assert any("modules_to_save" in n and "projector" in n for n in with_gradient)
    assert any("modules_to_save" in n and "layer_weights" in n for n in with_gradient)
    assert not any("audio_tower" in n for n in with_gradient)
    torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.0).step()
    changed = {name for name, p in peft_model.named_parameters() if not torch.equal(p.detach(), before[name])}
    assert changed == with_gradient  # LoRA's B (A gets no gradient while B is zero), projector, layer weights


def qlora_argv(converted: Path, root: Path, *extra: str) -> list[str]:
    """Three QLoRA steps on the CPU from the converted folder, as train_sft.py runs them."""
    return ["--config", str(REPO / "configs" / "tiny.yaml"), "--tiny", "false", "--model_name_or_path", str(converted),
            "--audio_frontend", "hubert", "--audio_pooling", "25", "--aux_loss", "norm", "--audio_inputs", "mix",
            "--clip_levels", "false",  # tiny.yaml's are the demo model's
            "--load_in_4bit", "true", "--use_bnb_nested_quant", "true", *LORA, "--dtype", "float32",
            "--max_steps", "3", "--per_device_train_batch_size", "2", "--eval_strategy", "no", "--save_strategy", "no",
            "--dataset_name", str(root / "dataset"), "--stem_cache_dir", str(root / "cache"), "--disable_tqdm", "true",
            *extra]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("qlora")
    for seed, (split, name) in enumerate((("train", "A"), ("train", "B"), ("test", "C"))):
        write_song(root / "corpus" / split / name, 24000, 1, seed)
    build_dataset(root / "corpus", root / "dataset", cache_dir=root / "cache")
    return root


@pytest.fixture(scope="module")
def qlora_run(converted, corpus):
    trainer = run(qlora_argv(converted, corpus, "--output_dir", str(corpus / "out")))
    return trainer, corpus


def test_a_qlora_result_names_its_base_and_loads_in_one_call_with_the_logits_it_had(qlora_run, converted):
    trainer, root = qlora_run
    out = root / "out"
    assert (out / "adapter_model.safetensors").exists() and not (out / "config.json").exists()
    assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == str(converted.resolve())
    assert trainer.model.base_model.model.is_loaded_in_4bit
    trained_dtype = torch.bfloat16 if cpu_has_native(torch.bfloat16) else torch.float32
    assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {trained_dtype}  # TRL's cast, or undone
    model, processor = load_model(str(out), device="cpu", load_in_4bit=True)
    inputs = processor(text=make_prompts(processor)[:2], audio=make_clips(2), sampling_rate=24000)
    for name, param in model.named_parameters():  # run LoRA in the dtype it trained in
        if param.requires_grad or "lora_" in name or "modules_to_save" in name:
            param.data = param.data.to(trained_dtype)
    with torch.no_grad():
        expected = trainer.model.eval()(**inputs).logits
        torch.testing.assert_close(model(**inputs).logits, expected, rtol=0, atol=1e-5)
    peft_model = AutoPeftModelForCausalLM.from_pretrained(out, trust_remote_code=True)
    assert type(peft_model.get_base_model()).__name__ == "MixingBuddyForConditionalGeneration"
    assert main(["evaluate", "--model", str(out), "--dataset", str(root / "dataset"), "--out", str(root / "eval"),
                 "--limit", "4", "--batch-size", "4", "--cache-dir", str(root / "cache")]) == 0


class HalfMatmuls(TorchDispatchMode):
    """Counts the matrix products, convolutions and attentions that run on bfloat16 or float16 tensors."""

    OPS = {"mm", "addmm", "bmm", "baddbmm", "mv", "addmv", "convolution", "_scaled_dot_product_flash_attention_for_cpu"}

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.__name__.split(".")[0] in self.OPS and any(
            isinstance(a, torch.Tensor) and a.dtype in (torch.bfloat16, torch.float16) for a in args
        ):
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_a_cpu_without_native_bfloat16_multiplies_nothing_in_16_bits(converted, corpus, monkeypatch, tmp_path):
    """Where the CPU would emulate bfloat16 (forced here), the paper's recipe with bf16 on — TRL's bfloat16 cast of the
    trainable parameters, bf16 autocast, `--dtype bfloat16` at evaluation — runs every matrix product in float32."""
    monkeypatch.setenv("MIXINGBUDDY_CPU_HALF", "0")
    cpu_has_native.cache_clear()
    with HalfMatmuls() as seen:
        torch.ones(2, 2, dtype=torch.bfloat16) @ torch.ones(2, 2, dtype=torch.bfloat16)
    assert seen.count == 1  # the counter sees a 16-bit product
    out = tmp_path / "out"
    try:
        with HalfMatmuls() as seen:
            trainer = run(["--config", str(REPO / "configs" / "paper.yaml"), "--model_name_or_path", str(converted),
                           "--use_cpu", "true", "--bf16", "true", "--max_steps", "1", "--per_device_train_batch_size",
                           "2", "--gradient_accumulation_steps", "1", "--eval_strategy", "no", "--save_strategy", "no",
                           "--dataset_name", str(corpus / "dataset"), "--stem_cache_dir", str(corpus / "cache"),
                           "--output_dir", str(out), "--disable_tqdm", "true", "--dataloader_num_workers", "0"])
            assert main(["evaluate", "--model", str(out), "--dataset", str(corpus / "dataset"), "--out",
                         str(tmp_path / "eval"), "--limit", "2", "--batch-size", "2", "--cache-dir",
                         str(corpus / "cache"), "--dtype", "bfloat16"]) == 0
    finally:
        cpu_has_native.cache_clear()
    assert seen.count == 0
    assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {torch.float32}


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


@pytest.mark.slow
@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-4), ("bfloat16", 0.05)])
def test_the_export_merges_into_a_folder_that_needs_neither_peft_nor_bitsandbytes(qlora_run, tmp_path, dtype, tolerance):
    """The merged float32 export computes what the adapter computes on its full-precision base (within 1e-4); the
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


def test_models_that_are_not_converted_folders_are_refused_in_one_line(converted, corpus, capsys, tmp_path):
    qwen = converted.parent / "qwen"
    cases = [
        (["--model_name_or_path", str(qwen), "--audio_encoder", str(converted.parent / "mert")],
         "train_sft.py trains a MixingBuddy model folder: run `mixingbuddy convert"),
        (["--model_name_or_path", str(qwen)], "is not a MixingBuddy model (model_type 'qwen2'): make one with"),
        (["--model_name_or_path", str(converted), "--audio_pooling", "10"],
         "audio_pooling is 25 in " + str(converted) + ", fixed when the model was converted"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exit_:
            run(qlora_argv(converted, corpus, "--output_dir", str(tmp_path / "out"), *extra))
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()
    assert main(["convert", "--audio-encoder", str(converted.parent / "mert"), "--language-model", str(qwen), "--out",
                 str(converted)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_convert_command_fixes_what_the_model_hears(converted, tmp_path):
    """`convert --audio-inputs mix+anchor` writes the setting into the model's and the processor's configs."""
    root = converted.parent
    assert main(["convert", "--audio-encoder", str(root / "mert"), "--language-model", str(root / "qwen"), "--out",
                 str(tmp_path / "base"), "--audio-pooling", "25", "--projector-hidden-sizes", "64", "64",
                 "--audio-inputs", "mix+anchor"]) == 0
    config = AutoConfig.from_pretrained(tmp_path / "base", trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(tmp_path / "base", trust_remote_code=True)
    assert config.audio_inputs == processor.audio_inputs == "mix+anchor" and config.num_audio_clips == 2
    assert not config.clip_levels


def test_convert_command_gives_clip_levels_to_several_clips_only(converted, tmp_path, capsys):
    root = converted.parent
    common = ["convert", "--audio-encoder", str(root / "mert"), "--language-model", str(root / "qwen"),
              "--audio-pooling", "25", "--projector-hidden-sizes", "64", "64", "--clip-levels"]
    assert main([*common, "--out", str(tmp_path / "mix")]) == 2
    err = capsys.readouterr().err
    assert "clip_levels needs several clips" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "mix").exists()
    assert main([*common, "--out", str(tmp_path / "stems"), "--audio-inputs", "stems"]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "stems", trust_remote_code=True)
    assert model.config.clip_levels and model.model.clip_levels.mix_index == model.config.num_audio_clips - 1
