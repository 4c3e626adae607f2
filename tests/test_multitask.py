import json

import pandas as pd
import pytest
import torch

from helpers import TASKS, MultiTaskSentenceTransformer, set_seed
from helpers.multitask import CONFIG_FILE, WEIGHTS_FILE


@pytest.fixture(scope="module")
def tiny(tiny_model_dirs):
    set_seed(0)
    return MultiTaskSentenceTransformer(TASKS, model_name=tiny_model_dirs["bert"])


def batch_of(model, texts=("a first sentence", "and another, longer sentence here")):
    return model.tokenize(list(texts))


def test_forward_returns_logits_per_task(tiny):
    logits = tiny(**batch_of(tiny))
    assert {task: tuple(v.shape) for task, v in logits.items()} == {"topic": (2, 4), "sentiment": (2, 2)}


def test_heads_are_registered_parameters(tiny):
    names = {name for name, _ in tiny.named_parameters()}
    assert {"heads.topic.weight", "heads.sentiment.bias"} <= names


def test_hidden_layer_head(tiny_model_dirs):
    model = MultiTaskSentenceTransformer({"a": ["x", "y", "z"]}, tiny_model_dirs["bert"], hidden_dim=16)
    assert model(**batch_of(model))["a"].shape == (2, 3)
    assert sum(p.numel() for p in model.heads.parameters()) == (32 + 1) * 16 + (16 + 1) * 3


def test_a_loss_on_one_task_leaves_the_other_head_without_gradient_but_trains_the_encoder(tiny):
    tiny.zero_grad(set_to_none=True)
    tiny(**batch_of(tiny))["topic"].sum().backward()
    assert all(p.grad is None for p in tiny.heads["sentiment"].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in tiny.heads["topic"].parameters())
    topic_grad = [p.grad.clone() for p in tiny.encoder.parameters() if p.grad is not None]
    assert topic_grad and any(g.abs().sum() > 0 for g in topic_grad)
    tiny.zero_grad(set_to_none=True)
    tiny(**batch_of(tiny))["sentiment"].sum().backward()
    sentiment_grad = [p.grad for p in tiny.encoder.parameters() if p.grad is not None]
    assert any(g.abs().sum() > 0 for g in sentiment_grad)  # the encoder learns from both tasks
    tiny.zero_grad(set_to_none=True)


def test_predict_returns_labels_and_probabilities_in_input_order(tiny):
    texts = ["short", "a much longer sentence than the first one, with more tokens", "medium one here"]
    frame = tiny.predict(texts, batch_size=2)
    assert list(frame.columns) == ["text", "topic", "topic_prob", "sentiment", "sentiment_prob"]
    assert frame["text"].tolist() == texts
    assert frame["topic"].isin(TASKS["topic"]).all() and frame["sentiment"].isin(TASKS["sentiment"]).all()
    assert frame["topic_prob"].between(0.25, 1).all() and frame["sentiment_prob"].between(0.5, 1).all()
    one_by_one = pd.concat([tiny.predict([t]) for t in texts], ignore_index=True)
    pd.testing.assert_frame_equal(frame, one_by_one, atol=1e-5)


def test_predict_restores_training_mode(tiny):
    tiny.train()
    tiny.predict(["x y z"])
    assert tiny.training
    tiny.eval()


def test_predict_empty_gives_the_columns(tiny):
    frame = tiny.predict([])
    assert len(frame) == 0 and list(frame.columns) == ["text", "topic", "topic_prob", "sentiment", "sentiment_prob"]


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
def test_save_then_load_gives_identical_logits(tiny_model_dirs, tmp_path, arch):
    model = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs[arch], pooling="cls", dropout=0.2, hidden_dim=8).eval()
    model.save(tmp_path / "saved")
    loaded = MultiTaskSentenceTransformer.load(tmp_path / "saved").eval()
    batch = batch_of(model)
    for task, logits in model(**batch).items():
        assert torch.equal(logits, loaded(**batch)[task])
    assert loaded.tasks == model.tasks and loaded.encoder.pooling == "cls" and loaded.dropout.p == 0.2
    assert loaded.encoder.model_name == str(tiny_model_dirs[arch])


def test_save_refuses_a_folder_with_other_files(tiny, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty and does not hold a saved model"):
        tiny.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_save_may_overwrite_a_saved_model(tiny, tmp_path):
    tiny.save(tmp_path / "m")
    tiny.save(tmp_path / "m")
    assert (tmp_path / "m" / WEIGHTS_FILE).is_file() and not list((tmp_path / "m").glob("*.tmp"))


def test_extra_files_are_saved_with_the_model_and_replaced_by_the_next_save(tiny, tmp_path):
    folder = tmp_path / "m"
    tiny.save(folder, extra_files={"history.csv": "step,loss\n1,0.5\n", "metrics.json": "{}"})
    assert (folder / "history.csv").read_text() == "step,loss\n1,0.5\n" and (folder / "metrics.json").is_file()
    recorded = json.loads((folder / CONFIG_FILE).read_text())["saved_by"]["files"]
    assert {"history.csv", "metrics.json", CONFIG_FILE, WEIGHTS_FILE, "backbone", "README.md"} == set(recorded)
    tiny.save(folder, extra_files={"history.csv": "step,loss\n"})
    assert (folder / "history.csv").read_text() == "step,loss\n"
    assert not (folder / "metrics.json").exists()  # the previous save's: it described the model replaced


def test_a_users_file_with_the_name_of_an_extra_file_is_kept(tiny, tmp_path):
    folder = tmp_path / "m"
    tiny.save(folder)
    (folder / "history.csv").write_text("my own notes")
    with pytest.warns(UserWarning, match="kept the history.csv in m: save did not write it"):
        tiny.save(folder, extra_files={"history.csv": "step,loss\n", "metrics.json": "{}"})
    assert (folder / "history.csv").read_text() == "my own notes" and (folder / "metrics.json").is_file()
    assert "history.csv" not in json.loads((folder / CONFIG_FILE).read_text())["saved_by"]["files"]


@pytest.mark.parametrize("name", ["config.json", "README.md", "backbone", "../outside.csv", "", ".."])
def test_extra_files_may_not_take_the_models_names_or_leave_the_folder(tiny, tmp_path, name):
    with pytest.raises(ValueError, match=r"extra_files cannot be named .*give plain file names other than"):
        tiny.save(tmp_path / "m", extra_files={name: "x"})
    assert not (tmp_path / "m").exists() and not (tmp_path / "outside.csv").exists()


def test_a_folder_saved_before_saves_recorded_their_files_is_still_replaced(tiny, tmp_path):
    """Saves used to mark their card by its hash in config.json and own a fixed set of entries."""
    folder = tmp_path / "m"
    tiny.save(folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["model_card_sha256"] = config.pop("saved_by")["sha256"]["README.md"]
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    (folder / "NOTES.md").write_text("mine")
    tiny.save(folder, extra_files={"history.csv": ""})  # neither refused nor warned about: the card was its own
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        ["NOTES.md", "README.md", "backbone", CONFIG_FILE, WEIGHTS_FILE, "history.csv"])
    (folder / CONFIG_FILE).write_text(json.dumps(config))  # the old record again, and an edited card
    (folder / "README.md").write_text("my card")
    with pytest.warns(UserWarning, match="kept the README.md"):
        tiny.save(folder)
    assert (folder / "README.md").read_text() == "my card"


def test_load_missing_folder_or_files(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        MultiTaskSentenceTransformer.load(tmp_path / "nothing")
    tiny.save(tmp_path / "m")
    (tmp_path / "m" / WEIGHTS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors is missing"):
        MultiTaskSentenceTransformer.load(tmp_path / "m")


def test_load_truncated_weights(tiny, tmp_path):
    tiny.save(tmp_path / "m")
    weights = tmp_path / "m" / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="model.safetensors cannot be read as safetensors.*truncated"):
        MultiTaskSentenceTransformer.load(tmp_path / "m")


def test_load_never_unpickles_a_foreign_file(tiny, tmp_path):
    tiny.save(tmp_path / "m")
    torch.save({"x": torch.zeros(1)}, tmp_path / "m" / WEIGHTS_FILE)  # a pickle, not safetensors
    with pytest.raises(ValueError, match="cannot be read as safetensors"):
        MultiTaskSentenceTransformer.load(tmp_path / "m")


def test_load_foreign_or_damaged_config(tiny, tmp_path):
    tiny.save(tmp_path / "m")
    config = tmp_path / "m" / CONFIG_FILE
    config.write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="is not a helpers.MultiTaskSentenceTransformer config"):
        MultiTaskSentenceTransformer.load(tmp_path / "m")
    config.write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        MultiTaskSentenceTransformer.load(tmp_path / "m")


def test_load_weights_that_do_not_match_the_config(tiny, tiny_model_dirs, tmp_path):
    tiny.save(tmp_path / "m")
    other = MultiTaskSentenceTransformer({"topic": ["a", "b"]}, tiny_model_dirs["bert"])
    other.save(tmp_path / "other")
    (tmp_path / "m" / WEIGHTS_FILE).write_bytes((tmp_path / "other" / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ValueError, match="does not match"):
        MultiTaskSentenceTransformer.load(tmp_path / "m")


@pytest.mark.parametrize("tasks, message", [
    ({}, "non-empty mapping"),
    (["topic"], "non-empty mapping"),
    ({"topic": ["only"]}, "at least 2 labels"),
    ({"topic": "ab"}, "at least 2 labels"),
    ({"topic": ["a", "b", "a"]}, r"label\(s\) \['a'\] more than once"),
    ({"my task": ["a", "b"]}, "must be a Python identifier"),
    ({"topic": ["a", ""]}, "non-empty str"),
])
def test_bad_task_specs(tiny_model_dirs, tasks, message):
    with pytest.raises(ValueError, match=message):
        MultiTaskSentenceTransformer(tasks, tiny_model_dirs["bert"])


def test_bad_dropout(tiny_model_dirs):
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"], dropout=1.5)


def test_a_new_model_is_in_eval_mode_so_calling_it_twice_gives_the_same_logits(tiny):
    batch = batch_of(tiny)
    assert not tiny.training and not tiny.encoder.backbone.training
    tiny.predict(["warm up"])  # and it stays so after inference
    first, second = tiny(**batch), tiny(**batch)
    assert all(torch.equal(first[task], second[task]) for task in first)
