"""Compute once what stays frozen: the output of the encoder's frozen bottom, cached per sentence.

Explained and timed in notebook 03; the training command uses it (``--freeze bottom:k``). With the embeddings
and layers 0..k-1 frozen, their output for a sentence never changes, yet a plain loop recomputes it at every
step of every epoch.
``cache_frozen_bottom(model)`` runs the frozen bottom once per sentence, keeps its output (keyed by the
sentence's token ids), and from then on runs only layers k.. of the backbone. A training step then costs
about what the trainable layers cost. The frozen layers run as in inference (no dropout) and in float32 (also
under a caller's autocast) when they fill the cache, so a cached run differs slightly from an uncached one,
whose frozen layers still drop out.

What is guaranteed: the cache refuses to serve a bottom that trains again, and it is emptied (and refilled as
sentences pass) when a frozen weight is written in any of these ways: through the parameter itself
(``load_state_dict``, ``p.add_(...)`` or ``p.copy_(...)`` under ``no_grad``, an optimizer: each bumps the tensor's
version counter), by giving it other storage (``p.data = t``, ``vector_to_parameters``, moving the model to
another device), or through ``.data`` or any other tensor sharing its storage (``p.data.mul_(...)``), which
bumps no counter: that last kind is caught by comparing a fixed sample of each frozen tensor's values (all of
a tensor of up to ``SAMPLE`` values, ``SAMPLE`` positions of a larger one) at every step. What is not: such an
untracked write that changes only a few values of a large tensor (one row of the word embeddings, say) can miss
the sample; after one, drop the cache (``model.encoder.bottom_cache = None``) and cache again. A write that
changes a share f of a tensor's values goes unseen with probability (1 - f) ** SAMPLE: below 1e-4 from f = 1%.
The check costs about 0.5 ms a batch for MiniLM's 17 M frozen parameters (``bottom:3``) on a 2-core CPU, where
one pass over all their values costs 9 ms or more.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from . import distributed
from .checks import check_bool
from .parameters import components, layer_stack_owner


class _GivenHiddenStates(nn.Module):
    """Stands in for the embedding block: returns the hidden states passed as ``inputs_embeds``."""

    def forward(self, *args: torch.Tensor | None, **kwargs: torch.Tensor | None) -> torch.Tensor:
        given = kwargs.get("inputs_embeds")
        return given if given is not None else next(a for a in args if isinstance(a, torch.Tensor))


@contextlib.contextmanager
def _layers(backbone: nn.Module, layers: slice, given_input: bool) -> Iterator[None]:
    """Run ``backbone`` with only ``layers`` of its blocks (and, with ``given_input``, without its embedding
    block: ``inputs_embeds`` then enters the first block as it is); the backbone is whole again afterwards."""
    owner, attribute = layer_stack_owner(backbone)
    stack, embeddings = getattr(owner, attribute), backbone.embeddings
    try:
        setattr(owner, attribute, nn.ModuleList(stack[layers]))
        if given_input:
            backbone.embeddings = _GivenHiddenStates()
        yield
    finally:
        setattr(owner, attribute, stack)
        backbone.embeddings = embeddings


class BottomCache:
    """The output of the embeddings and layers 0..``n_layers``-1 for each sentence seen.

    Kept in CPU memory (about 40 KB per MiniLM sentence of 25 tokens, see ``cache_bytes``) and copied to the
    model's device per batch, so GPU memory stays free for training (the copy's cost on a GPU has not been
    measured). With ``training_only``, only what passes in training mode is kept (the training split, read at
    every step); what evaluation passes is computed, used and dropped.
    """

    def __init__(self, n_layers: int, training_only: bool = False) -> None:
        self.n_layers, self.training_only = n_layers, training_only
        self.trusted: set[tuple] = set()  # ``_weights_key`` of the frozen bottoms whose output the states are
        self._empty()

    def _empty(self) -> None:
        self.states: dict[bytes, torch.Tensor] = {}  # each a view of a slab
        self.slab, self.slab_used = torch.empty(0, 0), 0

    def __len__(self) -> int:
        return len(self.states)

    def forward_top(self, backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor
                    ) -> torch.Tensor:
        """Token vectors of the whole backbone, computing only layers ``n_layers``.. (and the bottom of
        sentences not seen before)."""
        self._forget_unless_trusted(_weights_key(self._check_still_frozen(backbone)))
        _check_right_padding(attention_mask)
        lengths = attention_mask.sum(dim=1).tolist()
        on_cpu = input_ids.cpu()  # one copy for the whole batch, not one per row
        keys = [on_cpu[row, :length].numpy().tobytes() for row, length in enumerate(lengths)]
        states = {key: self.states[key] for key in keys if key in self.states}
        missing = [row for row, key in enumerate(keys) if key not in states]
        if missing:
            computed = self._bottom(backbone, input_ids[missing], attention_mask[missing],
                                    [lengths[row] for row in missing])
            states.update(zip((keys[row] for row in missing), computed))
            if backbone.training or not self.training_only:
                self._keep([keys[row] for row in missing], computed)
        hidden = torch.zeros(*input_ids.shape, backbone.config.hidden_size)
        for row, (key, length) in enumerate(zip(keys, lengths)):
            hidden[row, :length] = states[key]
        hidden = hidden.to(input_ids.device)
        with _layers(backbone, slice(self.n_layers, None), given_input=True):
            return backbone(inputs_embeds=hidden, attention_mask=attention_mask).last_hidden_state

    def _keep(self, keys: list[bytes], states: list[torch.Tensor]) -> None:
        """Copy ``states`` into the slab, a block of ``SLAB_BYTES`` (a new one when it is full), and keep views of
        it: a tensor per sentence, or per batch, would leave the memory allocator holding more than twice the
        states' size in scattered free space (measured with glibc, which then maps slabs this size on their own)."""
        rows = sum(len(state) for state in states)
        # Outside inference mode even when called under it (predict, encode): a slab made there would be an
        # inference tensor, which training could not write its states into later.
        with torch.inference_mode(False):
            if self.slab_used + rows > len(self.slab):
                self.slab = torch.empty(max(rows, SLAB_BYTES // (4 * states[0].shape[1])), states[0].shape[1])
                self.slab_used = 0
            block = self.slab[self.slab_used:self.slab_used + rows]
            torch.cat(states, out=block)
            self.slab_used += rows
            self.states.update(zip(keys, block.split([len(state) for state in states])))

    def _bottom(self, backbone: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                lengths: list[int]) -> list[torch.Tensor]:
        """Each row's bottom output, its first ``length`` token vectors, on the CPU in float32."""
        was_training = backbone.training
        backbone.eval()  # frozen layers as in inference: no dropout in what is kept
        try:  # float32 whatever the caller's autocast: the states are kept, and read by float32 evaluation too
            with (torch.no_grad(), torch.autocast(input_ids.device.type, enabled=False),
                  _layers(backbone, slice(0, self.n_layers), given_input=False)):
                states = backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        finally:
            backbone.train(was_training)
        return [state[:length] for state, length in zip(states.float().cpu(), lengths)]

    def _check_still_frozen(self, backbone: nn.Module) -> list[nn.Parameter]:
        """The parameters of the cached bottom, after checking that none of them trains."""
        parameters = _bottom_parameters(backbone, self.n_layers)
        if any(p.requires_grad for p in parameters):
            raise ValueError(f"the cached bottom ({', '.join(_bottom(self.n_layers))}) is no longer frozen, so its "
                             "cached output would be stale; freeze it again, or drop the cache with "
                             "model.encoder.bottom_cache = None")
        return parameters

    def _forget_unless_trusted(self, key: tuple) -> None:
        """Empty the cache unless ``key`` names frozen weights its states were computed with (or that were found
        equal to them): other weights make every state stale."""
        if key not in self.trusted:
            self._empty()
            self.trusted = {key}


SAMPLE = 1024  # values of each frozen tensor compared at every step (see the module docstring)


def _weights_key(parameters: list[nn.Parameter]) -> tuple:
    """Which tensors, in which storage, at which version, holding which sampled values (see the module docstring).

    Every in-place write through a parameter bumps its version counter (the one autograd uses to catch in-place
    edits); new storage moves its data pointer; writes through ``.data`` change neither, so a fixed sample of
    the values is part of the key. Computing a key costs about 0.5 ms for MiniLM, not a pass over the weights."""
    identity = tuple((id(p), p.data_ptr(), p._version) for p in parameters)
    sample = torch.cat([p.detach().reshape(-1)[_positions(p.numel(), p.device)] for p in parameters])
    return identity, sample.cpu().numpy().tobytes()


@functools.cache
def _positions(numel: int, device: torch.device) -> torch.Tensor:
    """The positions sampled in a tensor of ``numel`` values: all of them, or ``SAMPLE`` fixed random ones."""
    if numel <= SAMPLE:
        return torch.arange(numel, device=device)
    return torch.randint(numel, (SAMPLE,), generator=torch.Generator().manual_seed(numel)).to(device)


def _check_right_padding(attention_mask: torch.Tensor) -> None:
    """The states are stored per sentence as its first ``length`` token vectors, which needs right padding."""
    if (attention_mask[:, 1:] > attention_mask[:, :-1]).any():
        raise ValueError("the frozen-bottom cache needs right padding (the attention mask of each row: ones, then "
                         "zeros), but a row starts with padding; set tokenizer.padding_side = 'right', or drop the "
                         "cache with model.encoder.bottom_cache = None")


def _bottom(depth: int) -> list[str]:
    """The components a bottom of ``depth`` layers spans (see ``helpers.parameters.components``)."""
    return ["embeddings", *(f"layer {i}" for i in range(depth))]


def _bottom_parameters(backbone: nn.Module, depth: int) -> list[nn.Parameter]:
    groups = components(backbone)
    return [parameter for name in _bottom(depth) for parameter in groups[name]]


def frozen_bottom_depth(model: nn.Module) -> int:
    """How many layers, above the embeddings, are frozen from the bottom up (-1: the embeddings train)."""
    groups = components(model)
    if any(p.requires_grad for p in groups["embeddings"]):
        return -1
    depth = 0
    while f"layer {depth}" in groups and not any(p.requires_grad for p in groups[f"layer {depth}"]):
        depth += 1
    return depth


SLAB_BYTES = 64 * 2**20  # the states are kept in slabs of this size (see ``BottomCache._keep``)
ENTRY_BYTES = 1000  # per cached sentence besides its vectors and key: a tensor view, a dict slot (measured)


def cache_bytes(encoder: nn.Module, texts: Sequence[str], sample: int = 1000) -> int:
    """About the memory that caching ``encoder``'s frozen bottom for ``texts`` takes: per sentence, 4 bytes per
    hidden value and 8 per token id (its key) for each of its tokens, plus ``ENTRY_BYTES``. Token counts come
    from up to ``sample`` of the texts (a seeded draw: no global random state moves)."""
    if not texts:
        return 0
    picked = random.Random(0).sample(list(texts), min(sample, len(texts)))
    ids = encoder.tokenizer(encoder.prepared(picked), truncation=True, max_length=encoder.max_seq_length,
                            return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    tokens = sum(len(row) for row in ids) / len(ids)
    return round(len(texts) * (ENTRY_BYTES + tokens * (4 * encoder.embedding_dim + 8)))


def worth_caching(model: nn.Module) -> bool:
    """Whether caching ``model``'s frozen bottom pays: the embeddings and at least one layer are frozen. The
    embeddings alone are a table lookup, cheaper to recompute than to keep (and, kept, they would skip dropout)."""
    return frozen_bottom_depth(model) >= 1


def cache_frozen_bottom(model: nn.Module, share_with: nn.Module | None = None, depth: int | None = None,
                        training_only: bool = False) -> BottomCache:
    """Cache the output of ``model``'s frozen bottom (see the module docstring); returns the cache, which
    fills as sentences pass. ``model`` is a MultiTaskSentenceTransformer or a SentenceTransformer.

    ``share_with``: a model already cached whose frozen bottom has the same depth and the same weights (two
    models built from one pretrained encoder): ``model`` then reads and fills that model's cache.
    ``depth``: cache only the lowest ``depth`` layers (default: every frozen one), e.g. to share a cache.
    ``training_only``: a cache of its own keeps only what passes in training mode (see ``BottomCache``), for
    when memory is short.
    """
    frozen = frozen_bottom_depth(model)
    if depth is not None and not 0 <= depth <= frozen:
        raise ValueError(f"depth must be between 0 and the {frozen} frozen layer(s) at the bottom, got {depth!r}")
    depth = frozen if depth is None else depth
    if depth < 0:
        raise ValueError("the embeddings train, so nothing at the bottom of the encoder is frozen to cache; "
                         "freeze it first, e.g. freeze(model, 'bottom:4')")
    if distributed.is_distributed():
        raise ValueError("cache_frozen_bottom runs in one process only: under torchrun each rank would cache "
                         "its own share; train without the cache there")
    encoder = getattr(model, "encoder", model)
    if share_with is None:
        encoder.bottom_cache = BottomCache(depth, check_bool("training_only", training_only))
    else:
        encoder.bottom_cache = _shareable_cache(encoder, getattr(share_with, "encoder", share_with), depth)
    return encoder.bottom_cache


def _shareable_cache(encoder: nn.Module, other: nn.Module, depth: int) -> BottomCache:
    cache = getattr(other, "bottom_cache", None)
    if cache is None or cache.n_layers != depth:
        raise ValueError(f"share_with must be a model whose cached bottom is {depth} layer(s) deep, like this "
                         f"model's; it has {'no cache' if cache is None else f'{cache.n_layers} layer(s)'}")
    mine, theirs = _bottom_parameters(encoder.backbone, depth), _bottom_parameters(other.backbone, depth)
    if not all(torch.equal(a, b) for a, b in zip(mine, theirs, strict=True)):
        raise ValueError("share_with has other weights in its frozen bottom, so its cached outputs would be "
                         "wrong for this model; cache this model on its own")
    cache._forget_unless_trusted(_weights_key(theirs))  # states of weights it no longer has are stale for both
    cache.trusted.add(_weights_key(mine))
    return cache
