import pytest
import torch

from helpers import precision as precision_module
from helpers.precision import autocast_dtype, cpu_has_native_bf16, grad_scaler

CPU, CUDA, MPS = torch.device("cpu"), torch.device("cuda"), torch.device("mps")


@pytest.fixture(autouse=True)
def no_precision_override(monkeypatch):
    """What ``auto`` means on each machine, whatever the environment that runs the tests sets (a developer may
    run the suite with HELPERS_PRECISION=fp32); the tests of the variable set it themselves."""
    monkeypatch.delenv("HELPERS_PRECISION", raising=False)


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


def test_cpu_bf16_query_never_raises(tmp_path):
    assert isinstance(precision_module.cpu_has_native_bf16(), bool)
    assert cpu_has_native_bf16(tmp_path / "no-such-file") is False  # macOS, Windows: no /proc/cpuinfo


# The flags line of /proc/cpuinfo on four CPUs (abridged: the vector extensions, in the kernel's order).
COMMON = "fpu vme de pse tsc msr pae sse sse2 ht syscall nx lm pni ssse3 fma cx16 sse4_1 sse4_2 avx f16c avx2"
CPU_FLAGS = {
    "AMD Zen 3 (EPYC 7763): AVX2, no AVX512": (f"{COMMON} bmi1 bmi2 sha_ni vaes vpclmulqdq", False),
    "Intel Skylake-SP: AVX512-BW/VL/DQ, bf16 only emulated": (
        f"{COMMON} avx512f avx512dq avx512cd avx512bw avx512vl", False),
    "AMD Zen 4 (EPYC 9004): AVX512-BF16": (
        f"{COMMON} avx512f avx512dq avx512ifma avx512cd avx512bw avx512vl avx512_bf16 avx512vbmi", True),
    "Intel Sapphire Rapids: AVX512-BF16 and AMX": (
        f"{COMMON} avx512f avx512bw avx512vl avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8", True),
}


@pytest.mark.parametrize("cpu", CPU_FLAGS)
def test_bf16_counts_as_native_only_where_the_cpu_has_bf16_instructions(tmp_path, cpu):
    flags, native = CPU_FLAGS[cpu]
    cpuinfo = tmp_path / "cpuinfo"
    processor = f"processor\t: {{}}\nmodel name\t: {cpu}\nflags\t\t: {flags}\nbugs\t\t: spectre_v1\n\n"
    cpuinfo.write_text(processor.format(0) + processor.format(1))
    assert cpu_has_native_bf16(cpuinfo) is native


def test_helpers_precision_fp32_makes_auto_float32_everywhere(monkeypatch, cpu_bf16, gpu_generation):
    cpu_bf16(True)
    gpu_generation(9)
    monkeypatch.setenv("HELPERS_PRECISION", "fp32")
    for device in (CPU, CUDA):
        for training in (True, False):
            assert autocast_dtype("auto", device, training=training) is None
    assert autocast_dtype("bf16", CPU, training=True) == torch.bfloat16  # an explicit choice still wins
    monkeypatch.setenv("HELPERS_PRECISION", "auto")
    assert autocast_dtype("auto", CPU, training=True) == torch.bfloat16


def test_an_unknown_helpers_precision_is_refused(monkeypatch):
    monkeypatch.setenv("HELPERS_PRECISION", "float32")
    with pytest.raises(ValueError, match=r"HELPERS_PRECISION must be one of .*got 'float32'.*set it to fp32"):
        autocast_dtype("auto", CPU, training=True)
