"""One precision policy for ``encode``, ``predict`` and ``train``: which autocast dtype, if any.

Explained in notebook 04. Autocast covers the forward pass only: the loss is taken in float32, and weights,
gradients and the optimizer step stay in float32, so a low-precision run updates the same float32 model.

Two rules, one per purpose. Training (``train``) under ``auto`` uses bf16 wherever the hardware computes it
natively (recent GPUs, CPUs with AVX512-BF16 or AMX), fp16 with loss scaling on older GPUs. Inference
(``encode``, ``predict`` and ``evaluate``, so every reported score) under ``auto`` stays float32 on a CPU and
uses bf16/fp16 autocast on a GPU: on CPUs a score never depends on whether the CPU has bf16.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16, AMX), where bf16 autocast runs about 2x faster.

    Elsewhere torch emulates bf16 on the CPU, which is slower than float32.
    """
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or a torch that lacks the query
        return False


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Ampere (compute capability 8.0) and newer compute in bf16; a T4 or V100 only emulates it."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def autocast_dtype(precision: str, device: torch.device, training: bool) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain float32).

    ``auto`` picks bf16 on a GPU that computes in bf16, fp16 on an older GPU (train with a gradient
    scaler), and for training bf16 on a CPU with native bf16. Inference on a CPU stays float32 under
    ``auto``, so embeddings match the float32 reference exactly; ask for ``bf16`` to trade that for speed.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise ValueError(f"precision 'fp16' needs a CUDA device, got {device.type!r}; use 'bf16' or 'fp32'")
        return _DTYPES[precision]
    if device.type == "cuda":
        return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16
    if device.type == "cpu" and training and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``dtype``, or nothing at all for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none."""
    return torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
