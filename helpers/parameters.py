"""Where a model's parameters are: its components, counted, and exact shapes without weights.

Components, bottom to top: ``embeddings``, ``layer 0`` … ``layer n-1``, any other backbone
parameters (``pooler``), then one ``head: <task>`` per task. Freezing works on the same components.
Explained in notebook 02; notebook 03 counts what each freezing strategy trains.
"""

from __future__ import annotations

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


def transformer_layers(backbone: nn.Module) -> nn.ModuleList:
    """The stack of transformer blocks (BERT/RoBERTa ``encoder.layer``, DistilBERT ``transformer.layer``)."""
    owner, attribute = layer_stack_owner(backbone)
    return getattr(owner, attribute)


def layer_stack_owner(backbone: nn.Module) -> tuple[nn.Module, str]:
    """The module holding the stack of transformer blocks, and the attribute it holds it in."""
    for path in _LAYER_PATHS:
        *parents, attribute = path.split(".")
        owner = backbone
        for name in parents:
            owner = getattr(owner, name, None)
        if isinstance(getattr(owner, attribute, None), nn.ModuleList):
            return owner, attribute
    raise ValueError(f"cannot find the transformer layers of {type(backbone).__name__}; looked for {_LAYER_PATHS}")


def components(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Every parameter of ``model``, grouped by component, bottom to top; each parameter appears once."""
    backbone = _backbone(model)
    layers = transformer_layers(backbone)
    groups: dict[str, list[nn.Parameter]] = {"embeddings": []}
    groups.update({f"layer {i}": list(layer.parameters()) for i, layer in enumerate(layers)})
    placed = {id(p) for group in groups.values() for p in group}
    embeddings = getattr(backbone, "embeddings", None) or backbone.get_input_embeddings()
    groups["embeddings"] = [p for p in embeddings.parameters() if id(p) not in placed]
    placed |= {id(p) for p in groups["embeddings"]}
    other = [p for p in backbone.parameters() if id(p) not in placed]
    if other:
        groups["pooler"] = other
    heads = model.heads.items() if hasattr(model, "heads") else ()
    for task, head in heads:
        groups[f"head: {task}"] = list(head.parameters())
    return groups


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
