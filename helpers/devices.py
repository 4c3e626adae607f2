"""Where models and tensors live: the device choice, batch transfers, and inference that puts a model back.

``"auto"`` means the same everywhere a device is taken: CUDA, then MPS (Apple GPUs), then the CPU. Every
notebook picks its device once, at the top, with ``pick_device``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .memory import return_freed_memory
from .precision import autocast, autocast_dtype


def pick_device(device: str | torch.device | int | None = "auto") -> torch.device:
    """``auto`` (or None) picks cuda, then mps, then cpu; anything else must name a device this machine has
    (see ``check_device``)."""
    if device is None or (isinstance(device, str) and device == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return check_device(device)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy to ``device``; from the CPU to a GPU through pinned memory, without blocking, so the copy overlaps
    compute. Only CPU memory can be pinned: a tensor already on a GPU moves (or stays) as it is."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def module_device(module: nn.Module) -> torch.device:
    """Device of a module's first parameter (cpu for a module without parameters)."""
    return next(module.parameters(), torch.empty(0)).device


class HasDevice:
    """The ``device`` property of the project's models (mixed into an ``nn.Module``)."""

    @property
    def device(self) -> torch.device:
        """Where the model's parameters are."""
        return module_device(self)


def _available(kind: str) -> bool:
    """Whether this torch build sees a device of this kind."""
    if kind == "cpu":
        return True
    if kind == "mps":
        return torch.backends.mps.is_available()
    backend = getattr(torch, kind, None)  # torch.cuda, torch.xpu, ...
    return callable(getattr(backend, "is_available", None)) and backend.is_available()


def check_device(device: str | torch.device | int) -> torch.device:
    """The device, if this machine can compute on it; checked before a model moves, so a bad name never
    leaves a model half-moved (``meta`` holds no data: moving there would discard the weights).
    """
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise ValueError("device must be 'auto', a str such as 'cuda:1', a torch.device or a GPU index, "
                         f"got {type(device).__name__} ({device!r})")
    try:
        parsed = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"torch cannot use device {device!r} ({error}); use e.g. 'cpu', 'cuda', 'cuda:1' "
                         "or 'mps'") from None
    if parsed.type == "meta":
        raise ValueError("device 'meta' holds no data, so a model moved there loses its weights; "
                         "use 'cpu', 'cuda' or 'mps'")
    if not _available(parsed.type):
        raise ValueError(f"device {device!r} is not available: torch {torch.__version__} sees no {parsed.type} "
                         "device on this machine; use 'cpu'")
    count = getattr(getattr(torch, parsed.type, None), "device_count", None)
    if parsed.type != "cpu" and parsed.index is not None and callable(count) and parsed.index >= count():
        raise ValueError(f"device {device!r} does not exist: this machine has {count()} {parsed.type} device(s), "
                         "numbered from 0")
    return parsed


@contextlib.contextmanager
def inference_state(module: nn.Module, device: str | torch.device | None = None) -> Iterator[torch.device]:
    """Eval mode, no autograd, optionally on another device (``"auto"`` allowed); the module's mode and
    device come back afterwards, also when the move or the work fails.
    """
    was_training = module.training
    home = module_device(module)
    target = home if device is None else pick_device(device)
    try:
        module.eval()
        if target != home:
            module.to(target)
        with torch.inference_mode():
            yield target
    finally:
        if target != home:
            module.to(home)
        module.train(was_training)


@contextlib.contextmanager
def inference(module: nn.Module, device: str | torch.device | None = None, precision: str = "auto"
              ) -> Iterator[Callable[[torch.Tensor, torch.Tensor], Any]]:
    """``module``'s forward pass for inference, the one loop body of ``encode``, ``predict`` and ``evaluate``.

    Inside the block: eval mode, no autograd, the module on ``device`` (if given), and a function that takes a
    batch's token ids and attention mask (anywhere), copies them to that device and runs the module under the
    inference precision rule of ``helpers.precision``. The module's mode and device come back afterwards.
    """
    with inference_state(module, device) as target:
        dtype = autocast_dtype(precision, target, training=False)

        def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
            with autocast(target, dtype):
                return module(to_device(input_ids, target), to_device(attention_mask, target))

        yield forward
    return_freed_memory()  # batches of many sizes leave their activations' memory scattered: give it back
