import numpy as np
import pandas as pd
import pytest
import torch

from helpers import POOLING_MODES, SentenceTransformer
from helpers.precision import cpu_has_native_bf16

BASES = [
    "A man is playing a guitar.", "The cat sleeps on the warm windowsill.", "Stocks slid after the rate decision.",
    "Is this the right train for the airport?", "I can't believe it's already December!!!",
    "The striker scored twice in the second half.", "Quantum computers may break today's encryption.",
    "Parliament voted to extend the ceasefire by a month.", "Best. Pizza. Ever. 🍕🍕", "meh",
    "Das Wetter ist heute wunderbar.", "Le gouvernement a annoncé de nouvelles mesures.",
    "¿Dónde está la biblioteca?", "東京は日本の首都です。", "Привет, как дела?", "Αυτό είναι ελληνικό κείμενο.",
    "e = mc^2, or so they say...", "Email me at someone@example.com before 5pm.", "#MondayMotivation 💪🔥",
    "The new phone's battery barely lasts a day — disappointing.", "(parenthetical) [bracketed] {braced}",
    "   leading and trailing spaces   ", "ALL CAPS HEADLINE ABOUT A MERGER", "1234567890", "!!!???...",
    "Not bad at all, honestly.", "Despite the delay, the launch went flawlessly.", "\tTabs\tand\nnewlines\n",
    "URL: https://example.org/path?query=1&x=2", "The quick brown fox jumps over the lazy dog.",
]


def fidelity_sentences() -> list[str]:
    """Over 200 varied sentences: short, long (> 256 tokens), punctuation, emoji, non-English, empty."""
    long_text = " ".join(BASES * 4)  # far beyond 256 tokens
    sentences = ["", " "]
    for i, base in enumerate(BASES):
        sentences += [base, base.upper(), base.lower() + " 😀", f"{base} {BASES[(i + 7) % len(BASES)]}",
                      f"“{base}” — she said.", long_text[i * 11:] + base, base * 3]
    return sentences


def test_matches_the_reference_library(minilm, reference):
    sentences = fidelity_sentences()
    assert len(sentences) >= 200
    assert max(len(minilm.tokenizer(s)["input_ids"]) for s in sentences) > 256
    ours = minilm.encode(sentences, normalize_embeddings=True)
    theirs = reference.encode(sentences, normalize_embeddings=True, batch_size=32)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1e-5


def test_empty_string_gives_the_reference_vector(minilm, reference):
    ours = minilm.encode("")
    assert ours.shape == (384,) and np.isfinite(ours).all() and np.abs(ours).sum() > 0
    # all-MiniLM-L6-v2 ships a Normalize module, so the reference always returns unit vectors.
    assert np.abs(ours / np.linalg.norm(ours) - reference.encode("")).max() <= 1e-5


def test_shapes(minilm):
    assert minilm.encode("one sentence").shape == (384,)
    assert minilm.encode(["a", "b", "c"]).shape == (3, 384)
    assert minilm.encode([]).shape == (0, 384)
    assert minilm.encode([], convert_to_tensor=True).shape == (0, 384)


def test_input_order_is_restored_across_length_sorted_batches(minilm):
    sentences = ["short", "a much longer sentence than the others, with many more tokens in it", "mid size one"]
    together = minilm.encode(sentences, batch_size=2)
    one_by_one = np.stack([minilm.encode(s) for s in sentences])
    assert np.allclose(together, one_by_one, atol=1e-5)


@pytest.mark.parametrize("container", [list, tuple, np.array, pd.Series])
def test_accepts_common_containers(minilm, container):
    sentences = ["first sentence", "second one"]
    assert np.allclose(minilm.encode(container(sentences)), minilm.encode(sentences), atol=1e-6)


def test_normalized_vectors_have_unit_norm(minilm):
    vectors = minilm.encode(["hello", "a different sentence"], normalize_embeddings=True)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_convert_to_tensor(minilm):
    vectors = minilm.encode(["hello"], convert_to_tensor=True)
    assert isinstance(vectors, torch.Tensor) and vectors.dtype == torch.float32


def test_truncates_at_max_seq_length(minilm):
    words = " ".join(f"word{i}" for i in range(400))
    truncated_ids = minilm.tokenizer(words, truncation=True, max_length=256)["input_ids"]
    truncated_text = minilm.tokenizer.decode(truncated_ids[1:-1])
    assert np.allclose(minilm.encode(words), minilm.encode(truncated_text), atol=1e-5)


@pytest.mark.parametrize("bad, position, type_name", [
    (["ok", None], 1, "NoneType"), ([3], 0, "int"), (["ok", "ok", b"bytes"], 2, "bytes"), ([["nested"]], 0, "list"),
])
def test_non_strings_name_position_and_type(minilm, bad, position, type_name):
    with pytest.raises(TypeError, match=rf"sentences\[{position}\] is {type_name}"):
        minilm.encode(bad)


@pytest.mark.parametrize("bad", [None, 42, b"bytes"])
def test_non_sequence_input_is_a_type_error(minilm, bad):
    with pytest.raises(TypeError, match="sentences must be"):
        minilm.encode(bad)


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_bad_batch_size(minilm, batch_size):
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        minilm.encode(["a"], batch_size=batch_size)


def test_unknown_pooling_lists_choices():
    with pytest.raises(ValueError, match=r"\['cls', 'max', 'mean'\]"):
        SentenceTransformer(pooling="avg")


def test_encode_restores_training_mode(minilm):
    minilm.train()
    try:
        minilm.encode(["x"])
        assert minilm.training and all(m.training for m in minilm.modules())
    finally:
        minilm.eval()
    minilm.encode(["x"])
    assert not minilm.training


def test_encode_on_another_device_moves_back(minilm, monkeypatch):
    moves = []
    original_to = torch.nn.Module.to

    def recording_to(module, *args, **kwargs):
        if module is minilm:
            moves.append(torch.device(args[0]))
        return original_to(module, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "to", recording_to)
    # "cpu:0" differs from the model's "cpu" as a device object, so encode must move there and back.
    minilm.encode(["x"], device="cpu:0")
    assert moves == [torch.device("cpu:0"), torch.device("cpu")]
    assert minilm.device == torch.device("cpu")


def test_forward_returns_batch_by_dim(minilm):
    batch = minilm.tokenize(["one", "two words"])
    assert minilm(**batch).shape == (2, 384)


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("pooling", POOLING_MODES)
def test_every_pooling_works_with_tiny_architectures(tiny_model_dirs, arch, pooling):
    model = SentenceTransformer(tiny_model_dirs[arch], pooling=pooling)
    vectors = model.encode(["a short one", "and a somewhat longer sentence here", ""])
    assert vectors.shape == (3, 32) and np.isfinite(vectors).all()
    batch = model.tokenize(["a short one", "and a somewhat longer sentence here"])
    assert model(**batch).shape == (2, 32)


def test_auto_precision_on_a_cpu_is_exactly_fp32(minilm):
    sentences = ["On a CPU, auto keeps float32.", "So the numbers match the reference exactly."]
    assert np.array_equal(minilm.encode(sentences), minilm.encode(sentences, precision="fp32"))


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="needs a CPU with native bf16")
def test_cpu_bf16_stays_within_cosine_0999_of_fp32(minilm):
    sentences = fidelity_sentences()
    fast = minilm.encode(sentences, batch_size=64, normalize_embeddings=True, precision="bf16")
    exact = minilm.encode(sentences, batch_size=64, normalize_embeddings=True, precision="fp32")
    assert not np.array_equal(fast, exact)  # autocast really ran
    assert (fast * exact).sum(axis=1).min() >= 0.999


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_bf16_stays_within_cosine_0999_of_fp32(minilm):
    sentences = fidelity_sentences()
    fast = minilm.encode(sentences, device="cuda", batch_size=128, normalize_embeddings=True)
    exact = minilm.encode(sentences, device="cuda", batch_size=128, normalize_embeddings=True, precision="fp32")
    assert (fast * exact).sum(axis=1).min() >= 0.999
    assert minilm.device.type == "cpu"
