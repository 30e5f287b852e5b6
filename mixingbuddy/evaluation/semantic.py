"""Semantic similarity of answers to the reference responses: cosine similarity of mean-pooled sentence embeddings
from any transformers encoder (a sentence-transformers model such as all-MiniLM-L6-v2, which is trained for mean
pooling, or any other `AutoModel`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from ..files import error_summary
from ..models.checkpoints import quiet_progress, resolve_model
from ..models.devices import local_device


class SentenceEmbedder:
    """L2-normalised mean-pooled last hidden states of an encoder (folder or Hub id), in float32 on `device`
    (default: this process's GPU, else the CPU)."""

    def __init__(self, model: str, device=None):
        from transformers import AutoModel, AutoTokenizer

        path = resolve_model(model)
        # Right padding: an encoder with absolute positions (BERT) would read left padding as moved words.
        try:
            with quiet_progress(Path(path).is_dir()):
                self.tokenizer = AutoTokenizer.from_pretrained(path, padding_side="right")
                self.model = AutoModel.from_pretrained(path, dtype=torch.float32)
        except (OSError, ValueError, RuntimeError) as err:
            raise OSError(f"Cannot load the semantic model {model}: {error_summary(err)}") from None
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.model.to(torch.device(device) if device is not None else local_device()).eval()

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """[len(texts), hidden] unit vectors."""
        vectors = []
        for start in range(0, len(texts), batch_size):
            inputs = self.tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True,
                                    return_tensors="pt").to(self.model.device)
            hidden = self.model(**inputs).last_hidden_state  # [batch, tokens, hidden]
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # [batch, tokens, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # [batch, hidden]
            vectors.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
        return torch.cat(vectors) if vectors else torch.empty(0, self.model.config.hidden_size)

    def similarities(self, texts: Sequence[str], references: Sequence[str], batch_size: int = 32) -> list[float]:
        """The cosine similarity of each text to its reference."""
        return (self.embed(texts, batch_size) * self.embed(references, batch_size)).sum(-1).tolist()


def add_semantic_similarity(records: Sequence[Mapping], embedder: SentenceEmbedder, batch_size: int = 32) -> list[dict]:
    """The `predictions.jsonl` records with `semantic_similarity`: the answer's (`generated`) cosine similarity to the
    reference (`response`). The report then gives its means beside the accuracies (`score_predictions`)."""
    similarity = embedder.similarities([r["generated"] for r in records], [r["response"] for r in records], batch_size)
    return [{**record, "semantic_similarity": value} for record, value in zip(records, similarity)]
