"""The model card of an exported MixingBuddy folder: Hub metadata, what the model does and does not, how to use it,
and, given an evaluation folder, its metrics and confusion plots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from huggingface_hub import ModelCard, ModelCardData

from ..files import is_local_only

CONFUSION_PLOTS = ("confusion_advice.png", "confusion_direction.png")

USAGE = '''```python
import soundfile as sf
from transformers import AutoModelForCausalLM, AutoProcessor

model = AutoModelForCausalLM.from_pretrained("{repo}", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{repo}", trust_remote_code=True)

{audio}
conversation = processor.build_conversation(anchor="vocals")  # the stem whose level is right
text = processor.apply_chat_template(conversation, add_generation_prompt=True)
inputs = processor(text=text, audio={clips}, sampling_rate=rate)
generated = model.generate(**inputs)
answer = processor.batch_decode(generated[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
print(answer, processor.post_process_advice(answer))  # [{"stem": "drums", "direction": "decrease", ...}]
```

For a whole song, window by window, with advice that is always valid: `mixingbuddy critique song.wav --anchor vocals
--model {repo}{flag}` (the MixingBuddy repository's command line).'''
MIX = 'mix, rate = sf.read("mix.wav")  # any rate, mono or stereo; the first 10 s are judged'
AUDIO_USAGE = {  # audio_inputs -> (what the model hears, the usage's audio, the processor's clips, critique's flag)
    "mix": ("the mix", MIX, "mix", ""),
    "mix+anchor": ("the mix and the anchor stem alone", f'{MIX}\nanchor, _ = sf.read("vocals.wav")  # the anchor stem: '
                   "the mix's rate and length", '{"mix": mix, "anchor": anchor}', " --anchor-audio vocals.wav"),
    "stems": ("every stem and the mix", f'{MIX}\nclips = {{stem: sf.read(f"{{stem}}.wav")[0] for stem in ("bass", '
              '"drums", "other", "vocals")}  # the mix\'s rate and length', '{**clips, "mix": mix}',
              " --stems-dir STEMS_DIR"),
}

LIMITATIONS = """- It was trained on synthetic flaws: one stem of a multitrack song turned up or down by 3 to 12 dB.
- It knows four stems (bass, drums, vocals, and "other", which is never advised) and judges gain only: not EQ,
  panning, compression or reverb.
- It hears 10 s at a time; the verdict on a song comes from judging its windows one by one.
- Its advice is relative to an anchor stem the user names; a mix whose anchor is itself off gets wrong advice."""


def model_card(config, repo: str, eval_dir: str | Path | None = None, base_models=()) -> tuple[ModelCard, list[Path]]:
    """(card, plot files to copy beside it). `repo` is how the usage snippet names the model; `base_models` the Hub ids
    of the audio encoder and language model it was built from (local paths are left out of the metadata)."""
    metrics, plots, datasets = "No evaluation was given to the export.", [], []
    if eval_dir is not None:
        eval_dir = Path(eval_dir)
        metrics = (eval_dir / "metrics.md").read_text().replace("## ", "### ")
        plots = [eval_dir / name for name in CONFUSION_PLOTS if (eval_dir / name).exists()]
        run = json.loads((eval_dir / "metrics.json").read_text()).get("run", {})
        if run.get("dataset") and not is_local_only(run["dataset"]):
            datasets = [run["dataset"]]
        metrics = f"Split `{run.get('split', '?')}`, {run.get('decoding', '?')} decoding, {run.get('rows', '?')} rows.\n\n{metrics}"
        metrics += "".join(f"\n![{plot.stem}]({plot.name})\n" for plot in plots)
    data = ModelCardData(
        license="apache-2.0",
        library_name="transformers",
        pipeline_tag="any-to-any",
        tags=["audio", "music", "mixing", "mixingbuddy", "custom_code"],
        base_model=[model for model in base_models if not is_local_only(model)] or None,
        datasets=datasets or None,
    )
    layers = config.num_audio_states - 1
    architecture = (f"{config.audio_frontend} audio front-end ({layers} layers), "
                    f"{config.audio_tokens_per_clip} audio tokens per 10 s clip, a Qwen2 language model of width "
                    f"{config.text_config.hidden_size} and {config.text_config.num_hidden_layers} layers, hearing "
                    f"{AUDIO_USAGE[config.audio_inputs][0]} (audio_inputs={config.audio_inputs})")
    content = "\n\n".join([
        f"---\n{data.to_yaml()}\n---",
        "# MixingBuddy",
        "An audio-language model that listens to a 10-second excerpt of a music mix and says which stem is too loud or "
        "too quiet, and by how much: *\"With the vocals as the reference, I compared the bass and the drums. The drums are "
        "too loud: lower them by 6 to 12 dB. The drums are overpowering the mix.\"* "
        f"This export: {architecture}.",
        "## How to use", usage(repo, config.audio_inputs),
        "## Intended use and limitations", LIMITATIONS,
        "## Evaluation", metrics,
    ])
    return ModelCard(content), plots


def usage(repo: str, audio_inputs: str) -> str:
    """The card's usage: loading, one 10 s clip of each audio the model hears, and the critique of a whole song."""
    _, audio, clips, flag = AUDIO_USAGE[audio_inputs]
    return USAGE.replace("{audio}", audio).replace("{clips}", clips).replace("{flag}", flag).replace("{repo}", repo)


def write_model_card(folder: Path, config, repo: str, eval_dir=None, base_models=()) -> None:
    """README.md (and the confusion plots it shows) into `folder`."""
    card, plots = model_card(config, repo, eval_dir, base_models)
    card.save(folder / "README.md")
    for plot in plots:
        shutil.copy2(plot, folder / plot.name)
