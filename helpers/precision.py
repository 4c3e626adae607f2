"""One precision policy for ``encode``, ``predict``, ``evaluate`` and ``train``: which autocast dtype, if any.

Explained in notebook 04. Autocast covers the forward pass only: the loss is taken in float32, and weights,
gradients and the optimizer step stay in float32, so a low-precision run updates the same float32 model.

Two rules, one per purpose. Training (``train``) under ``auto`` uses bf16 wherever the hardware computes it
natively (recent GPUs, x86 CPUs with AVX512-BF16 or AMX), fp16 with loss scaling on older GPUs. Inference
(``encode``, ``predict`` and ``evaluate``, so every reported score) under ``auto`` stays float32 on a CPU and
uses bf16/fp16 autocast on a GPU: on CPUs a score never depends on whether the CPU has bf16.

The environment variable ``HELPERS_PRECISION`` says what ``auto`` means: ``HELPERS_PRECISION=fp32`` makes every
``auto`` float32, on any hardware (to reproduce the committed float32 numbers, or to time a float32 budget on a
CPU with bf16). An explicit ``precision=`` argument always wins over it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch

from .checks import check_choice

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ENVIRONMENT_VARIABLE = "HELPERS_PRECISION"
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# x86 instructions that compute in bf16. AVX512-BW/VL/DQ alone (Skylake-SP to Tiger Lake), which torch's oneDNN
# check accepts, only emulate it: there bf16 runs 3 to 5 times slower than float32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")


def check_precision(precision: object) -> str:
    """``precision`` if it is one of ``PRECISIONS``, else a ValueError listing them."""
    return check_choice("precision", precision, PRECISIONS)


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The instruction-set flags of the first CPU listed in ``cpuinfo`` (Linux); empty where it cannot be read."""
    try:
        with cpuinfo.open() as lines:
            for line in lines:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """True on x86 CPUs with bf16 instructions (AVX512-BF16, AMX), where bf16 autocast runs about 2x faster.

    Elsewhere torch emulates bf16 on the CPU, which is slower than float32; where the flags cannot be read
    (macOS, Windows, ARM), the answer is False, so ``auto`` keeps float32.
    """
    return bool(cpu_flags(cpuinfo) & NATIVE_BF16_FLAGS)


def cuda_has_native_bf16(device: torch.device) -> bool:
    """Ampere (compute capability 8.0) and newer compute in bf16; a T4 or V100 only emulates it."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def _meaning_of_auto() -> str:
    value = os.environ.get(ENVIRONMENT_VARIABLE, "auto")
    if value not in PRECISIONS:  # named for what it is: a variable, not an argument
        raise ValueError(f"the environment variable {ENVIRONMENT_VARIABLE} must be one of {list(PRECISIONS)}, got "
                         f"{value!r}; unset it, or set it to fp32 to make 'auto' mean float32")
    return value


def autocast_dtype(precision: str, device: torch.device, training: bool) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: plain float32).

    ``auto`` (unless ``HELPERS_PRECISION`` says otherwise) picks bf16 on a GPU that computes in bf16, fp16 on an
    older GPU (train with a gradient scaler), and for training bf16 on a CPU with native bf16. Inference on a CPU
    stays float32 under ``auto``, so embeddings match the float32 reference exactly; ask for ``bf16`` to trade
    that for speed.
    """
    if check_precision(precision) == "auto":
        precision = _meaning_of_auto()
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
