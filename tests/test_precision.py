import pytest
import torch

from helpers import precision as precision_module
from helpers.precision import autocast_dtype, grad_scaler

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.fixture
def cpu_bf16(monkeypatch):
    def set_native(native: bool) -> None:
        monkeypatch.setattr(precision_module, "cpu_has_native_bf16", lambda: native)
    return set_native


@pytest.fixture
def gpu_generation(monkeypatch):
    def set_capability(major: int) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
    return set_capability


@pytest.mark.parametrize("major, expected", [(9, torch.bfloat16), (8, torch.bfloat16),  # H100, A100
                                             (7, torch.float16), (6, torch.float16)])  # T4/V100, P100
def test_auto_on_cuda_uses_bf16_from_ampere_and_fp16_before(gpu_generation, major, expected):
    gpu_generation(major)
    assert autocast_dtype("auto", CUDA, training=True) == expected
    assert autocast_dtype("auto", CUDA, training=False) == expected


def test_auto_on_cpu_trains_in_bf16_only_where_the_cpu_has_it(cpu_bf16):
    cpu_bf16(True)
    assert autocast_dtype("auto", CPU, training=True) == torch.bfloat16
    assert autocast_dtype("auto", CPU, training=False) is None  # inference keeps the reference's exact numbers
    cpu_bf16(False)
    assert autocast_dtype("auto", CPU, training=True) is None


def test_auto_elsewhere_is_fp32(cpu_bf16):
    cpu_bf16(True)
    assert autocast_dtype("auto", MPS, training=True) is None


@pytest.mark.parametrize("device", [CPU, CUDA])
def test_an_explicit_choice_wins(device):
    assert autocast_dtype("fp32", device, training=True) is None
    assert autocast_dtype("bf16", device, training=False) == torch.bfloat16


def test_fp16_needs_cuda_and_unknown_names_are_refused():
    assert autocast_dtype("fp16", CUDA, training=True) == torch.float16
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device"):
        autocast_dtype("fp16", CPU, training=True)
    with pytest.raises(ValueError, match=r"precision must be one of \['auto', 'fp32', 'bf16', 'fp16'\], got 'half'"):
        autocast_dtype("half", CPU, training=True)


def test_the_gradient_scaler_is_on_for_fp16_only():
    assert not grad_scaler(CPU, None).is_enabled()
    assert not grad_scaler(CPU, torch.bfloat16).is_enabled()


def test_cpu_bf16_query_never_raises():
    assert isinstance(precision_module.cpu_has_native_bf16(), bool)
