"""The model card that save writes: metadata the Hugging Face Hub reads, a body that says what the model is and
how to use it, and a README.md that save did not write kept."""

from __future__ import annotations

import re
import warnings

import pytest
from huggingface_hub import ModelCard

from helpers import DEFAULT_MODEL, TASKS, MultiTaskSentenceTransformer, set_seed
from helpers.card import model_card

SCORES = {"topic": {"n": 40, "accuracy": 0.875, "macro_f1": 0.8612, "loss": 0.4},
          "sentiment": {"n": 30, "accuracy": 0.7, "macro_f1": 0.6543, "loss": 0.6}}
TRAINING = {"data": "reviews.csv", "sentences": "900 train, 100 val, 70 test", "freeze": "bottom:3", "epochs": 2}


@pytest.fixture(scope="module")
def tiny(tiny_model_dirs) -> MultiTaskSentenceTransformer:
    set_seed(0)
    return MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"])


def config_of(backbone: str = DEFAULT_MODEL, tasks=TASKS) -> dict:
    return {"tasks": tasks, "pooling": "mean", "dropout": 0.1, "hidden_dim": None, "backbone": backbone,
            "max_seq_length": 256}


def test_the_header_is_metadata_the_hub_reads():
    data = ModelCard(model_card("my-model", config_of())).data.to_dict()
    assert data["library_name"] == "helpers" and data["pipeline_tag"] == "text-classification"
    assert data["base_model"] == DEFAULT_MODEL and data["language"] == ["en"]
    assert {"text-classification", "multi-task"} <= set(data["tags"])
    assert "model-index" not in data  # no test scores, no results


def test_test_scores_become_the_model_index_the_hub_shows_as_results():
    card = ModelCard(model_card("my-model", config_of(), SCORES, TRAINING))
    results = {(r.task_name, r.metric_type): r for r in card.data.eval_results}
    assert {task: (results[task, "accuracy"].metric_value, results[task, "f1"].metric_value) for task in SCORES} == {
        task: (score["accuracy"], score["macro_f1"]) for task, score in SCORES.items()}
    assert {(r.dataset_name, r.dataset_split) for r in card.data.eval_results} == {("reviews.csv", "test")}
    assert card.data.model_name == "my-model"


def test_a_task_without_test_labels_is_left_out_of_the_results():
    scores = {**SCORES, "sentiment": {"n": 0, "accuracy": None, "macro_f1": None, "loss": None}}
    card = ModelCard(model_card("m", config_of(), scores))
    assert {r.task_name for r in card.data.eval_results} == {"topic"}
    assert "| sentiment |" not in card.text.split("## Test scores")[1].split("##")[0]


def test_the_body_names_the_tasks_labels_recipe_and_scores():
    text = ModelCard(model_card("my-model", config_of(), SCORES, TRAINING)).text
    for task, labels in TASKS.items():
        assert f"| {task} | {', '.join(labels)} |" in text
    for setting, value in TRAINING.items():
        assert f"| {setting} | {value} |" in text
    assert "| topic | 0.875 | 0.861 | 40 |" in text and "| sentiment | 0.700 | 0.654 | 30 |" in text
    assert "python -m helpers predict --model my-model --data new.csv" in text


def test_labels_that_look_like_yaml_or_markdown_break_nothing():
    tasks = {"tone": ['say "hi"', "yes: really", "no #1", "a | b"]}
    card = ModelCard(model_card("odd: name #1", config_of(tasks=tasks), {"tone": SCORES["topic"]}))
    assert card.data.model_name == "odd: name #1"
    assert [r.task_name for r in card.data.eval_results] == ["tone", "tone"]
    assert '| tone | say "hi", yes: really, no #1, a \\| b |' in card.text


def test_the_card_of_a_model_from_a_local_folder_names_no_path(tiny, tiny_model_dirs, tmp_path):
    tiny.save(tmp_path / "m", test_scores=SCORES, training=TRAINING)
    text = (tmp_path / "m" / "README.md").read_text()
    assert "base_model" not in ModelCard(text).data.to_dict()
    assert str(tiny_model_dirs["bert"].parent) not in text and str(tmp_path) not in text
    assert f"a local model folder, `{tiny_model_dirs['bert'].name}`" in text


def test_the_usage_code_in_the_card_runs(tiny, tmp_path, monkeypatch):
    tiny.save(tmp_path / "my-model")
    code = re.search(r"```python\n(.*?)```", (tmp_path / "my-model" / "README.md").read_text(), re.S).group(1)
    namespace: dict = {}
    monkeypatch.chdir(tmp_path)  # the card names the folder, as a reader beside it would
    exec(code.replace("model.predict(", "predictions = model.predict("), namespace)
    assert list(namespace["predictions"].columns) == ["text", "topic", "topic_prob", "sentiment", "sentiment_prob"]


def test_save_replaces_its_own_card_but_keeps_a_readme_it_did_not_write(tiny, tmp_path):
    folder = tmp_path / "m"
    tiny.save(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny.save(folder, test_scores=SCORES)  # its own card, unedited: replaced, without a word
    assert "## Test scores" in (folder / "README.md").read_text()
    (folder / "README.md").write_text((folder / "README.md").read_text() + "\nMy notes on this model.\n")
    edited = (folder / "README.md").read_text()
    with pytest.warns(UserWarning, match="kept the README.md in m: save did not write it, or it was edited"):
        tiny.save(folder)
    assert (folder / "README.md").read_text() == edited
    with pytest.warns(UserWarning, match="kept the README.md"):  # and the next save still keeps it
        tiny.save(folder)
    assert (folder / "README.md").read_text() == edited
    MultiTaskSentenceTransformer.load(folder)
