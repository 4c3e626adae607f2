"""The frozen bottom, cached: same outputs, computed once per sentence, refused when it would be stale."""

import pandas as pd
import pytest
import torch

from helpers import TASKS, MultiTaskSentenceTransformer, TrainConfig, freeze, make_loader, set_seed, train
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
    assert layers[0].output.dense.weight.grad is None


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
