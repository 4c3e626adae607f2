"""Checks of what a caller passes in, with errors that name the problem and the fix.

Used wherever sentences, batch sizes or counts come in: the encoder, the model, the loaders, the training
settings and the command line.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection, Sequence

import torch


def as_text_list(sentences: object) -> tuple[list[str], bool]:
    """Check a batch of sentences; return (list of str, whether a single str was given).

    Accepts a str, or a list, tuple, NumPy array or pandas Series of str (see ``check_text``).
    """
    if isinstance(sentences, str):
        return [check_text("the sentence", sentences)], True
    if hasattr(sentences, "tolist") and not isinstance(sentences, torch.Tensor):  # NumPy, pandas
        sentences = sentences.tolist()
    if not isinstance(sentences, Sequence) or isinstance(sentences, (bytes, bytearray)):
        raise TypeError("sentences must be a str or a list, tuple, NumPy array or pandas Series of str, "
                        f"got {type(sentences).__name__}")
    for position, text in enumerate(sentences):
        if not isinstance(text, str):
            raise TypeError(f"sentences[{position}] is {type(text).__name__} ({text!r:.40}), expected str; "
                            "convert or drop that item")
        check_text(f"sentences[{position}]", text)
    return list(sentences), False


def check_text(name: str, text: str) -> str:
    """``text`` if it is valid Unicode, else a ValueError naming ``name`` and the fix. (An empty text is valid:
    it encodes to the vector of the model's special tokens, as in sentence-transformers.)"""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:  # a lone surrogate: what errors="surrogateescape" makes of bad bytes
        raise ValueError(f"{name} holds {text[error.start]!r} at character {error.start}, half of a surrogate "
                         "pair, which is not text; it comes from bytes decoded with errors='surrogateescape': "
                         "decode the source with errors='replace', or remove that character") from None
    return text


def is_bool(value: object) -> bool:
    """True or False only: a str such as "no", or a number, would otherwise pass for one by its truthiness."""
    return isinstance(value, bool)


def is_int(value: object) -> bool:
    """An integer (Python's or NumPy's); bools are refused, though Python counts them as ints."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_positive_int(value: object) -> bool:
    """An int >= 1 (see ``is_int``)."""
    return is_int(value) and value >= 1


def is_finite_number(value: object) -> bool:
    """A real number that is neither NaN nor infinite (bools refused)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_choice(name: str, value: object, choices: Collection[str]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError that lists them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def check_positive_int(name: str, value: object, none_means: str | None = None) -> int | None:
    """``value`` if it is an int >= 1 (or None, when ``none_means`` says what None does); else a ValueError."""
    if value is None and none_means is not None:
        return None
    if not is_positive_int(value):
        allowed = f"None ({none_means}) or an int >= 1" if none_means is not None else "an int >= 1"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_bool(name: str, value: object, none_means: str | None = None) -> bool | None:
    """``value`` if it is True or False (see ``is_bool``), or None when ``none_means`` says what None does; else a
    ValueError."""
    if value is None and none_means is not None:
        return None
    if not is_bool(value):
        allowed = f"True, False or None ({none_means})" if none_means is not None else "True or False"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_batch_size(batch_size: object) -> int:
    return check_positive_int("batch_size", batch_size)
