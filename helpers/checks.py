"""Checks of what a caller passes in, with errors that name the problem and the fix.

Used wherever sentences, batch sizes or counts come in: the encoder, the model, the loaders, the training
settings and the command line.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def as_text_list(sentences: object) -> tuple[list[str], bool]:
    """Check a batch of sentences; return (list of str, whether a single str was given).

    Accepts a str, or a list, tuple, NumPy array or pandas Series of str.
    """
    if isinstance(sentences, str):
        return [sentences], True
    if hasattr(sentences, "tolist") and not isinstance(sentences, torch.Tensor):  # NumPy, pandas
        sentences = sentences.tolist()
    if not isinstance(sentences, Sequence) or isinstance(sentences, (bytes, bytearray)):
        raise TypeError("sentences must be a str or a list, tuple, NumPy array or pandas Series of str, "
                        f"got {type(sentences).__name__}")
    for position, text in enumerate(sentences):
        if not isinstance(text, str):
            raise TypeError(f"sentences[{position}] is {type(text).__name__} ({text!r:.40}), expected str; "
                            "convert or drop that item")
    return list(sentences), False


def is_positive_int(value: object) -> bool:
    """An int >= 1; bools are refused, though Python counts them as ints."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_int(name: str, value: object, none_means: str | None = None) -> int | None:
    """``value`` if it is an int >= 1 (or None, when ``none_means`` says what None does); else a ValueError."""
    if value is None and none_means is not None:
        return None
    if not is_positive_int(value):
        allowed = f"None ({none_means}) or an int >= 1" if none_means is not None else "an int >= 1"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return value


def check_batch_size(batch_size: object) -> int:
    return check_positive_int("batch_size", batch_size)
