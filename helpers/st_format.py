"""The sentence-transformers folder format: write an encoder in it; read the pooling a folder declares.

``sentence_transformers.SentenceTransformer(folder)`` loads such a folder: the transformer at the top (its
config, safetensors weights and tokenizer), ``modules.json`` listing a Transformer and a Pooling module,
``1_Pooling/config.json`` with the pooling mode, ``sentence_bert_config.json`` with the input limit, and
``config_sentence_transformers.json``. ``SentenceTransformer.save`` writes the classic layout, the one
all-MiniLM-L6-v2 itself ships in; ``declared_pooling`` also reads the newer one (``"pooling_mode": "cls"``). The
encoder here has no layer after pooling, so no Normalize module is written: vectors come out as pooled, and
cosine similarity (the one the folder names) ignores length.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import transformers

from .backbone import quiet_transformers, without_pooler
from .saving import save_folder, write_json

if TYPE_CHECKING:
    from .embedder import SentenceTransformer

FORMAT = "helpers.SentenceTransformer"
MODULES_FILE, MARKER_FILE, POOLING_DIR = "modules.json", "config_sentence_transformers.json", "1_Pooling"
LEGACY_POOLING_KEYS = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
                       "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                       "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}


def save_encoder(encoder: SentenceTransformer, directory: str | Path) -> Path:
    """Write ``encoder`` into ``directory`` in the sentence-transformers format (see the module docstring)."""
    return save_folder(directory, lambda folder: _write(encoder, folder), _saved_entries, MARKER_FILE,
                       what="sentence-transformers encoder")


def _write(encoder: SentenceTransformer, folder: Path) -> None:
    with quiet_transformers():
        encoder.backbone.save_pretrained(folder)  # config.json and model.safetensors
        encoder.tokenizer.save_pretrained(folder)
    # model_args: load the transformer without the pooler layer it was built without (none of its weights).
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": encoder.max_seq_length, "do_lower_case": False,
                                                      "model_args": without_pooler(type(encoder.backbone))})
    write_json(folder / MODULES_FILE, [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": POOLING_DIR, "type": "sentence_transformers.models.Pooling"}])
    (folder / POOLING_DIR).mkdir()
    write_json(folder / POOLING_DIR / "config.json", {
        "word_embedding_dimension": encoder.embedding_dim,
        **{key: mode == encoder.pooling for key, mode in LEGACY_POOLING_KEYS.items()}})
    files = sorted([path.name for path in folder.iterdir()] + [MARKER_FILE])
    write_json(folder / MARKER_FILE, {  # last: it marks the folder as saved here, and lists what save wrote
        "__version__": {"transformers": transformers.__version__, "pytorch": torch.__version__},
        "model_type": "SentenceTransformer", "prompts": {}, "default_prompt_name": None,
        "similarity_fn_name": "cosine", "saved_by": {"format": FORMAT, "files": files}})


def _saved_entries(folder: Path) -> list[str] | None:
    """The entries of ``folder`` that ``save_encoder`` wrote; None when it did not write the folder."""
    try:
        saved_by = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8")).get("saved_by")
    except (OSError, ValueError, AttributeError):
        return None
    files = saved_by.get("files") if isinstance(saved_by, dict) and saved_by.get("format") == FORMAT else None
    if not isinstance(files, list):
        return None
    return [name for name in files if isinstance(name, str) and name not in ("", ".", "..")
            and Path(name).name == name]  # plain names only: a save never moves anything outside its folder


def declared_pooling(folder: str | Path) -> str | None:
    """The pooling a local sentence-transformers folder declares (``mean``, ``cls`` or ``max``); None for
    anything else (a Hugging Face name, a folder without ``modules.json`` or without a Pooling module).

    A declared mode this encoder does not compute (``weightedmean``, several at once, ...) is refused.
    """
    modules_path = Path(folder) / MODULES_FILE
    if not modules_path.is_file():
        return None
    modules = _read_json(modules_path)
    paths = [module.get("path", "") for module in modules if isinstance(module, dict)
             and str(module.get("type", "")).endswith("Pooling")] if isinstance(modules, list) else []
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
