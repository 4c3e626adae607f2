"""Task 3: what to train. Freeze parts of a model, count what trains, build optimizer groups.

Components, bottom to top: ``embeddings``, ``layer 0`` … ``layer n-1``, any other backbone
parameters (``pooler``), then one ``head: <task>`` per task.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import torch
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel

_LAYER_PATHS = ("encoder.layer", "transformer.layer", "encoder.layers", "layers", "h")


def _backbone(model: nn.Module) -> nn.Module:
    """The transformer inside a MultiTaskSentenceTransformer, a SentenceTransformer, or a bare model."""
    if isinstance(model, PreTrainedModel):
        return model
    return getattr(model, "encoder", model).backbone


def _heads(model: nn.Module) -> dict[str, nn.Module]:
    return dict(model.heads.items()) if hasattr(model, "heads") else {}


def encoder_layers(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (BERT/RoBERTa ``encoder.layer``, DistilBERT ``transformer.layer``)."""
    for path in _LAYER_PATHS:
        module = backbone
        for attribute in path.split("."):
            module = getattr(module, attribute, None)
        if isinstance(module, nn.ModuleList):
            return module
    raise ValueError(f"cannot find the transformer layers of {type(backbone).__name__}; looked for {_LAYER_PATHS}")


def components(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Every parameter of ``model``, grouped by component, bottom to top; each parameter appears once."""
    backbone = _backbone(model)
    layers = encoder_layers(backbone)
    groups: dict[str, list[nn.Parameter]] = {"embeddings": []}
    groups.update({f"layer {i}": list(layer.parameters()) for i, layer in enumerate(layers)})
    placed = {id(p) for group in groups.values() for p in group}
    embeddings = getattr(backbone, "embeddings", None) or backbone.get_input_embeddings()
    groups["embeddings"] = [p for p in embeddings.parameters() if id(p) not in placed]
    placed |= {id(p) for p in groups["embeddings"]}
    other = [p for p in backbone.parameters() if id(p) not in placed]
    if other:
        groups["pooler"] = other
    for task, head in _heads(model).items():
        groups[f"head: {task}"] = list(head.parameters())
    return groups


def skeleton(config: PretrainedConfig, tasks: dict[str, list[str]]) -> nn.Module:
    """A backbone (with its pooler, as published) plus linear heads on the ``meta`` device: the exact
    parameter shapes of a model without allocating any memory, for counting (e.g. bert-base-uncased).
    """
    with torch.device("meta"):
        model = nn.Module()
        model.backbone = AutoModel.from_config(config)
        model.heads = nn.ModuleDict({task: nn.Linear(config.hidden_size, len(labels))
                                     for task, labels in tasks.items()})
    return model


def module_tree(module: nn.Module, max_depth: int = 2, name: str = "model", depth: int = 0) -> str:
    """The module hierarchy down to ``max_depth``, with parameter counts: a readable ``print(model)``."""
    count = sum(p.numel() for p in module.parameters())
    lines = [f"{'    ' * depth}{name}: {type(module).__name__} ({count:,} parameters)"]
    children = list(module.named_children())
    if depth < max_depth:
        for child_name, child in children:
            lines.append(module_tree(child, max_depth, child_name, depth + 1))
    elif children:
        lines[-1] += f" [{len(children)} submodules]"
    return "\n".join(lines)


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
    tasks = list(_heads(model))
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


def parameter_table(model: nn.Module) -> pd.DataFrame:
    """One row per component plus a total: parameters, trainable, frozen, % trainable."""
    rows = {}
    for name, parameters in components(model).items():
        total = sum(p.numel() for p in parameters)
        trainable = sum(p.numel() for p in parameters if p.requires_grad)
        rows[name] = {"parameters": total, "trainable": trainable, "frozen": total - trainable}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.loc["total"] = table.sum()
    table["% trainable"] = (100 * table["trainable"] / table["parameters"]).round(1)
    table.index.name = "component"
    return table


def _no_decay(name: str, parameter: nn.Parameter) -> bool:
    """Biases and normalisation weights are not decayed (standard for transformers)."""
    return parameter.ndim < 2 or "norm" in name.lower()


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
            rates[name] = head_lr if head_lr is not None else lr
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
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = freeze(model, "backbone")
        bottom_up = [name for name in components(model) if not name.startswith("head: ")]
        self.stages = [[name] for name in reversed(bottom_up)]
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
