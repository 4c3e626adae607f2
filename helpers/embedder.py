"""A transformer backbone plus pooling gives one fixed-length vector per sentence. Explained in notebook 01."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedTokenizerBase

from .backbone import DEFAULT_MODEL, load_backbone, position_limit, resolve_model_path
from .checks import as_text_list, check_batch_size, check_bool, check_positive_int
from .devices import HasDevice, inference, pick_device
from .pooling import check_pooling, pool
from .progress import progress_bar
from .st_format import check_modules, declared_lower_case, declared_pooling, save_encoder

if TYPE_CHECKING:
    from .caching import BottomCache


@dataclass(frozen=True)
class Tokenize:
    """Texts -> the padded batch an encoder reads (see ``SentenceTransformer.tokenize``)."""

    tokenizer: PreTrainedTokenizerBase
    max_seq_length: int
    lower_case: bool  # as sentence-transformers does, for a folder that asks for it (``do_lower_case``)

    def prepared(self, texts: list[str]) -> list[str]:
        """The texts as the tokenizer gets them: lowercased when the model's folder asks for it."""
        return [text.lower() for text in texts] if self.lower_case else texts

    def __call__(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return dict(self.tokenizer(self.prepared(texts), padding=True, truncation=True,
                                   max_length=self.max_seq_length, return_tensors="pt", return_token_type_ids=False))


class SentenceTransformer(HasDevice, nn.Module):
    """Backbone -> token vectors -> pooling -> sentence vector (no layers after pooling: no normalisation;
    ``encode(..., normalize_embeddings=True)`` gives unit vectors).

    Input longer than ``max_seq_length`` tokens is truncated, as in sentence-transformers (256 for
    all-MiniLM-L6-v2, the limit it ships with; it was trained on up to 128 tokens). ``pooling=None`` takes
    the pooling that a local sentence-transformers folder declares (``1_Pooling/config.json``), else mean;
    a Normalize module in that folder is not applied, any other module after pooling is refused, and its
    ``do_lower_case`` is applied (see ``helpers.st_format``).
    """

    def __init__(self, model_name: str | Path = DEFAULT_MODEL, pooling: str | None = None,
                 device: str | torch.device | None = None, *, random_weights: bool = False,
                 max_seq_length: int | None = None) -> None:
        super().__init__()
        source = resolve_model_path(model_name)
        check_modules(source)
        if pooling is None:
            pooling = declared_pooling(source) or "mean"
        self.pooling = check_pooling(pooling)
        self.do_lower_case = declared_lower_case(source)  # lowercase the input, as sentence-transformers does
        check_positive_int("max_seq_length", max_seq_length, none_means="the model's own limit")
        check_bool("random_weights", random_weights)
        self.model_name = str(model_name)
        self.backbone, self.tokenizer, default_length = load_backbone(model_name, random_weights)
        limit = position_limit(self.tokenizer, self.backbone.config)
        if max_seq_length is not None and max_seq_length > limit:
            raise ValueError(f"max_seq_length {max_seq_length} is above the {limit} tokens that {self.model_name!r} "
                             f"can take (its position embeddings); use at most {limit}")
        self.max_seq_length = default_length if max_seq_length is None else max_seq_length
        self.embedding_dim: int = self.backbone.config.hidden_size
        self.bottom_cache: BottomCache | None = None  # see helpers.caching
        self.eval()  # as Hugging Face models load: calling it gives the same vector twice (no dropout)
        if device is not None:
            self.to(pick_device(device))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids ``(batch, seq)`` -> pooled sentence vectors ``(batch, embedding_dim)``."""
        if self.bottom_cache is not None:
            tokens = self.bottom_cache.forward_top(self.backbone, input_ids, attention_mask)
        else:
            tokens = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(tokens, attention_mask, self.pooling)

    def save(self, directory: str | Path) -> Path:
        """Write this encoder in the sentence-transformers format (see ``helpers.st_format``), so that
        ``sentence_transformers.SentenceTransformer(directory)`` computes the same vectors, and so does
        ``SentenceTransformer(directory)`` here. ``directory`` must be new, empty or hold an encoder saved
        earlier; only the files save wrote are replaced (see ``helpers.saving``).
        """
        return save_encoder(self, directory)

    def prepared(self, texts: list[str]) -> list[str]:
        """The texts as the tokenizer gets them: lowercased when the model's folder asks for it."""
        return self.tokenize.prepared(texts)

    @property
    def tokenize(self) -> Tokenize:
        """``encoder.tokenize(texts)`` pads a batch to its longest sentence and truncates at ``max_seq_length``.

        It is an object of its own, the tokenizer and these settings without the weights, so a DataLoader that
        keeps it (``make_loader(rows, model.tokenize)``) keeps no model alive."""
        return Tokenize(self.tokenizer, self.max_seq_length, self.do_lower_case)

    def length_sorted_batches(self, texts: list[str], batch_size: int, show_progress_bar: bool = False
                              ) -> Iterator[tuple[list[int], torch.Tensor, torch.Tensor]]:
        """Yield (positions, input_ids, attention_mask), longest sentences first.

        The whole input is tokenized once; grouping sentences of similar token length keeps padding,
        and so wasted compute, small. ``positions`` say where each row belongs in the input order.
        """
        if not texts:
            return
        ids = self.tokenizer(self.prepared(texts), truncation=True, max_length=self.max_seq_length,
                             return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: -len(ids[i]))
        pad_id = self.tokenizer.pad_token_id or 0
        starts = range(0, len(order), batch_size)
        for start in progress_bar(starts, desc="Batches", disable=not show_progress_bar):
            positions = order[start:start + batch_size]
            longest = len(ids[positions[0]])
            input_ids = torch.full((len(positions), longest), pad_id, dtype=torch.long)
            attention_mask = torch.zeros((len(positions), longest), dtype=torch.long)
            for row, i in enumerate(positions):
                input_ids[row, :len(ids[i])] = torch.tensor(ids[i])
                attention_mask[row, :len(ids[i])] = 1
            yield positions, input_ids, attention_mask

    def in_input_order(self, texts: list[str], batch_size: int, forward: Callable[..., torch.Tensor], width: int,
                       show_progress_bar: bool = False) -> torch.Tensor:
        """``forward(input_ids, attention_mask) -> (batch, width)`` over the length-sorted batches of ``texts``,
        its rows put back in input order: ``(len(texts), width)``, float32, on the CPU."""
        rows = torch.zeros((len(texts), width), dtype=torch.float32)
        for positions, input_ids, attention_mask in self.length_sorted_batches(texts, batch_size, show_progress_bar):
            rows[positions] = forward(input_ids, attention_mask).float().cpu()
        return rows

    def encode(self, sentences: str | list[str], batch_size: int = 32, normalize_embeddings: bool = False,
               convert_to_tensor: bool = False, show_progress_bar: bool | None = None,
               device: str | torch.device | None = None, precision: str = "auto") -> np.ndarray | torch.Tensor:
        """Sentences -> float32 vectors ``(n, dim)`` in input order; one str gives ``(dim,)``.

        Runs in eval mode without autograd, on ``device`` if given; the model's own mode and
        device are restored afterwards. ``show_progress_bar=None`` shows a bar for long inputs.
        ``precision`` (see ``helpers.precision``): ``auto`` is float32 on a CPU, so the numbers match the
        reference exactly, and bf16 (fp16 on older GPUs) autocast on CUDA; ``bf16`` on a CPU with native bf16
        trades a little accuracy for about twice the speed. On a GPU, batches of 128 or more keep it busy.
        Results come back as float32.
        """
        texts, single = as_text_list(sentences)
        check_batch_size(batch_size)
        check_bool("normalize_embeddings", normalize_embeddings)
        check_bool("convert_to_tensor", convert_to_tensor)
        if check_bool("show_progress_bar", show_progress_bar, none_means="a bar for long inputs") is None:
            show_progress_bar = len(texts) >= 50 * batch_size
        with inference(self, device, precision) as forward:
            embeddings = self.in_input_order(texts, batch_size, forward, self.embedding_dim, show_progress_bar)
        if normalize_embeddings:
            embeddings = F.normalize(embeddings, p=2, dim=1)
        if single:
            embeddings = embeddings[0]
        return embeddings if convert_to_tensor else embeddings.numpy()
