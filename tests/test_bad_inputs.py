"""Bad inputs are refused up front, with a message that names the problem.

One row per bad input: ``pytest.param(call, error, message, id=...)``. ``call(kit)`` must raise ``error``
with a message that matches the regex ``message``. To add a case, append a row to ``BAD_INPUTS``;
``Kit`` holds the tiny models, the saved checkpoint and the scratch folder that rows build on.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from helpers import TASKS, MultiTaskSentenceTransformer, SentenceTransformer, load_corpus, make_loader, set_seed
from helpers.experiments import fresh_model
from helpers.freezing import freeze
from helpers.training import TrainConfig, train

GOOD_CSV = "text,topic,sentiment,split\nA fine day for the home team,sports,positive,train\n"


@dataclass
class Kit:
    dirs: dict[str, Path]  # tiny random backbones, from conftest.py
    model: MultiTaskSentenceTransformer  # tiny BERT with TASKS; rows must leave it as they found it
    saved: Path  # ``model``, saved; rows damage copies of it, never the original
    tmp: Path  # a fresh folder for each row

    def build(self, tasks=TASKS, **kwargs) -> MultiTaskSentenceTransformer:
        return MultiTaskSentenceTransformer(tasks, self.dirs["bert"], **kwargs)

    def encoder(self, **kwargs) -> SentenceTransformer:
        return SentenceTransformer(self.dirs["bert"], **kwargs)

    def without(self, *paths: str) -> Path:
        """A copy of the saved model with ``paths`` deleted (those that exist)."""
        folder = Path(shutil.copytree(self.saved, self.tmp / "damaged"))
        for path in paths:
            target = folder / path
            shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        return folder

    def rewritten(self, path: str, change: Callable[[bytes], bytes]) -> Path:
        """A copy of the saved model with the file at ``path`` replaced by ``change(its bytes)``."""
        folder = Path(shutil.copytree(self.saved, self.tmp / "damaged"))
        (folder / path).write_bytes(change((folder / path).read_bytes()))
        return folder

    def edited_config(self, edit: Callable[[dict], None]) -> Path:
        """A copy of the saved model whose ``config.json`` went through ``edit``."""
        def change(raw: bytes) -> bytes:
            config = json.loads(raw)
            edit(config)
            return json.dumps(config).encode()
        return self.rewritten("config.json", change)

    def csv(self, content: str | bytes) -> Path:
        path = self.tmp / "corpus.csv"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path


@pytest.fixture(scope="module")
def tiny(tiny_model_dirs, tmp_path_factory) -> tuple[MultiTaskSentenceTransformer, Path]:
    set_seed(0)
    model = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"])
    return model, model.save(tmp_path_factory.mktemp("saved") / "model")


@pytest.fixture
def kit(tiny_model_dirs, tiny, tmp_path) -> Kit:
    return Kit(tiny_model_dirs, *tiny, tmp_path)


def load(folder: Path, **kwargs) -> MultiTaskSentenceTransformer:
    return MultiTaskSentenceTransformer.load(folder, **kwargs)


def save_over_notes(kit: Kit) -> Path:
    (kit.tmp / "notes.txt").write_text("mine")
    return kit.model.save(kit.tmp)


def save_onto_a_file(kit: Kit) -> Path:
    (kit.tmp / "model").write_text("not a folder")
    return kit.model.save(kit.tmp / "model")


def swap_weights_with_other_tasks(kit: Kit) -> Path:
    other = kit.build({"topic": ["a", "b"]}).save(kit.tmp / "other")
    return kit.rewritten("model.safetensors", lambda _: (other / "model.safetensors").read_bytes())


def loader(kit: Kit, **kwargs):
    return make_loader(load_corpus(kit.csv(GOOD_CSV)), kit.model.tokenize, **kwargs)


def unlabelled_loader(kit: Kit):
    return make_loader(load_corpus(kit.csv(GOOD_CSV.replace("sports,positive", ","))), kit.model.tokenize)


NO_MPS = pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an MPS device")
CORPUS = r"corpus\.csv"

BAD_INPUTS = [
    # SentenceTransformer.encode
    pytest.param(lambda kit: kit.model.encoder.encode(["ok", None]), TypeError, r"sentences\[1\] is NoneType",
                 id="encode-none-item"),
    pytest.param(lambda kit: kit.model.encoder.encode([b"bytes"]), TypeError, r"sentences\[0\] is bytes",
                 id="encode-bytes-item"),
    pytest.param(lambda kit: kit.model.encoder.encode(42), TypeError, r"sentences must be a str or a list.*got int",
                 id="encode-int"),
    pytest.param(lambda kit: kit.model.encoder.encode(["ok", "a \ud800 b"]), ValueError,
                 r"sentences\[1\] holds '\\ud800' at character 2, half of a surrogate pair.*errors='replace'",
                 id="encode-lone-surrogate"),
    pytest.param(lambda kit: kit.model.encoder.encode("\udcff"), ValueError, r"the sentence holds '\\udcff'",
                 id="encode-lone-surrogate-str"),
    pytest.param(lambda kit: kit.model.encoder.encode(["a"], batch_size=0), ValueError,
                 r"batch_size must be an int >= 1, got 0", id="encode-batch-size-0"),
    pytest.param(lambda kit: kit.model.encoder.encode(["a"], batch_size=2.5), ValueError,
                 r"batch_size must be an int >= 1, got 2\.5", id="encode-batch-size-float"),
    pytest.param(lambda kit: kit.model.encoder.encode(["a"], batch_size=True), ValueError,
                 r"batch_size must be an int >= 1, got True", id="encode-batch-size-bool"),
    pytest.param(lambda kit: kit.model.encoder.encode(["a"], device="gpu"), ValueError,
                 r"torch cannot use device 'gpu'.*use e\.g\. 'cpu', 'cuda'", id="encode-device-unknown"),
    pytest.param(lambda kit: kit.model.encoder.encode(["a"], device="meta"), ValueError,
                 r"device 'meta' holds no data", id="encode-device-meta"),
    pytest.param(lambda kit: kit.model.encoder.encode(["a"], device="cuda:99"), ValueError,
                 r"device 'cuda:99' (is not available|does not exist)", id="encode-device-absent-cuda"),
    pytest.param(lambda kit: kit.model.encoder.encode(["a"], device="mps"), ValueError,
                 r"device 'mps' is not available.*sees no mps device", id="encode-device-absent-mps", marks=NO_MPS),
    pytest.param(lambda kit: kit.model.encoder.encode(["a"], device=2.5), ValueError,
                 r"device must be 'auto', a str .*got float \(2\.5\)", id="encode-device-float"),
    # every flag is a bool: "no" or 0 would pass for one by its truthiness
    pytest.param(lambda kit: kit.model.encoder.encode(["a"], normalize_embeddings="yes"), ValueError,
                 r"normalize_embeddings must be True or False, got 'yes'", id="encode-normalize-str"),
    pytest.param(lambda kit: kit.model.encoder.encode(["a"], convert_to_tensor=1), ValueError,
                 r"convert_to_tensor must be True or False, got 1", id="encode-convert-int"),
    pytest.param(lambda kit: kit.model.encoder.encode(["a"], show_progress_bar="no"), ValueError,
                 r"show_progress_bar must be True, False or None \(a bar for long inputs\), got 'no'",
                 id="encode-progress-str"),
    pytest.param(lambda kit: kit.model.predict(["a"], show_progress_bar="no"), ValueError,
                 r"show_progress_bar must be True or False, got 'no'", id="predict-progress-str"),
    pytest.param(lambda kit: kit.encoder(random_weights="no"), ValueError,
                 r"random_weights must be True or False, got 'no'", id="encoder-random-weights-str"),
    pytest.param(lambda kit: loader(kit, shuffle="no"), ValueError, r"shuffle must be True or False, got 'no'",
                 id="loader-shuffle-str"),
    pytest.param(lambda kit: TrainConfig(restore_best="no"), ValueError,
                 r"restore_best must be True or False, got 'no'", id="config-restore-best-str"),
    pytest.param(lambda kit: TrainConfig(show_progress_bar=1), ValueError,
                 r"show_progress_bar must be True or False, got 1", id="config-progress-int"),
    pytest.param(lambda kit: fresh_model("backbone", model_name=kit.dirs["bert"], cache="no"), ValueError,
                 r"cache must be True or False, got 'no'", id="fresh-model-cache-str"),
    # MultiTaskSentenceTransformer.predict
    pytest.param(lambda kit: kit.model.predict(["ok", 3]), TypeError, r"sentences\[1\] is int", id="predict-int-item"),
    pytest.param(lambda kit: kit.model.predict(None), TypeError, r"sentences must be a str.*got NoneType",
                 id="predict-none"),
    pytest.param(lambda kit: kit.model.predict(["a"], batch_size=-1), ValueError,
                 r"batch_size must be an int >= 1, got -1", id="predict-batch-size-negative"),
    # MultiTaskSentenceTransformer(...): tasks
    pytest.param(lambda kit: kit.build({}), ValueError, r"tasks must be a non-empty mapping.*got \{\}",
                 id="tasks-empty"),
    pytest.param(lambda kit: kit.build(["topic"]), ValueError, r"tasks must be a non-empty mapping.*\['topic'\]",
                 id="tasks-list"),
    pytest.param(lambda kit: kit.build({"topic": ["only"]}), ValueError, r"task 'topic' needs .*at least 2 labels",
                 id="tasks-one-label"),
    pytest.param(lambda kit: kit.build({"topic": ["a", "b", "a"]}), ValueError,
                 r"task 'topic' lists label\(s\) \['a'\] more than once", id="tasks-duplicate-label"),
    pytest.param(lambda kit: kit.build({"topic": ["a", ""]}), ValueError, r"every label must be a non-empty str",
                 id="tasks-empty-label"),
    pytest.param(lambda kit: kit.build({"my task": ["a", "b"]}), ValueError,
                 r"task name 'my task' must be a Python identifier", id="tasks-name-not-identifier"),
    pytest.param(lambda kit: kit.build({"text": ["a", "b"]}), ValueError,
                 r"task name 'text' is reserved: predict\(\) returns the sentences", id="tasks-name-text"),
    pytest.param(lambda kit: kit.build({"split": ["a", "b"]}), ValueError,
                 r"task name 'split' is reserved: the corpus CSV holds the train/val/test", id="tasks-name-split"),
    pytest.param(lambda kit: kit.build({"t": ["a", "b"], "t_prob": ["c", "d"]}), ValueError,
                 r"task name 't_prob' clashes with task 't'.*rename one of them", id="tasks-name-prob-column"),
    pytest.param(lambda kit: kit.build({"training": ["a", "b"]}), ValueError,
                 r"task name 'training' is reserved: .*nn\.ModuleDict", id="tasks-name-training"),
    pytest.param(lambda kit: kit.build({"forward": ["a", "b"]}), ValueError,
                 r"task name 'forward' is reserved: .*nn\.ModuleDict", id="tasks-name-forward"),
    pytest.param(lambda kit: kit.build({"keys": ["a", "b"]}), ValueError,
                 r"task name 'keys' is reserved: .*attribute 'keys'", id="tasks-name-keys"),
    # MultiTaskSentenceTransformer(...): other arguments
    pytest.param(lambda kit: kit.build(dropout=1.5), ValueError, r"dropout must be in \[0, 1\), got 1\.5",
                 id="dropout-above-1"),
    pytest.param(lambda kit: kit.build(dropout=-0.1), ValueError, r"dropout must be in \[0, 1\), got -0\.1",
                 id="dropout-negative"),
    pytest.param(lambda kit: kit.build(dropout="0.1"), ValueError, r"dropout must be in \[0, 1\), got '0\.1'",
                 id="dropout-str"),
    pytest.param(lambda kit: kit.build(hidden_dim=0), ValueError,
                 r"hidden_dim must be None \(a linear head\) or an int >= 1.*got 0", id="hidden-dim-0"),
    pytest.param(lambda kit: kit.build(hidden_dim=-4), ValueError, r"hidden_dim must be .*got -4",
                 id="hidden-dim-negative"),
    pytest.param(lambda kit: kit.build(hidden_dim=2.5), ValueError, r"hidden_dim must be .*got 2\.5",
                 id="hidden-dim-float"),
    pytest.param(lambda kit: kit.build(hidden_dim=True), ValueError, r"hidden_dim must be .*got True",
                 id="hidden-dim-bool"),
    pytest.param(lambda kit: kit.build(pooling="avg"), ValueError,
                 r"pooling must be one of \['cls', 'max', 'mean'\], got 'avg'", id="multitask-pooling"),
    pytest.param(lambda kit: kit.build(max_seq_length=0), ValueError,
                 r"max_seq_length must be None .*or an int >= 1, got 0", id="multitask-max-seq-length-0"),
    pytest.param(lambda kit: kit.build(device="meta"), ValueError, r"device 'meta' holds no data",
                 id="multitask-device-meta"),
    # SentenceTransformer(...)
    pytest.param(lambda kit: kit.encoder(pooling="CLS"), ValueError, r"pooling must be one of .*got 'CLS'",
                 id="encoder-pooling"),
    pytest.param(lambda kit: kit.encoder(max_seq_length=0), ValueError,
                 r"max_seq_length must be None .*or an int >= 1, got 0", id="encoder-max-seq-length-0"),
    pytest.param(lambda kit: kit.encoder(max_seq_length=131), ValueError,
                 r"max_seq_length 131 is above the 130 tokens that .* can take .*use at most 130",
                 id="encoder-max-seq-length-above-positions"),
    pytest.param(lambda kit: kit.build(max_seq_length=1024), ValueError, r"max_seq_length 1024 is above the 130",
                 id="multitask-max-seq-length-above-positions"),
    pytest.param(lambda kit: kit.encoder(max_seq_length=-8), ValueError, r"max_seq_length must be .*got -8",
                 id="encoder-max-seq-length-negative"),
    pytest.param(lambda kit: kit.encoder(max_seq_length=128.0), ValueError, r"max_seq_length must be .*got 128\.0",
                 id="encoder-max-seq-length-float"),
    pytest.param(lambda kit: SentenceTransformer(kit.tmp / "nowhere"), FileNotFoundError,
                 r"model folder '.*nowhere' does not exist", id="encoder-missing-folder"),
    pytest.param(lambda kit: SentenceTransformer(None), TypeError, r"model_name must be a non-empty str or Path",
                 id="encoder-model-name-none"),
    # save
    pytest.param(save_over_notes, FileExistsError, r"is not empty and does not hold a saved model",
                 id="save-foreign-folder"),
    pytest.param(save_onto_a_file, FileExistsError, r"model is a file, not a folder", id="save-onto-a-file"),
    # load
    pytest.param(lambda kit: load(kit.tmp / "nothing"), FileNotFoundError, r"nothing/config\.json is missing",
                 id="load-missing-folder"),
    pytest.param(lambda kit: load(kit.without("config.json")), FileNotFoundError, r"config\.json is missing",
                 id="load-missing-config"),
    pytest.param(lambda kit: load(kit.rewritten("config.json", lambda _: b"{not json")), ValueError,
                 r"config\.json is not valid JSON", id="load-bad-json"),
    pytest.param(lambda kit: load(kit.rewritten("config.json", lambda _: b'{"model_type": "bert"}')), ValueError,
                 r"is not a helpers\.MultiTaskSentenceTransformer config", id="load-foreign-config"),
    pytest.param(lambda kit: load(kit.edited_config(lambda c: c.update(format_version=99))), ValueError,
                 r"format_version 99; this code reads up to 1: upgrade helpers", id="load-newer-format"),
    pytest.param(lambda kit: load(kit.edited_config(lambda c: c.update(format_version="1"))), ValueError,
                 r"config\.json has format_version '1', not an int; the file is damaged", id="load-format-version-str"),
    pytest.param(lambda kit: load(kit.edited_config(lambda c: c.pop("tasks"))), ValueError,
                 r"config\.json lacks key\(s\) \['tasks'\]", id="load-config-without-tasks"),
    pytest.param(lambda kit: load(kit.without("model.safetensors")), FileNotFoundError,
                 r"model\.safetensors is missing", id="load-missing-weights"),
    pytest.param(lambda kit: load(kit.rewritten("model.safetensors", lambda raw: raw[:1000])), ValueError,
                 r"model\.safetensors cannot be read as safetensors.*truncated", id="load-truncated-weights"),
    pytest.param(lambda kit: load(swap_weights_with_other_tasks(kit)), ValueError,
                 r"model\.safetensors does not match .*config\.json", id="load-weights-of-another-model"),
    pytest.param(lambda kit: load(kit.without("backbone/tokenizer.json", "backbone/vocab.txt")), FileNotFoundError,
                 r"backbone lacks \['tokenizer\.json'\].*save the model again", id="load-missing-tokenizer"),
    pytest.param(lambda kit: load(kit.without("backbone/tokenizer_config.json")), FileNotFoundError,
                 r"backbone lacks \['tokenizer_config\.json'\]", id="load-missing-tokenizer-config"),
    pytest.param(lambda kit: load(kit.without("backbone/config.json")), FileNotFoundError,
                 r"backbone lacks \['config\.json'\]", id="load-missing-backbone-config"),
    pytest.param(lambda kit: load(kit.without("backbone")), FileNotFoundError,
                 r"backbone lacks \['config\.json', 'tokenizer_config\.json', 'tokenizer\.json'\]",
                 id="load-missing-backbone"),
    pytest.param(lambda kit: load(kit.saved, device="gpu"), ValueError, r"torch cannot use device 'gpu'",
                 id="load-device-unknown"),
    # load_corpus
    pytest.param(lambda kit: load_corpus(kit.csv("text,topic,split\nSome text,sports,train\n")), ValueError,
                 CORPUS + r" lacks column\(s\) \['sentiment'\]", id="corpus-missing-column"),
    pytest.param(lambda kit: load_corpus(kit.csv(GOOD_CSV + "Other text,weather,positive,train\n")), ValueError,
                 CORPUS + r", line 3, column 'topic': 'weather' is not allowed", id="corpus-unknown-label"),
    pytest.param(lambda kit: load_corpus(kit.csv(GOOD_CSV + "Other text,sports,positive,dev\n")), ValueError,
                 CORPUS + r", line 3, column 'split': 'dev' is not allowed", id="corpus-unknown-split"),
    pytest.param(lambda kit: load_corpus(kit.csv(GOOD_CSV + ",sports,positive,train\n")), ValueError,
                 CORPUS + r", line 3, column 'text': '' .*must contain words", id="corpus-empty-text"),
    pytest.param(lambda kit: load_corpus(kit.csv(GOOD_CSV + "A fine day for the home team,,,val\n")), ValueError,
                 CORPUS + r", line 3, column 'text'.*repeats line 2", id="corpus-duplicate-text"),
    pytest.param(lambda kit: load_corpus(kit.csv("")), ValueError, CORPUS + r" is empty; it needs a header line",
                 id="corpus-empty-file"),
    pytest.param(lambda kit: load_corpus(kit.csv(GOOD_CSV + '"An open quote,sports,positive,train\n')), ValueError,
                 CORPUS + r" is not valid CSV \(.*EOF inside string.*wrapped in double quotes", id="corpus-open-quote"),
    pytest.param(lambda kit: load_corpus(kit.csv(GOOD_CSV + "Commas, unquoted,sports,positive,train\n")), ValueError,
                 CORPUS + r" is not valid CSV \(.*Expected 4 fields in line 3, saw 5", id="corpus-too-many-fields"),
    pytest.param(lambda kit: load_corpus(kit.csv("text,topic,sentiment,split\nEvery,row,has,five,fields\n")),
                 ValueError, CORPUS + r" is not valid CSV \(.*Expected 4 fields in line 2, saw 5",
                 id="corpus-every-row-too-long"),
    pytest.param(lambda kit: load_corpus(kit.csv("text,topic,topic,sentiment,split\n")), ValueError,
                 CORPUS + r" repeats column\(s\) \['topic'\]", id="corpus-repeated-column"),
    pytest.param(lambda kit: load_corpus(kit.csv((GOOD_CSV + "Café,world,positive,train\n").encode("latin-1"))),
                 ValueError, CORPUS + r" is not UTF-8.*save the file with UTF-8", id="corpus-not-utf8"),
    # make_loader
    pytest.param(lambda kit: loader(kit, batch_size=0), ValueError, r"batch_size must be an int >= 1, got 0",
                 id="loader-batch-size-0"),
    pytest.param(lambda kit: loader(kit, batch_size=0, shuffle=True), ValueError,
                 r"batch_size must be an int >= 1, got 0", id="loader-batch-size-0-shuffled"),
    # freeze
    pytest.param(lambda kit: freeze(kit.build(), "top:2"), ValueError,
                 r"unknown freezing strategy 'top:2'; valid: 'none', 'backbone'", id="freeze-unknown-strategy"),
    pytest.param(lambda kit: freeze(kit.build(), "bottom:9"), ValueError,
                 r"unknown freezing strategy 'bottom:9'.*'bottom:<k>' with k in 0\.\.2", id="freeze-too-many-layers"),
    # TrainConfig: every numeric field is checked when the config is built
    *[pytest.param(lambda kit, field=field, value=value: TrainConfig(**{field: value}), ValueError,
                   rf"{field} must be .*{allowed}, got {re.escape(repr(value))}", id=f"config-{field}-{value}")
      for field, value, allowed in [
          ("lr", float("nan"), "a finite number > 0"), ("lr", float("inf"), "a finite number > 0"),
          ("lr", 0.0, "a finite number > 0"), ("head_lr", float("nan"), "a finite number > 0"),
          ("head_lr", -1e-3, "a finite number > 0"), ("weight_decay", -0.1, "a finite number >= 0"),
          ("max_grad_norm", -1.0, "a finite number > 0"), ("max_grad_norm", float("inf"), "a finite number > 0"),
          ("layer_decay", -0.8, r"a number in \(0, 1\]"), ("layer_decay", 1.5, r"a number in \(0, 1\]"),
          ("warmup_ratio", 1.0, r"a number in \[0, 1\)"), ("epochs", 0, "an int >= 1"),
          ("epochs", 2.5, "an int >= 1"), ("epochs", True, "an int >= 1"), ("log_every", 0, "an int >= 1"),
          ("eval_every", 0, "an int >= 1"), ("early_stopping_patience", -1, "an int >= 1")]],
    pytest.param(lambda kit: TrainConfig(task_weights={"topic": float("nan")}), ValueError,
                 r"task_weights must be finite numbers >= 0, got \{'topic': nan\}", id="config-task-weight-nan"),
    pytest.param(lambda kit: TrainConfig(precision="half"), ValueError,
                 r"precision must be one of \['auto', 'fp32', 'bf16', 'fp16'\], got 'half'", id="config-precision"),
    # train
    pytest.param(lambda kit: train(kit.build(), [], None, TrainConfig(device="cpu")), ValueError,
                 r"train_loader is empty", id="train-empty-loader"),
    pytest.param(lambda kit: train(kit.build(), unlabelled_loader(kit), None, TrainConfig(device="cpu")), ValueError,
                 r"no batch of train_loader carried a label for any task", id="train-no-label-anywhere"),
    pytest.param(lambda kit: train(kit.build(), loader(kit), None, TrainConfig(device="cuda:7")), ValueError,
                 r"device 'cuda:7' is not available|device 'cuda:7' does not exist", id="train-device-absent"),
    pytest.param(lambda kit: train(kit.build(), loader(kit), None, TrainConfig(device="meta")), ValueError,
                 r"device 'meta' holds no data", id="train-device-meta"),
    pytest.param(lambda kit: train(kit.build(), loader(kit), None, TrainConfig(device="cpu", loss_weighting="static",
                                                                               task_weights={"topic": 1.0})),
                 ValueError, r"static weighting needs a weight for each task", id="train-static-weights-missing"),
]


@pytest.mark.parametrize("call, error, message", BAD_INPUTS)
def test_bad_input_is_refused_with_a_message_that_names_the_problem(kit, call, error, message):
    with pytest.raises(error, match=message):
        call(kit)
