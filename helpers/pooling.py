"""Pooling: turn per-token vectors into one sentence vector. Explained in notebook 01."""

from __future__ import annotations

import torch

from .checks import check_choice

POOLING_MODES = ("cls", "max", "mean")


def check_pooling(mode: str) -> str:
    """Return ``mode`` if it is a known pooling, else raise a ValueError listing the choices."""
    return check_choice("pooling", mode, POOLING_MODES)


def pool(token_embeddings: torch.Tensor, attention_mask: torch.Tensor, mode: str) -> torch.Tensor:
    """Pool ``(batch, seq, dim)`` token vectors into ``(batch, dim)``; padding never counts.

    - ``mean``: average of the real tokens (what all-MiniLM-L6-v2 was trained with).
    - ``cls``: the first token's vector; BERT-style models put a summary token there.
    - ``max``: element-wise maximum over the real tokens.
    """
    check_pooling(mode)
    if mode == "cls":
        return token_embeddings[:, 0]
    mask = attention_mask.unsqueeze(-1).to(token_embeddings.dtype)
    if mode == "mean":
        return (token_embeddings * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    lowest = torch.finfo(token_embeddings.dtype).min
    return token_embeddings.masked_fill(mask == 0, lowest).max(dim=1).values
