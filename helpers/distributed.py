"""Data-parallel training with PyTorch DistributedDataParallel (DDP), launched by ``torchrun``.

``torchrun`` starts one process (a *rank*) per GPU, or several on a CPU, on one or more machines, and
tells each its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``. Every rank holds a full copy of the model and
trains on its own share of each epoch; DDP averages the gradients during the backward pass, so every copy
takes the same step. In a single process (no process group) every function here is a no-op, so ``train``
runs the same code with or without torchrun. See the README, "Beyond one machine".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence

import pandas as pd
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from . import data
from .devices import module_device, pick_device


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def data_parallel() -> bool:
    """Whether this process trains data-parallel: torchrun started it (``setup`` joins its process group, also
    with ``--nproc-per-node 1``), or a process group is joined. Known before ``setup``."""
    return "WORLD_SIZE" in os.environ or is_distributed()


def check_gradual_unfreezing(gradual_unfreezing: bool) -> None:
    """Refuse gradual unfreezing when training data-parallel: DDP synchronises only the parameters that are
    trainable when it wraps the model. The command asks before training starts, ``wrap`` again."""
    if gradual_unfreezing and data_parallel():
        raise ValueError("gradual unfreezing cannot run under torchrun (with any number of processes): DDP "
                         "synchronises only the parameters that are trainable when it wraps the model; freeze "
                         "once before training instead (freeze(), or --freeze in the command), or run one process "
                         "without torchrun")


def is_main() -> bool:
    """Rank 0 logs, shows progress and writes files; the other ranks only compute."""
    return rank() == 0


def setup(device: str = "auto") -> None:
    """Join the process group that torchrun describes in the environment; nothing without torchrun.

    NCCL when training on GPUs (each rank on GPU ``LOCAL_RANK`` of its machine), gloo on CPUs.
    """
    if not data_parallel() or is_distributed():
        return
    on_gpu = pick_device(device).type == "cuda"
    if on_gpu:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if on_gpu else "gloo")


def teardown() -> None:
    if is_distributed():
        dist.destroy_process_group()


def wrap(model: nn.Module, gradual_unfreezing: bool = False) -> nn.Module:
    """``model`` in DDP when there is a process group (its start is copied from rank 0); else ``model``.

    DDP waits for every trainable parameter's gradient at each backward pass: ``train_step`` makes every
    head take part (``connect_outputs``) and the backbones load without an unused pooler, so there is no
    need for ``find_unused_parameters``.
    """
    check_gradual_unfreezing(gradual_unfreezing)
    if not is_distributed():
        return model
    device = module_device(model)
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


def connect_outputs(loss: torch.Tensor, outputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``loss`` plus 0 x every output under DDP: a head whose task has no label in this rank's batch
    still gets a (zero) gradient, which DDP's all-reduce waits for. ``loss`` itself in a single process."""
    if not is_distributed():
        return loss
    return loss + 0.0 * sum(values.float().sum() for values in outputs.values())


def clear_idle_head_gradients(model: nn.Module, counts: Mapping[str, int]) -> None:
    """Under DDP, clear the gradients of the heads whose task has no label in the whole step (global count 0).

    ``connect_outputs`` keeps every head in DDP's all-reduce, so those heads get zero gradients, and AdamW
    would decay them and move them on momentum; in one process they get no gradient, and AdamW leaves them
    alone. The counts are global, so every rank clears the same heads.
    """
    if not is_distributed():
        return
    for task, count in counts.items():
        if not count:
            for parameter in model.module.heads[task].parameters():  # DDP keeps the model in .module
                parameter.grad = None


def _reduction_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def sum_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over all ranks, on every rank (``values`` itself in one process)."""
    if not is_distributed():
        return values
    total = values.to(_reduction_device())
    dist.all_reduce(total)
    return total.to(values.device)


def total_counts(counts: Mapping[str, int]) -> dict[str, int]:
    """Per key, the sum of ``counts`` over all ranks (one all-reduce); ``counts`` itself in one process."""
    if not is_distributed():
        return dict(counts)
    summed = sum_over_ranks(torch.tensor(list(counts.values()), dtype=torch.long)).tolist()
    return dict(zip(counts, summed))


def average_gradients(parameters: Iterable[nn.Parameter]) -> None:
    """Average the gradients of parameters outside DDP (the learned loss weights) over all ranks, as DDP
    does for the model's, so every rank applies the same update.

    A parameter without a gradient keeps none, as in one process (AdamW then leaves it alone): a learned
    weight has a gradient on every rank or on none, since a task's loss exists wherever its global label
    count is above zero (see ``helpers.losses.task_losses``).
    """
    if not is_distributed():
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= world_size()


def save_on_main(model: nn.Module, directory) -> None:
    """Rank 0 saves; the others wait for it, so a later step can rely on the files being complete."""
    if is_main():
        model.save(directory)
    if is_distributed():
        dist.barrier()


def copy_from_main(model: nn.Module) -> None:
    """Overwrite every rank's weights with rank 0's (rank 0 may have read them from its own disk)."""
    if is_distributed():
        for tensor in model.state_dict().values():
            synced = tensor.to(_reduction_device())
            dist.broadcast(synced, src=0)
            tensor.copy_(synced)


def make_loader(frame: pd.DataFrame, tokenize: Callable[[list[str]], dict[str, torch.Tensor]],
                tasks: Mapping[str, Sequence[str]], batch_size: int = 32, shuffle: bool = False, seed: int = 0
                ) -> DataLoader:
    """``helpers.data.make_loader`` over this rank's share of ``frame`` (all of it in a single process)."""
    return data.make_loader(frame, tokenize, tasks, batch_size, shuffle, seed, rank(), world_size())
