import hashlib
import json

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from torch.optim.optimizer import register_optimizer_step_pre_hook

from helpers import (
    DEFAULT_MODEL,
    TASKS,
    MultiTaskSentenceTransformer,
    SentenceTransformer,
    TrainConfig,
    load_backbone,
    make_loader,
    resolve_model_path,
    set_seed,
    train,
)
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


@pytest.fixture(scope="module", params=[torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def half_precision_folder(request, tiny_model_dirs, tmp_path_factory):
    """The tiny BERT saved in half precision: its config declares that dtype, its weights are stored in it."""
    backbone, tokenizer, _ = load_backbone(tiny_model_dirs["bert"])
    folder = tmp_path_factory.mktemp(f"tiny-{request.param}")
    backbone.to(request.param).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["dtype"] == str(request.param).removeprefix("torch.")
    return folder, request.param


def test_a_half_precision_checkpoint_loads_as_float32_master_weights(half_precision_folder):
    folder, dtype = half_precision_folder
    stored = load_file(folder / "model.safetensors")
    backbone = SentenceTransformer(folder).backbone
    assert {p.dtype for p in backbone.parameters()} == {torch.float32}
    weights = backbone.state_dict()
    assert all(torch.equal(weights[name], tensor.float()) for name, tensor in stored.items() if name in weights)


def test_a_model_on_a_half_precision_checkpoint_trains_saves_and_loads_in_float32(half_precision_folder, tmp_path):
    folder, _ = half_precision_folder
    set_seed(0)
    model = MultiTaskSentenceTransformer(TASKS, folder)
    frame = pd.DataFrame({"text": ["the team won", "markets fell", "a new chip", "peace talks"],
                          "topic": ["sports", "business", "sci_tech", "world"],
                          "sentiment": ["positive", "negative", "positive", "positive"]})
    gradient_dtypes = set()  # as the optimizer sees them: train releases the gradients when it ends

    def record(optimizer, args, kwargs) -> None:
        gradient_dtypes.update(p.grad.dtype for group in optimizer.param_groups for p in group["params"]
                               if p.grad is not None)

    handle = register_optimizer_step_pre_hook(record)
    try:
        train(model, make_loader(frame, model.tokenize, batch_size=4), None,
              TrainConfig(epochs=1, lr=1e-3, warmup_ratio=0.0, device="cpu", precision="fp32"))
    finally:
        handle.remove()
    assert gradient_dtypes == {torch.float32}
    model.save(tmp_path / "model")
    loaded = MultiTaskSentenceTransformer.load(tmp_path / "model")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert all(torch.equal(value, loaded.state_dict()[name]) for name, value in model.state_dict().items())
    loaded.encoder.save(tmp_path / "encoder")
    assert json.loads((tmp_path / "encoder" / "config.json").read_text())["dtype"] == "float32"
