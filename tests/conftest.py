"""Shared fixtures: the real MiniLM (bundled, offline), the reference library, tiny random backbones."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import BertConfig, DistilBertConfig, RobertaConfig

from helpers import SentenceTransformer
from helpers.backbone import bundled_model_path, load_backbone

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "max_position_embeddings": 130}
TINY_CONFIGS = {
    "bert": lambda: BertConfig(**TINY),
    "roberta": lambda: RobertaConfig(**TINY, pad_token_id=0),  # shares MiniLM's tokenizer, whose pad id is 0
    "distilbert": lambda: DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=130),
}


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformer:
    return SentenceTransformer()


@pytest.fixture(scope="session")
def reference():
    sentence_transformers = pytest.importorskip("sentence_transformers")
    return sentence_transformers.SentenceTransformer(str(bundled_model_path()), device="cpu")


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Folders holding tiny random BERT, RoBERTa and DistilBERT models (no downloads)."""
    from transformers import AutoModel

    _, tokenizer, _ = load_backbone(bundled_model_path())
    folders = {}
    for arch, make_config in TINY_CONFIGS.items():
        config = make_config()
        config.vocab_size = tokenizer.vocab_size
        folder = tmp_path_factory.mktemp(f"tiny-{arch}")
        AutoModel.from_config(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders[arch] = folder
    return folders


@pytest.fixture(scope="session")
def corpus():
    from helpers import load_corpus

    return load_corpus()


@pytest.fixture(scope="session")
def corpus_embeddings(minilm, corpus):
    """Unit-length MiniLM embeddings of every corpus sentence, in file order."""
    return minilm.encode(corpus["text"].tolist(), batch_size=64, normalize_embeddings=True)


@pytest.fixture(scope="session")
def hard_cases():
    from helpers import load_corpus
    from helpers.data import HARD_CASES_PATH

    return load_corpus(HARD_CASES_PATH)
