"""Small shared utilities: seeding, device choice, input checks, inference state.

Used by all four notebooks; notebook 04 explains the device choice.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn


def set_seed(seed: int = 42) -> None:
    """Seed Python, NumPy and torch so a run can be repeated exactly on the same machine."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) picks cuda, then mps, then cpu; anything else is passed to ``torch.device``."""
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def autocast_dtype(device: torch.device, bf16: bool = True) -> torch.dtype | None:
    """bf16 autocast on CUDA devices that support it; full precision everywhere else (CPUs included)."""
    if bf16 and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to ``device``; to a GPU through pinned memory, without blocking, so the copy overlaps compute."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def module_device(module: nn.Module) -> torch.device:
    """Device of a module's first parameter (cpu for a module without parameters)."""
    return next(module.parameters(), torch.empty(0)).device


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


def check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return batch_size


@contextlib.contextmanager
def inference_state(module: nn.Module, device: str | torch.device | None = None) -> Iterator[torch.device]:
    """Eval mode, no autograd, optionally on another device; the module's mode and device come back after."""
    was_training = module.training
    home = module_device(module)
    target = home if device is None else torch.device(device)
    module.eval()
    if target != home:
        module.to(target)
    try:
        with torch.inference_mode():
            yield target
    finally:
        if target != home:
            module.to(home)
        module.train(was_training)
