"""Batch transfers: CPU tensors go to a GPU through pinned memory; a tensor that is not in CPU memory is never
pinned (pin_memory fails for one already on a GPU)."""

import pytest
import torch

from helpers.devices import to_device

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_only_cpu_tensors_are_pinned_on_their_way_to_a_gpu(monkeypatch):
    pinned, moved = [], []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda tensor: pinned.append(tensor.device.type) or tensor)
    monkeypatch.setattr(torch.Tensor, "to", lambda tensor, device, non_blocking=False: moved.append(
        (tensor.device.type, non_blocking)) or tensor)
    for tensor in (torch.ones(2), torch.ones(2, device="meta")):  # meta: a tensor outside CPU memory, as on a GPU
        to_device(tensor, torch.device("cuda"))
    to_device(torch.ones(2), torch.device("cpu"))
    assert pinned == ["cpu"]
    assert moved == [("cpu", True), ("meta", False), ("cpu", False)]


@CUDA
def test_a_batch_already_on_the_gpu_stays_there_and_a_cpu_batch_gets_there():
    on_gpu = torch.ones(2, device="cuda")
    assert to_device(on_gpu, torch.device("cuda")) is on_gpu
    assert to_device(torch.ones(2), torch.device("cuda")).device.type == "cuda"
