"""The frozen bottom, cached: same outputs, computed once per sentence, refused when it would be stale."""

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import TASKS, MultiTaskSentenceTransformer, TrainConfig, caching, freeze, make_loader, set_seed, train
from helpers.caching import cache_frozen_bottom, frozen_bottom_depth
from helpers.parameters import transformer_layers

TEXTS = ["the team won the cup final", "markets fell on weak earnings", "a new chip doubles battery life",
         "leaders signed the peace treaty", "the striker missed every chance in a long and dull game",
         "the bank posted record profit", "the update crashed my phone", "floods displaced thousands"]
FRAME = pd.DataFrame({"text": TEXTS, "topic": ["sports", "business", "sci_tech", "world"] * 2,
                      "sentiment": ["positive", "negative"] * 4})


def model_of(folder, strategy: str = "bottom:1") -> MultiTaskSentenceTransformer:
    set_seed(0)
    return freeze(MultiTaskSentenceTransformer(TASKS, folder), strategy)


@pytest.mark.parametrize("architecture", ["bert", "roberta", "distilbert"])
def test_the_cached_model_gives_the_same_outputs(tiny_model_dirs, architecture):
    model = model_of(tiny_model_dirs[architecture]).eval()
    batch = model.tokenize(TEXTS)
    with torch.no_grad():
        plain = model(**batch)
        cache_frozen_bottom(model)
        for _ in range(2):  # filling the cache, then reading it
            cached = model(**batch)
            for task in TASKS:
                torch.testing.assert_close(cached[task], plain[task], rtol=0, atol=1e-5)
    assert len(transformer_layers(model.encoder.backbone)) == 2  # the backbone is whole again


def test_the_frozen_bottom_runs_once_per_sentence_and_only_the_top_trains(tiny_model_dirs):
    model = model_of(tiny_model_dirs["bert"])
    rows_through = {"layer 0": 0, "layer 1": 0}
    layers = transformer_layers(model.encoder.backbone)
    for name, layer in zip(rows_through, layers):
        layer.register_forward_hook(lambda module, args, output, name=name: rows_through.__setitem__(
            name, rows_through[name] + args[0].shape[0]))
    cache = cache_frozen_bottom(model)
    top_before = layers[1].output.dense.weight.detach().clone()
    train(model, make_loader(FRAME, model.tokenize, batch_size=3, shuffle=True), None,
          TrainConfig(epochs=3, lr=1e-3, device="cpu", warmup_ratio=0.0))
    assert rows_through == {"layer 0": len(TEXTS), "layer 1": 3 * len(TEXTS)}
    assert len(cache) == len(TEXTS)
    assert not torch.equal(layers[1].output.dense.weight, top_before)


def test_the_depth_is_what_is_frozen_from_the_bottom(tiny_model_dirs):
    model = model_of(tiny_model_dirs["bert"], "none")
    assert frozen_bottom_depth(model) == -1
    assert frozen_bottom_depth(freeze(model, "embeddings")) == 0
    assert frozen_bottom_depth(freeze(model, "bottom:2")) == 2
    assert frozen_bottom_depth(freeze(model, "backbone")) == 2


def test_nothing_frozen_means_nothing_to_cache(tiny_model_dirs):
    with pytest.raises(ValueError, match=r"nothing at the bottom of the encoder is frozen.*'bottom:4'"):
        cache_frozen_bottom(model_of(tiny_model_dirs["bert"], "none"))


def test_a_bottom_unfrozen_after_caching_is_refused(tiny_model_dirs):
    model = model_of(tiny_model_dirs["bert"])
    cache_frozen_bottom(model)
    freeze(model, "none")
    with pytest.raises(ValueError, match="no longer frozen, so its cached output would be stale"):
        model(**model.tokenize(TEXTS[:2]))
    model.encoder.bottom_cache = None
    assert set(model(**model.tokenize(TEXTS[:2]))) == set(TASKS)


def test_two_models_with_the_same_frozen_bottom_share_one_cache(tiny_model_dirs):
    first, second = model_of(tiny_model_dirs["bert"]), model_of(tiny_model_dirs["bert"])
    cache = cache_frozen_bottom(first)
    assert cache_frozen_bottom(second, share_with=first) is cache
    with torch.no_grad():
        second.encoder.backbone.embeddings.word_embeddings.weight[0, 0] += 1.0
    with pytest.raises(ValueError, match="share_with has other weights in its frozen bottom"):
        cache_frozen_bottom(second, share_with=first)
    with pytest.raises(ValueError, match="cached bottom is 0 layer"):
        cache_frozen_bottom(model_of(tiny_model_dirs["bert"], "embeddings"), share_with=first)


def test_a_shallower_cache_than_what_is_frozen_can_be_shared(tiny_model_dirs):
    layer_one = model_of(tiny_model_dirs["bert"], "bottom:1")
    cache = cache_frozen_bottom(layer_one)
    heads_only = model_of(tiny_model_dirs["bert"], "backbone").eval()
    batch = heads_only.tokenize(TEXTS)
    with torch.no_grad():
        plain = heads_only(**batch)
        assert cache_frozen_bottom(heads_only, share_with=layer_one, depth=1) is cache
        cached = heads_only(**batch)
    for task in TASKS:
        torch.testing.assert_close(cached[task], plain[task], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="depth must be between 0 and the 1 frozen layer"):
        cache_frozen_bottom(layer_one, depth=2)


def cached_and_plain(model, batch) -> tuple[dict, dict]:
    """The model's outputs read from its cache (filled already) and computed without it, in float32."""
    with torch.no_grad():
        cached = model(**batch)
        cache, model.encoder.bottom_cache = model.encoder.bottom_cache, None
        plain = model(**batch)
        model.encoder.bottom_cache = cache
    return cached, plain


def test_the_cache_fills_in_float32_under_a_callers_autocast(tiny_model_dirs):
    model = model_of(tiny_model_dirs["bert"]).eval()
    batch = model.tokenize(TEXTS)
    cache_frozen_bottom(model)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(**batch)  # fills the cache, as a bf16 training step would
    assert all(state.dtype == torch.float32 for state in cache_states(model))
    cached, plain = cached_and_plain(model, batch)  # float32 evaluation reads what bf16 training filled
    for task in TASKS:
        torch.testing.assert_close(cached[task], plain[task], rtol=0, atol=1e-5)


def cache_states(model) -> list[torch.Tensor]:
    return list(model.encoder.bottom_cache.states.values())


def _bottom_tensors(model) -> list[torch.nn.Parameter]:
    backbone = model.encoder.backbone
    return [*backbone.embeddings.parameters(), *transformer_layers(backbone)[0].parameters()]


def _shift(tensor: torch.Tensor) -> torch.Tensor:
    """Noise, not a constant: LayerNorm would remove one."""
    return 0.1 * torch.randn(tensor.shape, generator=torch.Generator().manual_seed(0))


# Every way of writing a frozen weight: through the parameter (its version counter moves), new storage (its data
# pointer moves), and through .data or a NumPy view of its storage (neither moves: the sampled values do).
WRITES = {
    "load_state_dict": lambda model, other: model.load_state_dict(other.state_dict()),
    "in-place edit": lambda model, other: model.encoder.backbone.embeddings.word_embeddings.weight.add_(
        _shift(model.encoder.backbone.embeddings.word_embeddings.weight)),
    ".data in place": lambda model, other: transformer_layers(model.encoder.backbone)[0].output.dense.weight.data
    .mul_(1.5),
    ".data copied into": lambda model, other: [mine.data.copy_(theirs) for mine, theirs in
                                               zip(_bottom_tensors(model), _bottom_tensors(other))],
    ".data replaced": lambda model, other: [setattr(p, "data", p.data + _shift(p)) for p in _bottom_tensors(model)],
    "vector_to_parameters": lambda model, other: torch.nn.utils.vector_to_parameters(
        torch.nn.utils.parameters_to_vector(_bottom_tensors(other)), _bottom_tensors(model)),
    "a NumPy view": lambda model, other: np.multiply(
        transformer_layers(model.encoder.backbone)[0].output.dense.weight.detach().numpy(), 1.5,
        out=transformer_layers(model.encoder.backbone)[0].output.dense.weight.detach().numpy()),
    "one value of a small tensor through .data": lambda model, other: transformer_layers(
        model.encoder.backbone)[0].output.LayerNorm.weight.data.__setitem__(3, 2.0),
    "one unsampled value through the parameter": lambda model, other: _layer_0_output(model).view(-1)[
        _unsampled(model)].add_(1.0),
    "one unsampled value in new storage": lambda model, other: setattr(
        _layer_0_output(model), "data", _layer_0_output(model).detach().clone().view(-1).index_add_(
            0, torch.tensor([_unsampled(model)]), torch.ones(1)).view_as(_layer_0_output(model))),
}


def _layer_0_output(model) -> torch.nn.Parameter:
    return transformer_layers(model.encoder.backbone)[0].output.dense.weight


def _unsampled(model) -> int:
    """The position of a value of layer 0's output weight (2,048 values) that the cache's sample leaves out."""
    weight = _layer_0_output(model)
    return min(set(range(weight.numel())) - set(caching._positions(weight.numel(), weight.device).tolist()))


@pytest.mark.parametrize("write", WRITES)
def test_new_frozen_weights_empty_the_cache(tiny_model_dirs, write):
    model, other = model_of(tiny_model_dirs["bert"]).eval(), model_of(tiny_model_dirs["bert"])
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    batch = model.tokenize(TEXTS)
    cache_frozen_bottom(model)
    with torch.no_grad():
        before = model(**batch)  # filled with the first weights
        WRITES[write](model, other)
    cached, plain = cached_and_plain(model, batch)
    assert not torch.allclose(plain["topic"], before["topic"], rtol=0, atol=1e-4)  # the write changed the outputs
    for task in TASKS:
        torch.testing.assert_close(cached[task], plain[task], rtol=0, atol=1e-5)


def test_a_shared_cache_stays_right_for_both_models_when_one_gets_new_weights(tiny_model_dirs):
    first, second = model_of(tiny_model_dirs["bert"]).eval(), model_of(tiny_model_dirs["bert"]).eval()
    batch = first.tokenize(TEXTS)
    cache_frozen_bottom(first)
    with torch.no_grad():
        first(**batch)
    cache_frozen_bottom(second, share_with=first)
    with torch.no_grad():
        second(**batch)
        assert len(first.encoder.bottom_cache) == len(TEXTS)  # read, not refilled: the same weights
        first.encoder.backbone.embeddings.word_embeddings.weight.mul_(1.5)
    for model in (first, second, first):
        cached, plain = cached_and_plain(model, batch)
        for task in TASKS:
            torch.testing.assert_close(cached[task], plain[task], rtol=0, atol=1e-5)


def test_left_padding_is_refused(tiny_model_dirs):
    model = model_of(tiny_model_dirs["bert"])
    cache_frozen_bottom(model)
    model.encoder.tokenizer.padding_side = "left"
    try:
        with pytest.raises(ValueError, match=r"needs right padding.*padding_side = 'right'"):
            model(**model.tokenize(TEXTS))
    finally:
        model.encoder.tokenizer.padding_side = "right"


def test_restoring_the_best_checkpoint_keeps_the_cache(tiny_model_dirs):
    """Catches a restore that rewrites the frozen weights too, which empties the cache at the end of every run."""
    model = model_of(tiny_model_dirs["bert"])
    cache = cache_frozen_bottom(model)
    loader = make_loader(FRAME, model.tokenize, batch_size=4, shuffle=True)
    train(model, loader, make_loader(FRAME, model.tokenize, batch_size=4),
          TrainConfig(epochs=2, lr=1e-3, device="cpu", eval_every=1))
    assert len(cache) == len(TEXTS)


def test_the_estimate_counts_each_sentences_tokens(tiny_model_dirs, monkeypatch):
    encoder = model_of(tiny_model_dirs["bert"]).encoder
    per_token = 4 * encoder.embedding_dim + 8  # float32 states and an int64 key
    texts = ["one two three", "four five six seven eight nine ten"]  # 5 and 9 tokens with [CLS] and [SEP]
    assert caching.cache_bytes(encoder, texts) == 2 * caching.ENTRY_BYTES + 14 * per_token
    tokenized = []
    monkeypatch.setattr(encoder, "prepared", lambda batch: tokenized.append(len(batch)) or batch)
    same_length = [f"sentence {i} here" for i in range(50)]  # 5 tokens each
    assert caching.cache_bytes(encoder, same_length, sample=4) == 50 * (caching.ENTRY_BYTES + 5 * per_token)
    assert tokenized == [4]  # a sample stands for the rest
    assert caching.cache_bytes(encoder, []) == 0
    encoder.max_seq_length = 3
    assert caching.cache_bytes(encoder, texts) == 2 * (caching.ENTRY_BYTES + 3 * per_token)  # truncated, as cached


def test_a_training_only_cache_keeps_what_training_passes_and_computes_the_rest(tiny_model_dirs):
    model = model_of(tiny_model_dirs["bert"])
    cache = cache_frozen_bottom(model, training_only=True)
    train_batch, other_batch = model.tokenize(TEXTS[:4]), model.tokenize(TEXTS[4:])
    with torch.no_grad():
        model.train()
        model(**train_batch)
        model.eval()
        cached, plain = cached_and_plain(model, other_batch)
    assert len(cache) == 4  # the evaluation batch was computed, used and dropped
    for task in TASKS:
        torch.testing.assert_close(cached[task], plain[task], rtol=0, atol=1e-5)
    cached, plain = cached_and_plain(model, train_batch)
    for task in TASKS:
        torch.testing.assert_close(cached[task], plain[task], rtol=0, atol=1e-5)


def test_states_spread_over_several_slabs_stay_right(tiny_model_dirs, monkeypatch):
    monkeypatch.setattr(caching, "SLAB_BYTES", 4 * 32 * 12)  # 12 token vectors of 32 values: a slab per batch or so
    model = model_of(tiny_model_dirs["bert"]).eval()
    cache = cache_frozen_bottom(model)
    with torch.no_grad():
        for start in range(0, len(TEXTS), 3):
            model(**model.tokenize(TEXTS[start:start + 3]))
    assert len({state.untyped_storage().data_ptr() for state in cache.states.values()}) > 2
    cached, plain = cached_and_plain(model, model.tokenize(TEXTS))
    for task in TASKS:
        torch.testing.assert_close(cached[task], plain[task], rtol=0, atol=1e-5)


def test_a_cache_filled_under_inference_mode_goes_on_filling_in_training(tiny_model_dirs):
    """predict and encode run under torch.inference_mode: a slab made there must still take training's states."""
    model = model_of(tiny_model_dirs["bert"])
    cache = cache_frozen_bottom(model)
    model.predict(TEXTS[:4])  # fills the cache, and starts its slab, in inference mode
    train(model, make_loader(FRAME, model.tokenize, batch_size=4, shuffle=True), None,
          TrainConfig(epochs=1, lr=1e-3, device="cpu", warmup_ratio=0.0))  # the other four sentences join it
    assert len(cache) == len(TEXTS)
    cached, plain = cached_and_plain(model, model.tokenize(TEXTS))
    for task in TASKS:
        torch.testing.assert_close(cached[task], plain[task], rtol=0, atol=1e-5)
