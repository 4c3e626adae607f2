"""``python -m helpers train`` (and the older ``python -m helpers --data ...``): flags from TrainConfig, the
checks before training, the CSV it accepts, what it writes."""

import dataclasses
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
from huggingface_hub import ModelCard

import helpers
from helpers import (
    TASKS,
    GradualUnfreezing,
    MultiTaskSentenceTransformer,
    TrainConfig,
    cli,
    freeze,
    labelled_csv,
    make_loader,
    set_seed,
    training,
)
from helpers.caching import cache_bytes
from helpers.parameters import transformer_layers
from helpers.training import HISTORY_COLUMNS

TOPICS = ["sports", "business", "sci_tech", "world"]
ROWS = pd.DataFrame({"text": [f"sentence number {i} about {TOPICS[i % 4]}" for i in range(40)],
                     "topic": [TOPICS[i % 4] for i in range(40)],
                     "sentiment": [["negative", "positive"][i % 3 == 0] for i in range(40)]})


def write(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def parse(*flags: str):
    return cli.parse(["train", "--data", "x.csv", "--out", "out", "--no-show-progress-bar", *flags])


def test_no_module_shares_its_name_with_an_exported_name():
    modules = {path.stem for path in Path(helpers.__file__).parent.glob("*.py")}
    assert not modules & set(helpers.__all__)
    assert helpers.train is training.train


def test_the_command_is_python_dash_m_helpers_train_and_its_help_names_no_old_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "helpers", "train", "--help"], capture_output=True, text=True,
                            check=True)
    assert result.stdout.startswith("usage: python -m helpers train ")
    assert "helpers.train" not in result.stdout  # a module that no longer exists
    assert re.search(r"train .*\n.*predict ", cli.build_parser().format_help())


def test_the_form_without_a_command_still_means_train():
    def flags(args):
        return {name: value for name, value in vars(args).items() if name != "error"}

    old_form = cli.parse(["--data", "x.csv", "--out", "out", "--epochs", "2"])
    assert flags(old_form) == flags(cli.parse(["train", "--data", "x.csv", "--out", "out", "--epochs", "2"]))
    assert old_form.command == "train" and old_form.run is cli.train_command


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


def test_help_lists_every_train_config_field_with_its_explanation(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "1000")  # no line wrapping
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
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
                           (["--batch-size", "0"], "argument --batch-size: batch_size must be an int >= 1, got 0"),
                           (["--batch-size", "2.5"], "argument --batch-size: invalid int value: '2.5'"),
                           (["--max-seq-length", "-3"],
                            "argument --max-seq-length: max_seq_length must be an int >= 1, got -3"),
                           (["--device", "gpu"], "torch cannot use device 'gpu'"),
                           (["--pooling", "avg"], "argument --pooling: invalid choice: 'avg'")]:
        with pytest.raises(SystemExit) as stop:
            cli.main(["--data", data, "--out", str(tmp_path / "out"), *flags])
        assert stop.value.code == 2
        assert message in capsys.readouterr().err


def test_tasks_and_a_seeded_90_10_split_come_from_the_csv(tmp_path):
    path = write(ROWS, tmp_path / "rows.csv")
    frame, tasks, _ = labelled_csv.read_labelled_csv(path, seed=1)
    assert tasks == {"topic": sorted(TOPICS), "sentiment": ["negative", "positive"]}
    assert frame["split"].value_counts().to_dict() == {"train": 36, "val": 4}
    assert frame["text"].tolist() == ROWS["text"].tolist()
    again, _, _ = labelled_csv.read_labelled_csv(path, seed=1)
    other, _, _ = labelled_csv.read_labelled_csv(path, seed=2)
    assert again["split"].tolist() == frame["split"].tolist() != other["split"].tolist()


def test_a_split_column_and_a_task_spec_are_used_as_given(tmp_path):
    path = write(ROWS.assign(split=["train", "val", "test", "train"] * 10, note="free text"), tmp_path / "rows.csv")
    frame, tasks, _ = labelled_csv.read_labelled_csv(path, {"topic": ["world", "sports", "business", "sci_tech"]})
    assert tasks == {"topic": ["world", "sports", "business", "sci_tech"]}
    assert list(frame.columns) == ["text", "split", "topic"]
    assert frame["split"].value_counts().to_dict() == {"train": 20, "val": 10, "test": 10}


def test_a_bad_csv_gets_the_errors_of_load_corpus(tmp_path):
    path = tmp_path / "rows.csv"
    repeated = ROWS.copy()
    repeated.loc[2, "text"] = repeated.loc[0, "text"]
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line 4, column 'text': .* it repeats line 2"):
        labelled_csv.read_labelled_csv(write(repeated, path))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}, line 2, column 'topic': 'sport' is not allowed"):
        labelled_csv.read_labelled_csv(write(ROWS.replace({"sports": "sport"}), path), {"topic": TOPICS})
    with pytest.raises(ValueError, match=r"line 2, column 'split': 'dev' is not allowed"):
        labelled_csv.read_labelled_csv(write(ROWS.assign(split="dev"), path))
    path.write_bytes("text,topic\ncaf\xe9,world\n".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8"):
        labelled_csv.read_labelled_csv(path)


def test_columns_that_do_not_look_like_labels_are_not_tasks_and_are_named(tmp_path):
    path = tmp_path / "rows.csv"
    extra = ROWS.assign(id=[f"row-{i}" for i in range(40)], score=[str(i % 7 / 2) for i in range(40)],
                        label=[str(i % 2) for i in range(40)], source="web", empty="")
    _, tasks, line = labelled_csv.read_labelled_csv(write(extra, path))
    assert list(tasks) == ["topic", "sentiment"]
    assert line == ("tasks (every column that looks like labels; choose with --tasks a,b): topic (4 labels), sentiment "
                    "(2 labels); not tasks: id (40 distinct values in 40 rows: an identifier?), score (numbers: an id, "
                    "a count or a score?), label (numbers: an id, a count or a score?), source (1 distinct value(s)), "
                    "empty (0 distinct value(s))")
    with pytest.raises(ValueError, match=r"has no column of labels next to text \(and split\); not tasks: id \(40 "
                                         r"distinct.*name the task columns with --tasks, e.g. --tasks topic,sentiment"):
        labelled_csv.read_labelled_csv(write(extra.drop(columns=["topic", "sentiment"]), path))
    with pytest.raises(ValueError, match="has no column of labels"):
        labelled_csv.read_labelled_csv(write(ROWS[["text"]], path))


def test_a_column_with_nearly_one_value_per_row_is_an_identifier_and_half_is_the_limit():
    assert labelled_csv.why_not_labels(pd.Series(["a", "b"] * 2)) is None  # 2 values in 4 rows: labels
    assert labelled_csv.why_not_labels(pd.Series(["a", "b", "c", "c"])) == "3 distinct values in 4 rows: an identifier?"
    assert labelled_csv.why_not_labels(pd.Series(["1", "2", "1", "2"])) == "numbers: an id, a count or a score?"
    assert labelled_csv.why_not_labels(pd.Series(["1", "two", "1", "two"])) is None  # not every value a number


def test_tasks_named_as_columns_take_their_labels_from_the_data(tmp_path):
    styled = ROWS.assign(style=["plain", "hard"] * 20)  # describes the text: looks like labels, is no task
    path = write(styled, tmp_path / "rows.csv")
    assert list(labelled_csv.read_labelled_csv(path)[1]) == ["topic", "sentiment", "style"]
    frame, tasks, line = labelled_csv.read_labelled_csv(path, ["sentiment", "topic"])
    assert tasks == {"sentiment": ["negative", "positive"], "topic": sorted(TOPICS)}
    assert line == "tasks (from --tasks): sentiment (2 labels), topic (4 labels)"
    assert list(frame.columns) == ["text", "split", "sentiment", "topic"]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['topics'\]; found \['text', 'topic', 'sentiment', "
                                         r"'style'\]"):
        labelled_csv.read_labelled_csv(path, ["topics"])
    with pytest.raises(ValueError, match=r"column 'source' holds 1 distinct label\(s\) \['web'\]; a task needs at "
                                         "least 2"):
        labelled_csv.read_labelled_csv(write(ROWS.assign(source="web"), tmp_path / "web.csv"), ["topic", "source"])


def test_tasks_flag_takes_column_names_or_json(capsys, tmp_path):
    assert parse("--tasks", "topic, sentiment").tasks == ["topic", "sentiment"]
    assert parse("--tasks", '{"topic": ["world", "sports"]}').tasks == {"topic": ["world", "sports"]}
    data = write(ROWS, tmp_path / "rows.csv")
    for flag, message in [("topic,,sentiment", "expected column names separated by commas, each once"),
                          ("topic,topic", "expected column names separated by commas, each once"),
                          ('{"topic": ', "not valid JSON"), ('{"topic"}', "not valid JSON")]:
        with pytest.raises(SystemExit) as stop:
            cli.main(["--data", data, "--out", str(tmp_path / "out"), "--tasks", flag])
        assert stop.value.code == 2 and message in capsys.readouterr().err, flag


def test_the_command_says_which_columns_became_tasks_before_the_model_loads(tmp_path, monkeypatch, capsys):
    data = write(ROWS.assign(id=[f"row-{i}" for i in range(40)]), tmp_path / "rows.csv")
    monkeypatch.setattr(cli, "run", lambda *args: print("-- run --"))
    cli.main(["--data", data, "--out", str(tmp_path / "out")])
    assert capsys.readouterr().out == ("tasks (every column that looks like labels; choose with --tasks a,b): topic (4 "
                                       "labels), sentiment (2 labels); not tasks: id (40 distinct values in 40 rows: "
                                       "an identifier?)\n-- run --\n")


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
    card = ModelCard((out / "README.md").read_text())
    results = {(r.task_name, r.metric_type): r.metric_value for r in card.data.eval_results}
    assert results == {(task, metric): round(metrics["test"][task][key], 4) for task in TASKS
                       for metric, key in (("accuracy", "accuracy"), ("f1", "macro_f1"))}
    assert "| data | rows.csv |" in card.text and "| sentences | 20 train, 10 val, 10 test |" in card.text
    assert str(tmp_path) not in card.text


def tiny_run(data: str, out: Path, model_dir: Path, *flags: str) -> None:
    cli.main(["--data", data, "--out", str(out), "--model", str(model_dir), "--epochs", "1", "--batch-size", "8",
              "--device", "cpu", "--no-show-progress-bar", *flags])


def test_the_side_files_are_saved_with_the_model_or_not_at_all(tmp_path, tiny_model_dirs, monkeypatch):
    data = write(ROWS.assign(split=["train", "train", "val", "test"] * 10), tmp_path / "rows.csv")
    write_text = Path.write_text
    monkeypatch.setattr(Path, "write_text", lambda path, *args, **kwargs: (
        pytest.fail("no room") if path.name == "metrics.json" else write_text(path, *args, **kwargs)))
    with pytest.raises(pytest.fail.Exception, match="no room"):
        tiny_run(data, tmp_path / "out", tiny_model_dirs["bert"])
    assert not (tmp_path / "out").exists()  # no model without its metrics


def test_the_side_files_are_the_saves_and_a_users_file_of_that_name_is_kept(tmp_path, tiny_model_dirs):
    data = write(ROWS.assign(split=["train", "train", "val", "test"] * 10), tmp_path / "rows.csv")
    out = tmp_path / "out"
    MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"]).save(out)
    (out / "history.csv").write_text("my own history")
    with pytest.warns(UserWarning, match="kept the history.csv in out"):
        tiny_run(data, out, tiny_model_dirs["bert"])
    assert (out / "history.csv").read_text() == "my own history" and (out / "metrics.json").is_file()
    (out / "history.csv").unlink()
    tiny_run(data, out, tiny_model_dirs["bert"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_run(data, out, tiny_model_dirs["bert"])  # its own history.csv now: replaced without a word
    saved = json.loads((out / "config.json").read_text())["saved_by"]["files"]
    assert {"history.csv", "metrics.json"} <= set(saved)


def refused_before_training(monkeypatch, capsys, argv: list[str]) -> str:
    """Run the command, which must stop with a usage error before training; return the error."""
    monkeypatch.setattr(cli, "train", lambda *args, **kwargs: pytest.fail("training started"))
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_task_weights_without_static_weighting_are_refused(tmp_path, monkeypatch, capsys):
    data = write(ROWS, tmp_path / "rows.csv")
    weights = ["--task-weights", '{"topic": 2.0, "sentiment": 1.0}']
    for weighting in ([], ["--loss-weighting", "uncertainty"]):
        error = refused_before_training(monkeypatch, capsys, ["--data", data, "--out", str(tmp_path / "o"),
                                                              *weights, *weighting])
        assert "--task-weights only apply with --loss-weighting static" in error
    assert cli.check_train_flags(parse(*weights, "--loss-weighting", "static")).task_weights == {"topic": 2.0,
                                                                                                 "sentiment": 1.0}


@pytest.mark.parametrize("flags, torchrun, message", [
    (["--unfreeze-every", "2"], False, "--unfreeze-every sets the length of a gradual-unfreezing stage; add "
                                       "--gradual-unfreezing"),
    (["--task-weights", '{"topic": 2, "sentiment": 1}'], False,
     "--task-weights only apply with --loss-weighting static"),
    (["--loss-weighting", "static"], False, "static weighting needs a weight for each task ['topic', 'sentiment'] "
                                            "(task_weights; --task-weights in the command), got {}: e.g. "
                                            '{"topic": 1.0, "sentiment": 1.0}'),
    (["--loss-weighting", "static", "--task-weights", '{"topic": 2}'], False,
     "static weighting needs a weight for each task ['topic', 'sentiment']"),
    (["--freeze", "bottom:1", "--gradual-unfreezing"], False, "--gradual-unfreezing decides what trains at each stage"),
    (["--freeze", "all"], False, "--freeze all leaves nothing to train"),
    (["--precision", "fp16", "--device", "cpu"], False, "precision 'fp16' needs a CUDA device"),
    (["--gradual-unfreezing"], True, "gradual unfreezing cannot run under torchrun"),
    (["--cache-limit", "-1"], False, "the cache limit is in GB, a finite number >= 0, got '-1'"),
    (["--cache-limit", "nan"], False, "the cache limit is in GB, a finite number >= 0, got 'nan'"),
])
def test_what_the_readme_refuses_before_anything_loads_is_refused_before_anything_loads(
        tmp_path, monkeypatch, capsys, flags, torchrun, message):
    monkeypatch.setattr(cli, "MultiTaskSentenceTransformer", lambda *args, **kwargs: pytest.fail("a model loaded"))
    monkeypatch.setattr(cli.distributed, "setup", lambda *args: pytest.fail("a process group started"))
    if torchrun:
        monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as stop:
        cli.main(["--data", write(ROWS, tmp_path / "rows.csv"), "--out", str(tmp_path / "o"), *flags])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


def test_a_numbered_gpu_under_torchrun_is_refused(monkeypatch):
    monkeypatch.setattr(cli, "pick_device", lambda device: torch.device(device))  # as on a machine with GPUs
    monkeypatch.setattr(cli, "training_dtype", lambda config: torch.bfloat16)
    assert cli.check_train_flags(parse("--device", "cuda:0")).device == "cuda:0"  # one process: fine
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="--device cuda:0 would put every process on the same device; under "
                                         "torchrun each process takes GPU LOCAL_RANK"):
        cli.check_train_flags(parse("--device", "cuda:0"))
    assert cli.check_train_flags(parse("--device", "cuda")).device == "cuda"


@pytest.mark.parametrize("processes", ["1", "2"])
def test_gradual_unfreezing_under_torchrun_is_refused_up_front_and_by_train(monkeypatch, capsys, tmp_path,
                                                                            tiny_model_dirs, processes):
    monkeypatch.setenv("WORLD_SIZE", processes)  # what torchrun sets, also for --nproc-per-node 1
    error = refused_before_training(monkeypatch, capsys, ["--data", write(ROWS, tmp_path / "rows.csv"), "--out",
                                                          str(tmp_path / "o"), "--gradual-unfreezing"])
    assert "gradual unfreezing cannot run under torchrun (with any number of processes)" in error
    monkeypatch.undo()
    monkeypatch.setenv("WORLD_SIZE", processes)
    model = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"])
    loader = make_loader(ROWS, model.tokenize, TASKS, batch_size=8)
    with pytest.raises(ValueError, match="gradual unfreezing cannot run under torchrun"):
        training.train(model, loader, None, TrainConfig(device="cpu"), unfreezing=GradualUnfreezing(model))


def test_the_checkpoint_folder_is_checked_before_training(tmp_path, monkeypatch, capsys):
    best = tmp_path / "best"
    best.mkdir()
    (best / "notes.txt").write_text("keep me")
    error = refused_before_training(monkeypatch, capsys, ["--data", write(ROWS, tmp_path / "rows.csv"), "--out",
                                                          str(tmp_path / "o"), "--checkpoint-dir", str(best)])
    assert f"{best} is not empty and does not hold a saved model" in error
    assert [path.name for path in best.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("flags, message", [
    (["--freeze", "all"], "--freeze all leaves nothing to train; freeze 'backbone'"),
    (["--freeze", "bottom:1", "--gradual-unfreezing"], "--gradual-unfreezing decides what trains at each stage"),
    (["--freeze", "bottom:9"], r"unknown freezing strategy 'bottom:9'.*'bottom:<k>' with k in 0..2"),
    (["--freeze", "head:spam"], r"unknown freezing strategy 'head:spam'.*\['head:topic', 'head:sentiment'\]"),
])
def test_a_freezing_strategy_that_cannot_work_is_a_usage_error(tmp_path, monkeypatch, capsys, tiny_model_dirs,
                                                               flags, message):
    error = refused_before_training(monkeypatch, capsys, ["--data", write(ROWS, tmp_path / "rows.csv"), "--out",
                                                          str(tmp_path / "o"), "--model", str(tiny_model_dirs["bert"]),
                                                          "--device", "cpu", *flags])
    assert re.search(message, error)


def test_a_model_that_cannot_be_loaded_is_a_usage_error(tmp_path, monkeypatch, capsys):
    error = refused_before_training(monkeypatch, capsys, ["--data", write(ROWS, tmp_path / "rows.csv"), "--out",
                                                          str(tmp_path / "o"), "--model", str(tmp_path / "nowhere")])
    assert "nowhere' does not exist; pass an existing folder or a Hugging Face model name" in error


def train_spied(monkeypatch) -> dict:
    """Let the command train, and keep the model it trains and its layers' weights before training."""
    seen, real_train = {}, cli.train

    def spy(model, *args, **kwargs):
        seen["model"] = model
        seen["layers before"] = [{name: value.clone() for name, value in layer.state_dict().items()}
                                 for layer in transformer_layers(model.encoder.backbone)]
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(cli, "train", spy)
    return seen


def test_freeze_bottom_trains_the_top_over_a_cache_of_the_bottom(tmp_path, tiny_model_dirs, monkeypatch, capsys):
    seen = train_spied(monkeypatch)
    data = write(ROWS.assign(split=["train", "train", "val", "test"] * 10), tmp_path / "rows.csv")
    cli.main(["train", "--data", data, "--out", str(tmp_path / "out"), "--model", str(tiny_model_dirs["bert"]),
              "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--freeze", "bottom:1", "--lr", "1e-3"])
    model, (bottom, top) = seen["model"], transformer_layers(seen["model"].encoder.backbone)
    assert len(model.encoder.bottom_cache) == len(ROWS)  # every sentence's bottom, computed once
    assert all(torch.equal(value, seen["layers before"][0][name]) for name, value in bottom.state_dict().items())
    assert not all(torch.equal(value, seen["layers before"][1][name]) for name, value in top.state_dict().items())
    output = capsys.readouterr().out
    assert re.search(r"\nfrozen bottom of 1 layer\(s\) computed once per sentence and cached: about [0-9.e-]+ GB, "
                     r"within --cache-limit 2 GB\n", output)


SPLITS = {split: ROWS.iloc[i::4] for i, split in enumerate(["train", "val", "test"])}


@pytest.mark.parametrize("strategy", ["none", "embeddings", "head:topic"])
def test_nothing_is_cached_unless_the_embeddings_and_a_layer_are_frozen(tiny_model_dirs, strategy):
    model = freeze(MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"]), strategy)
    assert cli.cache_bottom(model, SPLITS, 2.0) == "" and model.encoder.bottom_cache is None


def test_under_torchrun_the_frozen_bottom_is_not_cached(tiny_model_dirs, monkeypatch):
    model = freeze(MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"]), "backbone")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert cli.cache_bottom(model, SPLITS, 2.0) == ("frozen bottom of 2 layer(s) not cached under torchrun: every step "
                                                    "runs it too")
    assert model.encoder.bottom_cache is None


def gb_between(model, *splits: str, ahead: str | None = None) -> float:
    """A cache limit, in GB, that ``splits`` fit in (by the estimate) and that ``ahead`` would overflow."""
    need = {split: cache_bytes(model.encoder, rows["text"].tolist()) for split, rows in SPLITS.items()}
    fits = sum(need[split] for split in splits)
    return (fits + (need[ahead] / 2 if ahead else 1)) / 1e9


def test_the_cache_bound_caches_every_split_then_the_training_split_then_nothing(tiny_model_dirs):
    def decided(strategy: str, limit: float) -> tuple[str, object]:
        model = freeze(MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"]), strategy)
        return cli.cache_bottom(model, SPLITS, limit(model)), model.encoder.bottom_cache

    line, cache = decided("bottom:1", lambda model: gb_between(model, "train", "val", "test"))
    assert line.startswith("frozen bottom of 1 layer(s) computed once per sentence and cached: about ")
    assert not cache.training_only
    line, cache = decided("bottom:1", lambda model: gb_between(model, "train", ahead="val"))
    assert re.fullmatch(r"frozen bottom of 1 layer\(s\) cached for the training split only: about \S+ GB, where "
                        r"every split would take \S+ GB, over --cache-limit \S+ GB", line)
    assert cache.training_only
    line, cache = decided("bottom:1", lambda model: gb_between(model, ahead="train"))
    assert re.fullmatch(r"frozen bottom of 1 layer\(s\) not cached: the training split alone would take about \S+ GB, "
                        r"over --cache-limit \S+ GB; every step runs it \(raise --cache-limit to cache it\)", line)
    assert cache is None
    assert decided("bottom:1", lambda model: 0.0)[1] is None  # 0: never


def command_model(monkeypatch, argv: list[str]) -> MultiTaskSentenceTransformer:
    """The model the command trained (restored to its best checkpoint, as saved)."""
    seen = train_spied(monkeypatch)
    cli.main(argv)
    return seen["model"]


def test_with_a_tiny_cache_limit_training_equals_training_without_a_cache(tmp_path, tiny_model_dirs, monkeypatch,
                                                                          capsys):
    data = write(ROWS.assign(split=["train", "train", "val", "test"] * 10), tmp_path / "rows.csv")
    flags = ["--data", data, "--model", str(tiny_model_dirs["bert"]), "--epochs", "2", "--batch-size", "8",
             "--device", "cpu", "--freeze", "bottom:1", "--lr", "1e-3", "--no-show-progress-bar"]
    bounded = command_model(monkeypatch, [*flags, "--out", str(tmp_path / "a"), "--cache-limit", "1e-6"])
    assert "frozen bottom of 1 layer(s) not cached" in capsys.readouterr().out
    assert bounded.encoder.bottom_cache is None
    set_seed(42)  # what the command does, by hand, without any cache
    frame, tasks, _ = labelled_csv.read_labelled_csv(Path(data))
    model = freeze(MultiTaskSentenceTransformer(tasks, tiny_model_dirs["bert"]), "bottom:1")
    loaders = {split: make_loader(frame[frame["split"] == split], model.tokenize, tasks, 8, shuffle=split == "train",
                                  seed=42) for split in ("train", "val")}
    training.train(model, loaders["train"], loaders["val"], TrainConfig(epochs=2, lr=1e-3, device="cpu"))
    for name, value in model.state_dict().items():
        assert torch.equal(value, bounded.state_dict()[name]), name
    cached = command_model(monkeypatch, [*flags, "--out", str(tmp_path / "b")])
    assert not all(torch.equal(value, cached.state_dict()[name]) for name, value in model.state_dict().items())


def test_caching_the_training_split_only_scores_as_caching_every_split(tmp_path, tiny_model_dirs, monkeypatch):
    data = write(ROWS.assign(split=["train", "train", "val", "test"] * 10), tmp_path / "rows.csv")
    flags = ["--data", data, "--model", str(tiny_model_dirs["bert"]), "--epochs", "1", "--batch-size", "8",
             "--device", "cpu", "--freeze", "bottom:1", "--no-show-progress-bar"]
    encoder = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"]).encoder
    train_only = (cache_bytes(encoder, ROWS["text"][0::4].tolist() + ROWS["text"][1::4].tolist()) * 1.1) / 1e9
    assert train_only * 1e9 < cache_bytes(encoder, ROWS["text"].tolist())
    partly = command_model(monkeypatch, [*flags, "--out", str(tmp_path / "a"), "--cache-limit", str(train_only)])
    assert partly.encoder.bottom_cache.training_only and len(partly.encoder.bottom_cache) == 20  # the train rows
    fully = command_model(monkeypatch, [*flags, "--out", str(tmp_path / "b")])
    assert len(fully.encoder.bottom_cache) == 40
    for name, value in fully.state_dict().items():
        torch.testing.assert_close(partly.state_dict()[name], value, rtol=0, atol=1e-5, msg=name)
    metrics = [json.loads((tmp_path / out / "metrics.json").read_text()) for out in ("a", "b")]
    for split in ("val", "test"):
        for task in TASKS:
            assert metrics[0][split][task]["confusion"] == metrics[1][split][task]["confusion"]
            assert metrics[0][split][task]["loss"] == pytest.approx(metrics[1][split][task]["loss"], abs=1e-5)


def test_the_command_reads_the_csv_once(tmp_path, monkeypatch):
    reads, read_csv = [], pd.read_csv
    monkeypatch.setattr(pd, "read_csv", lambda *args, **kwargs: reads.append(1) or read_csv(*args, **kwargs))
    labelled_csv.read_labelled_csv(write(ROWS, tmp_path / "rows.csv"))
    assert len(reads) == 1
