"""The sentence-transformers folder format: write an encoder in it; read what a folder declares.

``sentence_transformers.SentenceTransformer(folder)`` loads such a folder: the transformer at the top (its
config, safetensors weights and tokenizer), ``modules.json`` listing a Transformer and a Pooling module,
``1_Pooling/config.json`` with the pooling mode, ``sentence_bert_config.json`` with the input limit and whether
to lowercase the input, and ``config_sentence_transformers.json``. ``save_encoder`` writes the classic layout,
the one all-MiniLM-L6-v2 itself ships in; ``declared_pooling`` also reads the newer one (``"pooling_mode":
"cls"``). The encoder here has no layer after pooling, so no Normalize module is written: vectors come out as
pooled, and cosine similarity (the one the folder names) ignores length. A Normalize module in a folder is not
applied for the same reason; any other module after pooling (Dense, ...) would change the vectors, so
``check_modules`` refuses a folder that has one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import torch
import transformers

from .backbone import quiet_transformers, without_pooler
from .saving import owned_entries, save_folder, write_json

FORMAT = "helpers.SentenceTransformer"
MODULES_FILE, MARKER_FILE, POOLING_DIR = "modules.json", "config_sentence_transformers.json", "1_Pooling"
SETTINGS_FILE = "sentence_bert_config.json"
APPLIED_MODULES = ("Transformer", "Pooling", "Normalize")  # Normalize: ignored, see the module docstring
LEGACY_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                       "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                       "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


class Encoder(Protocol):
    """What ``save_encoder`` reads of a ``helpers.SentenceTransformer`` (named here, not imported: the embedder
    imports this module)."""

    backbone: transformers.PreTrainedModel
    tokenizer: transformers.PreTrainedTokenizerBase
    pooling: str
    max_seq_length: int
    do_lower_case: bool
    embedding_dim: int


def save_encoder(encoder: Encoder, directory: str | Path) -> Path:
    """Write ``encoder`` into ``directory`` in the sentence-transformers format (see the module docstring)."""
    return save_folder(directory, lambda folder: _write(encoder, folder), _saved_entries, MARKER_FILE, FORMAT,
                       what="sentence-transformers encoder")


def _write(encoder: Encoder, folder: Path) -> dict:
    """Every file but the marker; returns the marker's content."""
    with quiet_transformers():
        encoder.backbone.save_pretrained(folder)  # config.json and model.safetensors
        encoder.tokenizer.save_pretrained(folder)
    # model_args: load the transformer without the pooler layer it was built without (none of its weights).
    write_json(folder / SETTINGS_FILE, {"max_seq_length": encoder.max_seq_length,
                                        "do_lower_case": encoder.do_lower_case,
                                        "model_args": without_pooler(type(encoder.backbone))})
    write_json(folder / MODULES_FILE, [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"}])
    (folder / POOLING_DIR).mkdir()
    write_json(folder / POOLING_DIR / "config.json", {
        "word_embedding_dimension": encoder.embedding_dim,
        **{key: mode == encoder.pooling for key, mode in LEGACY_POOLING_KEYS.items()}})
    return {"__version__": {"transformers": transformers.__version__, "pytorch": torch.__version__},
            "model_type": "SentenceTransformer", "prompts": {}, "default_prompt_name": None,
            "similarity_fn_name": "cosine"}


def _saved_entries(folder: Path) -> set[str] | None:
    """The entries of ``folder`` that ``save_encoder`` wrote; None when it did not write the folder."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return owned_entries(folder, marker.get("saved_by") if isinstance(marker, dict) else None, FORMAT)


def _modules(folder: str | Path) -> list[dict]:
    """The modules a local sentence-transformers folder lists (none for anything else)."""
    modules_path = Path(folder) / MODULES_FILE
    modules = _read_json(modules_path) if modules_path.is_file() else []
    return [module for module in modules if isinstance(module, dict)] if isinstance(modules, list) else []


def _kind(module: dict) -> str:
    """``Pooling`` for ``sentence_transformers.models.Pooling`` (and for newer releases' longer paths)."""
    return str(module.get("type", "")).rsplit(".", 1)[-1]


def check_modules(folder: str | Path) -> None:
    """Refuse a sentence-transformers folder with a module this encoder does not apply (Dense, ...): without it,
    vectors and their size would silently differ from what sentence-transformers computes."""
    unapplied = [f"{module.get('path') or module.get('name')} ({module.get('type')})" for module in _modules(folder)
                 if _kind(module) not in APPLIED_MODULES]
    if unapplied:
        raise ValueError(f"{Path(folder).name}/{MODULES_FILE} lists {', '.join(unapplied)}, which this encoder does "
                         f"not apply (it applies {', '.join(APPLIED_MODULES[:2])}; Normalize is left to encode's "
                         "normalize_embeddings), so its vectors would differ from sentence-transformers'; use that "
                         "library for this model, or a folder without those modules")


def declared_lower_case(folder: str | Path) -> bool:
    """Whether a local sentence-transformers folder asks for its input lowercased (``do_lower_case`` in
    ``sentence_bert_config.json``), as that library then does before tokenizing; False for anything else."""
    path = Path(folder) / SETTINGS_FILE
    settings = _read_json(path) if path.is_file() else {}
    return isinstance(settings, dict) and settings.get("do_lower_case") is True


def declared_pooling(folder: str | Path) -> str | None:
    """The pooling a local sentence-transformers folder declares (``mean``, ``cls`` or ``max``); None for
    anything else (a Hugging Face name, a folder without ``modules.json`` or without a Pooling module).

    A declared mode this encoder does not compute (``weightedmean``, several at once, ...) is refused.
    """
    paths = [module.get("path", "") for module in _modules(folder) if _kind(module) == "Pooling"]
    if not paths:
        return None
    config_path = Path(folder) / paths[0] / "config.json"
    config = _read_json(config_path)
    declared = config.get("pooling_mode") if isinstance(config, dict) else None
    if declared is None and isinstance(config, dict):  # the classic layout: one flag per mode
        declared = [mode for key, mode in LEGACY_POOLING_KEYS.items() if config.get(key)] or ["mean"]
    modes = [declared] if isinstance(declared, str) else list(declared or [])
    if len(modes) != 1 or modes[0] not in ("mean", "cls", "max"):
        raise ValueError(f"{Path(folder).name}/{paths[0]}/config.json declares pooling {modes}, which this encoder "
                         "does not compute; pass pooling='mean', 'cls' or 'max' to use the model with one of those")
    return modes[0]


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path.parent.name}/{path.name} cannot be read as JSON ({error}); the model folder is "
                         "damaged") from None
