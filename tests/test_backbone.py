import hashlib

import pytest

from helpers import DEFAULT_MODEL, SentenceTransformer, load_backbone, resolve_model_path
from helpers.backbone import bundled_model_path

MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def test_bundled_weights_are_the_original_checkpoint():
    weights = bundled_model_path() / "model.safetensors"
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == MINILM_SHA256


def test_default_name_resolves_to_the_bundled_copy():
    assert resolve_model_path(DEFAULT_MODEL) == str(bundled_model_path())


def test_local_folder_is_used_as_is(tiny_model_dirs):
    folder = tiny_model_dirs["bert"]
    assert resolve_model_path(folder) == str(folder)
    assert resolve_model_path(str(folder)) == str(folder)


def test_other_names_go_to_the_hub_unchanged():
    assert resolve_model_path("bert-base-uncased") == "bert-base-uncased"


@pytest.mark.parametrize("path", ["./no/such/folder", "/no/such/model"])
def test_unknown_local_path_is_a_clear_error(path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        SentenceTransformer(path)


def test_unavailable_hub_model_names_the_model_and_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="(?s)no-such-org/no-such-model.*Fix: connect to the internet"):
        load_backbone("no-such-org/no-such-model")


@pytest.mark.parametrize("bad", [None, 3, ""])
def test_model_name_must_be_a_non_empty_string(bad):
    with pytest.raises(TypeError, match="model_name"):
        resolve_model_path(bad)


def test_loading_prints_nothing(capfd):
    load_backbone(DEFAULT_MODEL)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_max_seq_length_comes_from_the_sentence_transformers_config(minilm, tiny_model_dirs):
    assert minilm.max_seq_length == 256
    # No sentence_bert_config.json: fall back to the position-embedding limit.
    assert load_backbone(tiny_model_dirs["bert"])[2] == 130
