"""Shared fixtures: a tiny random MixingBuddy model and processor, and example inputs."""

import pytest
import torch
from helpers import make_clips, make_prompts

from mixingbuddy.models.tiny import build_tiny_model_and_processor


@pytest.fixture(scope="session")
def tiny():
    """(model, processor) with tiny random weights, seed 0, pooling 25 (30 audio tokens per clip)."""
    return build_tiny_model_and_processor(seed=0)


@pytest.fixture
def batch(tiny):
    _, processor = tiny
    prompts = make_prompts(processor)
    return processor(text=prompts, audio=make_clips(len(prompts)), sampling_rate=24000, return_tensors="pt")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """(stems_dir, dataset_dir, cache_dir): a small synthetic corpus in MUSDB18HQ layout and its `sampled` data set."""
    from dataset_builder import build_dataset
    from dataset_builder.synth import synthesize_corpus

    root = tmp_path_factory.mktemp("synthetic")
    stems = synthesize_corpus(root / "stems", songs=6, seconds=30, seed=0, progress=False)
    build_dataset(stems, root / "dataset", config="expanded", seed=0, cache_dir=root / "cache")
    return stems, root / "dataset", root / "cache"
