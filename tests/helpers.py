"""Helpers shared by the tests: example clips and prompts, stems on disk, rows in every form."""

import json
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from safetensors.torch import load_file

from mixingbuddy.hub.vocabulary_mixingbuddy import STEMS


def make_clips(n: int, seconds: float = 10.0, rate: int = 24000, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.1 * rng.standard_normal(int(seconds * rate))).astype(np.float32) for _ in range(n)]


def make_prompts(processor, anchors=("vocals", "drums", "bass")) -> list[str]:
    """Prompts of different lengths (different instruction templates), so that batches need padding."""
    return [
        processor.apply_chat_template(processor.build_conversation(a, template=3 * i), add_generation_prompt=True)
        for i, a in enumerate(anchors)
    ]


# A data-set row in every form a caller may hand it over in: each function takes a `datasets.Dataset` and an index.
ROW_FORMS = {
    "python": lambda dataset, i: dataset[i],
    "numpy": lambda dataset, i: dataset.with_format("numpy")[i],
    "torch": lambda dataset, i: dataset.with_format("torch")[i],  # numbers as tensors, float64 cast to float32
    "pandas": lambda dataset, i: dataset.with_format("pandas")[i],  # a one-row DataFrame
    "arrow": lambda dataset, i: dataset.with_format("arrow")[i],  # a one-row Table
    "records": lambda dataset, i: dataset.to_pandas().to_dict("records")[i],  # list fields as numpy arrays
    "tuples": lambda dataset, i: {k: tuple(v) if isinstance(v, list) else v for k, v in dataset[i].items()},
}


def rows_without_other(rows):
    """`rows` with "other" dropped from the stems present of every second row, so that list fields matter."""
    return rows.map(
        lambda row, i: {"stems_present": [s for s in row["stems_present"] if s != "other" or i % 2 == 0]},
        with_indices=True,
    )


def write_song(folder: Path, rate: int, channels: int, seed: int, seconds: float = 21.0, silent_vocals_after=None):
    """Four stems of tones plus noise, about -23 dBFS each."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    folder.mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(STEMS):
        x = 0.1 * np.sin(2 * np.pi * 80 * (i + 1) ** 1.5 * t) + 0.02 * rng.standard_normal(t.size)
        if stem == "vocals" and silent_vocals_after is not None:
            x[int(silent_vocals_after * rate) :] = 0
        sf.write(folder / f"{stem}.wav", np.repeat(x[:, None], channels, axis=1), rate, subtype="PCM_16")


def write_component_folders(root: Path):
    """(root, HuBERT, Qwen2): tiny component checkpoints in the formats of the real ones — `root/mert` as MERT ships
    (HuBERT weights in pytorch_model.bin under MERT's model_type, its preprocessor config) and `root/qwen` as a Qwen2
    chat model with its tokenizer."""
    from transformers import HubertConfig, HubertModel, Qwen2Config, Qwen2ForCausalLM, Wav2Vec2FeatureExtractor

    from mixingbuddy.models.tiny import TINY_AUDIO_CONFIG, TINY_TEXT_CONFIG, build_tiny_tokenizer

    torch.manual_seed(1)
    hubert = HubertModel(HubertConfig(**TINY_AUDIO_CONFIG)).eval()
    hubert.save_pretrained(root / "mert")
    mert_preprocessor = Wav2Vec2FeatureExtractor(sampling_rate=24000, do_normalize=True, return_attention_mask=True)
    mert_preprocessor.save_pretrained(root / "mert")
    config = json.loads((root / "mert" / "config.json").read_text())
    config.update(model_type="mert_model", architectures=["MERTModel"], auto_map={"AutoModel": "modeling_MERT.MERTModel"})
    (root / "mert" / "config.json").write_text(json.dumps(config))
    weights = load_file(root / "mert" / "model.safetensors")
    (root / "mert" / "model.safetensors").unlink()
    torch.save(weights, root / "mert" / "pytorch_model.bin")

    tokenizer = build_tiny_tokenizer()
    text_model = Qwen2ForCausalLM(Qwen2Config(**TINY_TEXT_CONFIG, vocab_size=len(tokenizer) + 8)).eval()
    text_model.save_pretrained(root / "qwen")
    tokenizer.save_pretrained(root / "qwen")
    return root, hubert, text_model


INVALID_AUDIO = {  # file name -> (how to make it, what the one-line error says)
    "nan.wav": (lambda p: sf.write(p, np.where(np.arange(12 * 24000)[:, None] == 5 * 24000, np.nan, 0.1) * np.ones(
        (1, 2)), 24000, subtype="FLOAT"), "contains NaN or infinite samples (at 0:05)"),
    "inf.wav": (lambda p: sf.write(p, np.full((12 * 24000, 1), np.inf), 24000, subtype="FLOAT"), "NaN or infinite"),
    "half_second.wav": (lambda p: sf.write(p, np.full((12000, 2), 0.1, dtype=np.float32), 24000),
                        "lasts 0.50 s; at least 1 s is needed"),
    "corrupt.wav": (lambda p: p.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(64)), "Cannot read"),
    "text.wav": (lambda p: p.write_text("these are not samples\n" * 100), "Cannot read"),
    "empty.wav": (lambda p: p.write_bytes(b""), "is empty (0 bytes)"),
    "missing.wav": (lambda p: None, "does not exist"),
    "folder.wav": (lambda p: p.mkdir(), "is a folder, not an audio file"),
}


def one_line_error(capsys, *fragments) -> str:
    """The error the command printed: one line, the last on stderr (above it at most progress bars), no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("error:") == 1, err
    last = err.strip().splitlines()[-1]
    assert "error:" in last and all(fragment in last for fragment in fragments), err
    return last
