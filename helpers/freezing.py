"""What to train: freeze components of a model, build optimizer groups, unfreeze gradually.

Explained in notebook 03. Works on the components of ``helpers.parameters`` (embeddings, layers,
pooler, one head per task).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from .parameters import components


def _set_trainable(parameters: Iterable[nn.Parameter], trainable: bool) -> None:
    for parameter in parameters:
        parameter.requires_grad_(trainable)


def freeze(model: nn.Module, strategy: str) -> nn.Module:
    """Set which parameters train, for the whole model (not cumulative), and return the model.

    - ``none``: full fine-tuning; ``backbone``: heads only; ``all``: nothing trains (feature extraction).
    - ``embeddings``: the embedding block frozen (word-piece, position and token-type embeddings and their
      LayerNorm); ``bottom:<k>``: the embeddings and layers 0..k-1 frozen.
    - ``head:<task>``: that task's head frozen, everything else trains.
    """
    groups = components(model)
    n_layers = sum(name.startswith("layer ") for name in groups)
    tasks = [name.removeprefix("head: ") for name in groups if name.startswith("head: ")]
    kind, _, argument = strategy.partition(":") if isinstance(strategy, str) else ("", "", "")
    frozen: set[str]
    if strategy in ("none", "backbone", "all", "embeddings"):
        frozen = {"none": set(), "all": set(groups), "embeddings": {"embeddings"},
                  "backbone": {name for name in groups if not name.startswith("head: ")}}[strategy]
    elif kind == "head" and argument in tasks:
        frozen = {f"head: {argument}"}
    elif kind == "bottom" and argument.isdigit() and int(argument) <= n_layers:
        frozen = {"embeddings", *(f"layer {i}" for i in range(int(argument)))}
    else:
        raise ValueError(f"unknown freezing strategy {strategy!r}; valid: 'none', 'backbone', 'all', 'embeddings', "
                         f"{[f'head:{task}' for task in tasks]}, 'bottom:<k>' with k in 0..{n_layers}")
    for name, parameters in groups.items():
        _set_trainable(parameters, name not in frozen)
    return model


def _no_decay(name: str, parameter: nn.Parameter) -> bool:
    """Biases and normalisation weights are not decayed (standard for transformers)."""
    return parameter.ndim < 2 or "norm" in name.lower()


def head_learning_rate(lr: float, head_lr: float | None) -> float:
    """The heads' learning rate: ``head_lr``, or the encoder's ``lr`` when it is None (one rule for the heads,
    the learned loss weights and the history's ``head_lr`` column)."""
    return lr if head_lr is None else head_lr


def component_learning_rates(model: nn.Module, lr: float, head_lr: float | None = None,
                             layer_decay: float | None = None) -> dict[str, float]:
    """Learning rate of each component: heads ``head_lr``; with ``layer_decay`` the top layer gets ``lr``,
    each layer below ``decay`` times the one above, embeddings the lowest (Howard & Ruder 2018; Clark et al. 2020).
    """
    names = list(components(model))
    layers = [name for name in names if name.startswith("layer ")]
    rates = {}
    for name in names:
        if name.startswith("head: "):
            rates[name] = head_learning_rate(lr, head_lr)
        elif layer_decay is None or name == "pooler":
            rates[name] = lr
        elif name == "embeddings":
            rates[name] = lr * layer_decay ** len(layers)
        else:
            rates[name] = lr * layer_decay ** (len(layers) - 1 - layers.index(name))
    return rates


def optimizer_groups(model: nn.Module, lr: float, head_lr: float | None = None, layer_decay: float | None = None,
                     weight_decay: float = 0.01, only: Iterable[str] | None = None) -> list[dict]:
    """AdamW parameter groups holding only trainable parameters (optionally of the ``only`` components).

    Raises a clear error when nothing is trainable, instead of failing later inside ``backward``.
    """
    rates = component_learning_rates(model, lr, head_lr, layer_decay)
    names_of = {id(p): n for n, p in model.named_parameters()}
    wanted = set(only) if only is not None else None
    groups = []
    for component, parameters in components(model).items():
        if wanted is not None and component not in wanted:
            continue
        trainable = [p for p in parameters if p.requires_grad]
        for no_decay in (False, True):
            chosen = [p for p in trainable if _no_decay(names_of[id(p)], p) == no_decay]
            if chosen:
                groups.append({"params": chosen, "lr": rates[component], "component": component,
                               "weight_decay": 0.0 if no_decay else weight_decay})
    if not groups and only is None:
        raise ValueError("no trainable parameters: the whole model is frozen (strategy 'all'); call "
                         "freeze(model, 'backbone') or freeze(model, 'none') before training")
    return groups


class GradualUnfreezing:
    """ULMFiT-style gradual unfreezing (Howard & Ruder 2018): train the heads first, then unfreeze one
    more encoder layer from the top at each stage, embeddings last, until the whole model trains.

    ``train(..., unfreezing=GradualUnfreezing(model))`` calls ``begin`` (freeze all but the heads) before it
    builds the optimizer, then ``unfreeze_next`` at each stage.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        bottom_up = [name for name in components(model) if not name.startswith("head: ")]
        self.stages = [[name] for name in reversed(bottom_up)]
        self.stages_done = 0

    def begin(self) -> None:
        """Freeze everything but the heads: the first stage."""
        freeze(self.model, "backbone")
        self.stages_done = 0

    @property
    def done(self) -> bool:
        return self.stages_done == len(self.stages)

    def unfreeze_next(self, optimizer: torch.optim.Optimizer, lr: float, layer_decay: float | None = None,
                      weight_decay: float = 0.01) -> list[str]:
        """Unfreeze the next component and add its parameters to ``optimizer``; return what was unfrozen."""
        if self.done:
            return []
        names = self.stages[self.stages_done]
        groups = components(self.model)
        for name in names:
            _set_trainable(groups[name], True)
        for group in optimizer_groups(self.model, lr, layer_decay=layer_decay, weight_decay=weight_decay, only=names):
            optimizer.add_param_group(group)
        self.stages_done += 1
        return names
