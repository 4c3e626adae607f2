"""``python -m helpers predict``: a saved model's labels for each text of a CSV, never over a file unasked."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import TASKS, MultiTaskSentenceTransformer, cli, set_seed

TEXTS = ["The striker scored twice.", "x", "The striker scored twice.", "The bank posted record profit",
         "A new chip doubles battery life, and the reviews love it"]


@pytest.fixture(scope="module")
def saved(tiny_model_dirs, tmp_path_factory) -> tuple[MultiTaskSentenceTransformer, Path]:
    set_seed(0)
    model = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"])
    with torch.no_grad():  # heads that tell these texts apart: logits centred on their mean embedding
        mean = torch.from_numpy(model.encoder.encode(TEXTS)).mean(dim=0)
        for head in model.heads.values():
            head.weight.mul_(100)
            head.bias.copy_(-head.weight @ mean)
    return model, model.save(tmp_path_factory.mktemp("saved") / "model")


def csv_of(tmp_path: Path, content: str, name: str = "new.csv") -> Path:
    path = tmp_path / name
    path.write_text(content)
    return path


def predict(saved_folder: Path, data: Path, out: Path, *flags: str) -> None:
    cli.main(["predict", "--model", str(saved_folder), "--data", str(data), "--out", str(out),
              "--no-show-progress-bar", *flags])


def refused(capsys, saved_folder: Path, data: Path, out: Path, *flags: str) -> str:
    with pytest.raises(SystemExit) as stop:
        predict(saved_folder, data, out, *flags)
    assert stop.value.code == 2
    return capsys.readouterr().err


def test_each_row_gets_each_tasks_label_and_probability_beside_its_own_columns(saved, tmp_path, capsys):
    model, folder = saved
    rows = pd.DataFrame({"id": ["a7", "b8", "c9", "d0", "e1"], "text": TEXTS,
                         "topic": ["sports", "business", "", "business", "sci_tech"]})
    rows.to_csv(tmp_path / "new.csv", index=False)
    predict(folder, tmp_path / "new.csv", tmp_path / "out" / "predictions.csv", "--batch-size", "2")
    written = pd.read_csv(tmp_path / "out" / "predictions.csv", dtype={"id": str, "topic": str}, keep_default_na=False)
    expected = model.predict(TEXTS)
    assert expected["topic"].nunique() > 1  # so that a label in the wrong row shows
    assert list(written.columns) == ["id", "text", "topic", "topic_predicted", "topic_prob", "sentiment_predicted",
                                     "sentiment_prob"]
    pd.testing.assert_frame_equal(written[["id", "text", "topic"]], rows)  # the input, as it was, in its order
    for task in TASKS:
        assert written[f"{task}_predicted"].tolist() == expected[task].tolist()
        # batches of 2 pad differently from one batch of 5, which moves float32 sums in the sixth decimal
        assert written[f"{task}_prob"].tolist() == pytest.approx(expected[f"{task}_prob"].tolist(), abs=1e-4)
    assert "wrote " in capsys.readouterr().out


def test_an_existing_out_is_replaced_only_with_overwrite(saved, tmp_path, capsys):
    data, out = csv_of(tmp_path, "text\nGood film\n"), tmp_path / "predictions.csv"
    out.write_text("my earlier results\n")
    assert "predictions.csv exists; pass --overwrite to replace it" in refused(capsys, saved[1], data, out)
    assert out.read_text() == "my earlier results\n"
    predict(saved[1], data, out, "--overwrite")
    assert pd.read_csv(out)["text"].tolist() == ["Good film"]


def test_the_input_is_never_written_over(saved, tmp_path, capsys):
    data = csv_of(tmp_path, "text\nGood film\n")
    assert "is the --data file; write the predictions to another file" in refused(capsys, saved[1], data, data,
                                                                                  "--overwrite")
    assert data.read_text() == "text\nGood film\n"


def test_a_failure_while_writing_leaves_the_earlier_file_whole(saved, tmp_path, monkeypatch):
    data, out = csv_of(tmp_path, "text\nGood film\n"), tmp_path / "predictions.csv"
    out.write_text("my earlier results\n")

    def half_written(frame, path, **kwargs):
        Path(path).write_text("text,topic_pre")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_written)
    with pytest.raises(OSError, match="No space left"):
        predict(saved[1], data, out, "--overwrite")
    assert out.read_text() == "my earlier results\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new.csv", "predictions.csv"]


@pytest.mark.parametrize("content, message", [
    ("", r"new\.csv is empty; it needs a header line"),
    ("text\n", r"new\.csv has a header but no rows"),
    ("sentence\nGood film\n", r"new\.csv lacks column\(s\) \['text'\]; found \['sentence'\]"),
    ("text\nGood film\n \n\"\"\n", r"new\.csv, line 4, column 'text': '' is not allowed; every text must contain"),
    ("text,topic_predicted\nGood film,sports\n", r"already has column\(s\) \['topic_predicted'\], where the "
                                                 r"predictions go; rename them"),
])
def test_a_bad_input_file_is_a_usage_error_that_names_the_problem(saved, tmp_path, capsys, content, message):
    error = refused(capsys, saved[1], csv_of(tmp_path, content), tmp_path / "predictions.csv")
    assert re.search(message, error)
    assert not (tmp_path / "predictions.csv").exists()


def test_a_folder_without_a_saved_model_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    data = csv_of(tmp_path, "text\nGood film\n")
    error = refused(capsys, tmp_path / "empty", data, tmp_path / "predictions.csv")
    assert "config.json is missing; is" in error and "a folder written by MultiTaskSentenceTransformer.save()" in error


@pytest.mark.parametrize("flags, message", [
    (["--device", "gpu"], "torch cannot use device 'gpu'"),
    (["--precision", "fp16", "--device", "cpu"], "precision 'fp16' needs a CUDA device"),
    (["--batch-size", "0"], "argument --batch-size: batch_size must be an int >= 1, got 0"),
])
def test_bad_flags_are_usage_errors(saved, tmp_path, capsys, flags, message):
    assert message in refused(capsys, saved[1], csv_of(tmp_path, "text\nGood film\n"), tmp_path / "p.csv", *flags)


def test_out_may_not_be_a_folder(saved, tmp_path, capsys):
    (tmp_path / "results").mkdir()
    error = refused(capsys, saved[1], csv_of(tmp_path, "text\nGood film\n"), tmp_path / "results")
    assert "results is a folder; give a file name" in error


def test_the_progress_bar_counts_batches(saved, tmp_path, capsys):
    data = csv_of(tmp_path, "text\n" + "\n".join(f"sentence {i}" for i in range(5)) + "\n")
    cli.main(["predict", "--model", str(saved[1]), "--data", str(data), "--out", str(tmp_path / "p.csv"),
              "--batch-size", "2", "--show-progress-bar"])
    assert "3/3" in capsys.readouterr().out
