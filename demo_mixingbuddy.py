"""`mixingbuddy demo`: the offline end-to-end run on an embedded default (no downloads)."""

from __future__ import annotations

import shutil
from pathlib import Path

from critique_mixingbuddy import critique_file, format_critique
from dataset_builder.synth import synthesize_corpus
from mixingbuddy_tiny import save_tiny_checkpoint


def run_demo(out: Path, seed: int = 0) -> dict:
    """Synthesize a song, make a tiny random model and critique the song with it.

    The model is untrained, so its advice is noise: this shows the pipeline (processor, audio tower, projector,
    generation, parsing) working end to end. Training on the synthetic corpus comes with `train_sft.py`.
    """
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus"
    if not corpus.exists():
        synthesize_corpus(corpus, songs=2, seconds=30, seed=seed)
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    save_tiny_checkpoint(model_dir, seed=seed)
    song = sorted((corpus / "test").iterdir())[0] / "mixture.wav"
    report = critique_file(song, anchor="vocals", model=str(model_dir))
    print(format_critique(report))
    return report
