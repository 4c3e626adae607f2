"""``python -m helpers``: flags from TrainConfig, the CSV it accepts, what it writes."""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import helpers
from helpers import MultiTaskSentenceTransformer, TrainConfig, cli, training
from helpers.training import HISTORY_COLUMNS

TOPICS = ["sports", "business", "sci_tech", "world"]
ROWS = pd.DataFrame({"text": [f"sentence number {i} about {TOPICS[i % 4]}" for i in range(40)],
                     "topic": [TOPICS[i % 4] for i in range(40)],
                     "sentiment": [["negative", "positive"][i % 3 == 0] for i in range(40)]})


def write(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def parse(*flags: str):
    return cli.build_parser().parse_args(["--data", "x.csv", "--out", "out", "--no-show-progress-bar", *flags])


def test_no_module_shares_its_name_with_an_exported_name():
    modules = {path.stem for path in Path(helpers.__file__).parent.glob("*.py")}
    assert not modules & set(helpers.__all__)
    assert helpers.train is training.train


def test_the_command_is_python_dash_m_helpers(tmp_path):
    result = subprocess.run([sys.executable, "-m", "helpers", "--help"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("usage: python -m helpers ")


def test_unfreeze_every_without_gradual_unfreezing_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "train", lambda *args, **kwargs: pytest.fail("training started"))
    with pytest.raises(SystemExit):
        cli.main(["--data", write(ROWS, tmp_path / "rows.csv"), "--out", str(tmp_path / "out"),
                  "--unfreeze-every", "2"])
    assert "--unfreeze-every sets the length of a gradual-unfreezing stage; add --gradual-unfreezing" in (
        capsys.readouterr().err)


def test_gradual_unfreezing_from_the_command_unfreezes_every_few_steps(tmp_path, tiny_model_dirs, monkeypatch):
    seen = {}
    real_train = cli.train

    def spy(model, *args, unfreezing=None, **kwargs):
        seen["unfreezing"], seen["config"] = unfreezing, args[2]
        return real_train(model, *args, unfreezing=unfreezing, **kwargs)

    monkeypatch.setattr(cli, "train", spy)
    data = write(ROWS.assign(split=["train", "train", "val", "test"] * 10), tmp_path / "rows.csv")
    cli.main(["--data", data, "--out", str(tmp_path / "out"), "--model", str(tiny_model_dirs["bert"]),
              "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--gradual-unfreezing", "--unfreeze-every", "1"])
    assert seen["config"].unfreeze_every == 1
    unfreezing = seen["unfreezing"]  # 7 steps, one stage after each: every stage of the tiny model ran
    assert unfreezing.done and all(p.requires_grad for p in unfreezing.model.parameters())


def test_help_lists_every_train_config_field_with_its_explanation(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # no line wrapping
    text = cli.build_parser().format_help()
    for field in dataclasses.fields(TrainConfig):
        assert "--" + field.name.replace("_", "-") in text
        assert field.metadata["help"] in text, field.name


def test_flags_fill_a_train_config():
    assert cli.train_config(parse()) == TrainConfig()  # same defaults
    config = cli.train_config(parse("--epochs", "2", "--head-lr", "none", "--task-weights", '{"topic": 2.0}',
                                    "--no-restore-best", "--checkpoint-dir", "best", "--lr", "1e-4"))
    assert config == TrainConfig(epochs=2, head_lr=None, task_weights={"topic": 2.0}, restore_best=False,
                                 checkpoint_dir="best", lr=1e-4)


def test_a_bad_flag_value_is_a_usage_error_that_names_it(capsys, tmp_path):
    data = write(ROWS, tmp_path / "rows.csv")
    for flags, message in [(["--epochs", "0"], "epochs must be an int >= 1, got 0"),
                           (["--lr", "fast"], "argument --lr: invalid float value: 'fast'"),
                           (["--task-weights", "[1]"], "expected a JSON object"),
                           (["--batch-size", "0"], "argument --batch-size: must be an int >= 1, got '0'")]:
        with pytest.raises(SystemExit) as stop:
            cli.main(["--data", data, "--out", str(tmp_path / "out"), *flags])
        assert stop.value.code == 2
        assert message in capsys.readouterr().err


def test_tasks_and_a_seeded_90_10_split_come_from_the_csv(tmp_path):
    path = write(ROWS, tmp_path / "rows.csv")
    frame, tasks = cli.read_labelled_csv(path, seed=1)
    assert tasks == {"topic": sorted(TOPICS), "sentiment": ["negative", "positive"]}
    assert frame["split"].value_counts().to_dict() == {"train": 36, "val": 4}
    assert frame["text"].tolist() == ROWS["text"].tolist()
    again, _ = cli.read_labelled_csv(path, seed=1)
    other, _ = cli.read_labelled_csv(path, seed=2)
    assert again["split"].tolist() == frame["split"].tolist() != other["split"].tolist()


def test_a_split_column_and_a_task_spec_are_used_as_given(tmp_path):
    path = write(ROWS.assign(split=["train", "val", "test", "train"] * 10, note="free text"), tmp_path / "rows.csv")
    frame, tasks = cli.read_labelled_csv(path, {"topic": ["world", "sports", "business", "sci_tech"]})
    assert tasks == {"topic": ["world", "sports", "business", "sci_tech"]}
    assert list(frame.columns) == ["text", "split", "topic"]
    assert frame["split"].value_counts().to_dict() == {"train": 20, "val": 10, "test": 10}


def test_a_bad_csv_gets_the_errors_of_load_corpus(tmp_path):
    path = tmp_path / "rows.csv"
    repeated = ROWS.copy()
    repeated.loc[2, "text"] = repeated.loc[0, "text"]
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line 4, column 'text': .* it repeats line 2"):
        cli.read_labelled_csv(write(repeated, path))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line 2, column 'topic': 'sport' is not allowed"):
        cli.read_labelled_csv(write(ROWS.replace({"sports": "sport"}), path), {"topic": TOPICS})
    with pytest.raises(ValueError, match=r"line 2, column 'split': 'dev' is not allowed"):
        cli.read_labelled_csv(write(ROWS.assign(split="dev"), path))
    path.write_bytes("text,topic\ncaf\xe9,world\n".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8"):
        cli.read_labelled_csv(path)


def test_task_columns_that_cannot_be_tasks_are_named(tmp_path):
    path = tmp_path / "rows.csv"
    with pytest.raises(ValueError, match="column 'source' holds 1 distinct label"):
        cli.read_labelled_csv(write(ROWS.assign(source="web"), path))
    with pytest.raises(ValueError, match="has no task column"):
        cli.read_labelled_csv(write(ROWS[["text"]], path))


def test_a_folder_that_is_not_a_model_is_refused_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "train", lambda *args, **kwargs: pytest.fail("training started"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(SystemExit):
        cli.main(["--data", write(ROWS, tmp_path / "rows.csv"), "--out", str(out)])
    assert "is not empty and does not hold a saved model" in capsys.readouterr().err
    assert [path.name for path in out.iterdir()] == ["notes.txt"]


def test_a_csv_without_validation_rows_is_refused(tmp_path, capsys):
    data = write(ROWS.assign(split="train"), tmp_path / "rows.csv")
    with pytest.raises(SystemExit):
        cli.main(["--data", data, "--out", str(tmp_path / "out")])
    assert "has no 'val' row" in capsys.readouterr().err


def test_the_command_writes_a_model_history_and_metrics(tmp_path, tiny_model_dirs, capsys):
    data = write(ROWS.assign(split=["train", "train", "val", "test"] * 10), tmp_path / "rows.csv")
    out = tmp_path / "out"
    cli.main(["--data", data, "--out", str(out), "--model", str(tiny_model_dirs["bert"]), "--epochs", "1",
              "--batch-size", "8", "--device", "cpu", "--max-seq-length", "16"])
    model = MultiTaskSentenceTransformer.load(out)
    assert model.encoder.max_seq_length == 16
    assert list(model.predict(["the match ended in a draw"]).columns) == [
        "text", "topic", "topic_prob", "sentiment", "sentiment_prob"]
    assert list(pd.read_csv(out / "history.csv").columns) == HISTORY_COLUMNS
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"}
    assert metrics["test"]["topic"]["n"] == 10 and 0 <= metrics["test"]["topic"]["accuracy"] <= 1
    assert "test topic" in capsys.readouterr().out
