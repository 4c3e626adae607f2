"""One shared sentence encoder, one classification head per task (hard parameter sharing).

Explained in notebook 02.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
import transformers
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .backbone import DEFAULT_MODEL
from .card import model_card
from .checks import as_text_list, check_batch_size, check_bool, check_positive_int
from .devices import HasDevice, inference, pick_device
from .embedder import SentenceTransformer, Tokenize
from .saving import check_target, is_plain_name, owned_entries, save_folder, write_json

FORMAT = "helpers.MultiTaskSentenceTransformer"
FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, BACKBONE_DIR, CARD_FILE = "config.json", "model.safetensors", "backbone", "README.md"
OWN_ENTRIES = frozenset({CONFIG_FILE, WEIGHTS_FILE, BACKBONE_DIR, CARD_FILE})
CONFIG_KEYS = ("tasks", "pooling", "dropout", "hidden_dim", "backbone", "max_seq_length")
RESERVED_TASK_NAMES = {"text": "predict() returns the sentences in a column of that name",
                       "split": "the corpus CSV holds the train/val/test split in a column of that name"}
# The heads live in an nn.ModuleDict, so a task may not take the name of one of its attributes.
_MODULE_DICT_ATTRIBUTES = frozenset(dir(nn.ModuleDict()))


def check_tasks(tasks: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Validate a task spec ``{name: [label, ...]}``; return it as plain dict of lists."""
    if not isinstance(tasks, Mapping) or not tasks:
        raise ValueError(f"tasks must be a non-empty mapping of task name -> labels, got {tasks!r}")
    checked = {}
    for name, labels in tasks.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"task name {name!r} must be a Python identifier (letters, digits, _), "
                             "since it names a head and the columns of predict()")
        if name in RESERVED_TASK_NAMES:
            raise ValueError(f"task name {name!r} is reserved: {RESERVED_TASK_NAMES[name]}; rename the task")
        if name in _MODULE_DICT_ATTRIBUTES:
            raise ValueError(f"task name {name!r} is reserved: the heads live in an nn.ModuleDict, which has an "
                             f"attribute {name!r}; rename the task")
        if isinstance(labels, str) or not isinstance(labels, Sequence) or len(labels) < 2:
            raise ValueError(f"task {name!r} needs a list of at least 2 labels, got {labels!r}")
        if not all(isinstance(label, str) and label for label in labels):
            raise ValueError(f"task {name!r}: every label must be a non-empty str, got {list(labels)}")
        duplicates = sorted({label for label in labels if list(labels).count(label) > 1})
        if duplicates:
            raise ValueError(f"task {name!r} lists label(s) {duplicates} more than once")
        checked[name] = list(labels)
    for name in checked:
        owner = name.removesuffix("_prob")
        if owner != name and owner in checked:
            raise ValueError(f"task name {name!r} clashes with task {owner!r}: predict() puts {owner!r}'s "
                             f"probabilities in a column named {name!r}; rename one of them")
    return checked


def make_head(in_features: int, n_labels: int, hidden_dim: int | None, dropout: float) -> nn.Module:
    """A linear classifier, or a one-hidden-layer MLP when ``hidden_dim`` is given."""
    if hidden_dim is None:
        return nn.Linear(in_features, n_labels)
    return nn.Sequential(nn.Linear(in_features, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden_dim, n_labels))


class MultiTaskSentenceTransformer(HasDevice, nn.Module):
    """Shared encoder (Task 1's SentenceTransformer) -> dropout -> one head per task.

    ``forward`` returns ``{task: logits}``; a loss on any task trains the shared encoder, a loss on
    one task never touches another task's head. ``pooling`` as for ``SentenceTransformer`` (None: the one a
    sentence-transformers folder declares, else mean).
    """

    def __init__(self, tasks: Mapping[str, Sequence[str]], model_name: str | Path = DEFAULT_MODEL,
                 pooling: str | None = None, dropout: float = 0.1, hidden_dim: int | None = None,
                 device: str | torch.device | None = None, *, random_weights: bool = False,
                 max_seq_length: int | None = None) -> None:
        super().__init__()
        self.tasks = check_tasks(tasks)
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        check_positive_int("hidden_dim", hidden_dim, none_means="a linear head")  # an int: the MLP width
        self.encoder = SentenceTransformer(model_name, pooling, random_weights=random_weights,
                                           max_seq_length=max_seq_length)
        self.hidden_dim = hidden_dim
        self.dropout = nn.Dropout(dropout)
        self.heads = nn.ModuleDict({task: make_head(self.encoder.embedding_dim, len(labels), hidden_dim, dropout)
                                    for task, labels in self.tasks.items()})
        self.eval()  # like the encoder; train() switches dropout on
        if device is not None:
            self.to(pick_device(device))

    @property
    def tokenize(self) -> Tokenize:
        """``model.tokenize(texts)``: the encoder's, which keeps no model alive in a loader."""
        return self.encoder.tokenize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        """Token ids ``(batch, seq)`` -> ``{task: logits (batch, n_labels)}``: one shared
        sentence vector, dropout, then each task's head."""
        shared = self.dropout(self.encoder(input_ids, attention_mask))
        return {task: head(shared) for task, head in self.heads.items()}

    def predict(self, sentences: str | Sequence[str], batch_size: int = 32, precision: str = "auto",
                show_progress_bar: bool = False) -> pd.DataFrame:
        """One row per sentence, in input order: ``text``, then each task's label and ``<task>_prob``.

        Runs in eval mode without gradients; the model's previous mode is restored. ``precision`` as for
        ``SentenceTransformer.encode``: float32 on a CPU under ``auto``, bf16 or fp16 autocast on CUDA.
        ``show_progress_bar``: a bar over the batches.
        """
        texts, _ = as_text_list(sentences)
        check_batch_size(batch_size)
        check_bool("show_progress_bar", show_progress_bar)
        widths = [len(labels) for labels in self.tasks.values()]
        with inference(self, precision=precision) as forward:
            def softmaxes(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                logits = forward(input_ids, attention_mask)
                return torch.cat([logits[task].float().softmax(dim=-1) for task in self.tasks], dim=1)

            rows = self.encoder.in_input_order(texts, batch_size, softmaxes, sum(widths), show_progress_bar)
        probabilities = dict(zip(self.tasks, rows.split(widths, dim=1)))
        frame = pd.DataFrame({"text": pd.Series(texts, dtype=object)})
        for task, labels in self.tasks.items():
            best = probabilities[task].max(dim=-1)
            frame[task] = pd.Series([labels[i] for i in best.indices.tolist()], dtype=object)
            frame[f"{task}_prob"] = best.values.numpy()
        return frame

    def config(self) -> dict:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "tasks": self.tasks,
                "pooling": self.encoder.pooling, "dropout": self.dropout.p, "hidden_dim": self.hidden_dim,
                "backbone": self.encoder.model_name, "max_seq_length": self.encoder.max_seq_length}

    def save(self, directory: str | Path, *, test_scores: Mapping[str, Mapping] | None = None,
             training: Mapping[str, object] | None = None, language: str = "en",
             extra_files: Mapping[str, str] | None = None) -> Path:
        """Write ``model.safetensors``, ``config.json``, ``backbone/`` (its config and tokenizer) and a model
        card, ``README.md`` (see ``helpers.card``: ``test_scores``, ``training`` and ``language`` go there).

        ``extra_files``: text files to write beside the model, by name (the training command's ``history.csv``
        and ``metrics.json``): saved with it in one swap, and replaced by the next save like its own files.
        ``directory`` must be new, empty or hold a model saved earlier; only the files save wrote are replaced,
        anything else there stays (see ``helpers.saving``). A README.md (or any file save writes) that save did
        not write, or that was edited since, is kept, with a warning, in place of save's. A failed save leaves
        ``directory`` as it was: absent, or holding the previous model.
        """
        directory = Path(directory)
        extra_files = dict(extra_files or {})
        taken = sorted(name for name in extra_files if name in OWN_ENTRIES or not is_plain_name(name))
        if taken:
            raise ValueError(f"extra_files cannot be named {taken}: give plain file names other than "
                             f"{sorted(OWN_ENTRIES)}, which save writes itself")
        card = model_card(directory.resolve().name, self.config(), test_scores, training, language)
        return save_folder(directory, lambda folder: self._write(folder, card, extra_files), _saved_entries,
                           CONFIG_FILE, FORMAT, what="model", editable=[CARD_FILE])

    def _write(self, folder: Path, card: str, extra_files: Mapping[str, str]) -> dict:
        """Every file but ``config.json``; returns its content, the config."""
        backbone_dir = folder / BACKBONE_DIR
        self.encoder.backbone.config.save_pretrained(backbone_dir)
        self.encoder.tokenizer.save_pretrained(backbone_dir)
        write_json(backbone_dir / "sentence_bert_config.json", {"max_seq_length": self.encoder.max_seq_length,
                                                                 "do_lower_case": self.encoder.do_lower_case})
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
        for name, text in {CARD_FILE: card, **extra_files}.items():
            (folder / name).write_text(text, encoding="utf-8")
        return self.config()

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device | None = None) -> MultiTaskSentenceTransformer:
        """Rebuild a saved model exactly, offline; never unpickles."""
        directory = Path(directory)
        config = read_config(directory)
        missing = [key for key in CONFIG_KEYS if key not in config]
        if missing:
            raise ValueError(f"{directory / CONFIG_FILE} lacks key(s) {missing}; the file is damaged: save the "
                             "model again")
        weights_path = directory / WEIGHTS_FILE
        if not weights_path.is_file():
            raise FileNotFoundError(f"{weights_path} is missing; the folder holds no weights to load")
        _check_backbone(directory / BACKBONE_DIR)
        try:
            state = load_file(weights_path)
        except (SafetensorError, OSError, ValueError) as error:
            raise ValueError(f"{weights_path} cannot be read as safetensors ({error}); the file is truncated "
                             "or not a checkpoint: save the model again") from None
        model = cls(config["tasks"], model_name=directory / BACKBONE_DIR, pooling=config["pooling"],
                    dropout=config["dropout"], hidden_dim=config["hidden_dim"], random_weights=True,
                    max_seq_length=config["max_seq_length"])
        model.encoder.model_name = config["backbone"]
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ValueError(f"{weights_path} does not match {directory / CONFIG_FILE}: {error}") from None
        return model.to(pick_device(device)) if device is not None else model


def check_save_target(directory: Path) -> None:
    """Refuse a file, or a non-empty folder that does not hold a saved model: saving must never overwrite
    anything but a model saved earlier."""
    check_target(directory, _saved_entries, "model")


def holds_saved_model(directory: Path) -> bool:
    """Whether ``directory`` holds a model written by ``save`` (so saving there again replaces only it)."""
    return _saved_entries(directory) is not None


def read_config(directory: Path) -> dict:
    """``config.json`` of a folder written by ``save``, in a format this code reads; the one place that
    parses it. Raises FileNotFoundError or ValueError that say what is wrong."""
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; is {directory} a folder written by "
                                "MultiTaskSentenceTransformer.save()?")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the file is damaged") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} config (its 'format' is "
                         f"{config.get('format') if isinstance(config, dict) else None!r})")
    version = config.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError(f"{path} has format_version {version!r}, not an int; the file is damaged: save the "
                         "model again")
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} has format_version {version}; this code reads up to {FORMAT_VERSION}: "
                         "upgrade helpers")
    return config


def _saved_entries(directory: Path) -> set[str] | None:
    """The entries of ``directory`` that ``save`` wrote (its README.md only while unedited); None when it holds
    no saved model."""
    try:
        config = read_config(directory)
    except (OSError, ValueError):
        return None
    return owned_entries(directory, config.get("saved_by", _first_record(config)), FORMAT)


def _first_record(config: dict) -> dict:
    """What a save before ``saved_by`` was recorded (which knew no extra files) wrote, in its terms."""
    return {"format": FORMAT, "files": sorted(OWN_ENTRIES), "sha256": {CARD_FILE: config.get("model_card_sha256")}}


def _check_backbone(folder: Path) -> None:
    """Refuse an incomplete ``backbone/``: without its vocabulary, transformers quietly builds a tokenizer
    of a few special tokens that turns every word into [UNK].
    """
    missing = [name for name in ("config.json", "tokenizer_config.json") if not (folder / name).is_file()]
    slow_vocabulary = _slow_vocabulary_files(folder)
    if not (folder / "tokenizer.json").is_file() and not (
            slow_vocabulary and all((folder / name).is_file() for name in slow_vocabulary)):
        missing.append("tokenizer.json")
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}: the backbone's config and tokenizer are rebuilt from "
                                "these files, so the checkpoint is incomplete; save the model again")


def _slow_vocabulary_files(folder: Path) -> list[str]:
    """The files that can stand in for ``tokenizer.json``: the vocabulary of the tokenizer class named in
    ``tokenizer_config.json`` (``vocab.txt`` for BERT).
    """
    try:
        name = json.loads((folder / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        return []
    tokenizer_class = getattr(transformers, name, None) if isinstance(name, str) else None
    names = getattr(tokenizer_class, "vocab_files_names", {})
    return [file for key, file in names.items() if key != "tokenizer_file"]
