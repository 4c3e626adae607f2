"""Task 4: the multi-task training loop, its losses and its metrics."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import IGNORE_INDEX
from .freezing import GradualUnfreezing, optimizer_groups
from .utils import autocast_dtype, pick_device, set_seed, to_device

LOSS_WEIGHTINGS = ("sum", "static", "uncertainty")
METRICS = ("macro_f1", "accuracy")


@dataclass
class TrainConfig:
    """Everything that defines a training run; the defaults suit MiniLM on a CPU."""

    epochs: int = 3
    lr: float = 5e-5  # encoder learning rate
    head_lr: float | None = 1e-3  # fresh heads learn faster than pretrained layers; None = lr
    weight_decay: float = 0.01
    layer_decay: float | None = None  # layer-wise learning-rate decay, e.g. 0.8
    warmup_ratio: float = 0.1  # linear warm-up over this share of steps, then linear decay to 0
    max_grad_norm: float | None = 1.0
    loss_weighting: str = "sum"  # "sum" | "static" | "uncertainty" (Kendall et al., 2018)
    task_weights: dict[str, float] = field(default_factory=dict)  # for "static"
    seed: int = 42
    device: str = "auto"  # cuda > mps > cpu
    bf16: bool = True  # bf16 autocast where the device supports it (CUDA); ignored on CPU
    eval_every: int | None = None  # also validate every n steps (always at each epoch's end)
    log_every: int = 10  # training rows in the history every n steps
    metric: str = "macro_f1"  # validation metric (mean over tasks) for best checkpoint and early stopping
    early_stopping_patience: int | None = None  # validations without improvement before stopping
    checkpoint_dir: str | Path | None = None  # best model saved here with model.save; None keeps it in memory
    restore_best: bool = True
    unfreeze_every: int | None = None  # with gradual unfreezing: steps per stage (None: one stage per epoch)
    show_progress_bar: bool = False

    def __post_init__(self) -> None:
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {list(LOSS_WEIGHTINGS)}, got {self.loss_weighting!r}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)}, got {self.metric!r}")
        if self.epochs < 1 or self.lr <= 0:
            raise ValueError(f"epochs must be >= 1 and lr > 0, got epochs={self.epochs}, lr={self.lr}")


class UncertaintyWeighting(nn.Module):
    """Learned task weights from homoscedastic uncertainty (Kendall, Gal & Cipolla, 2018).

    total = sum_t exp(-s_t) * L_t + s_t / 2, with s_t = log(sigma_t^2) learned: a task whose loss stays
    high gets a larger sigma and so a smaller weight, and the s_t / 2 term stops sigma from growing forever.
    """

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.log_vars = nn.ParameterDict({task: nn.Parameter(torch.zeros(())) for task in tasks})

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return sum(torch.exp(-self.log_vars[t]) * loss + self.log_vars[t] / 2 for t, loss in losses.items())

    def weights(self) -> dict[str, float]:
        return {task: float(torch.exp(-s.detach())) for task, s in self.log_vars.items()}


def task_losses(logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-entropy per task over the labelled rows only; a task with no label in the batch is left out
    (CrossEntropyLoss would return NaN for it)."""
    losses = {}
    for task, values in logits.items():
        target = labels[task].to(values.device)
        if (target != IGNORE_INDEX).any():
            losses[task] = F.cross_entropy(values.float(), target, ignore_index=IGNORE_INDEX)
    return losses


def combine_losses(losses: Mapping[str, torch.Tensor], config: TrainConfig,
                   uncertainty: UncertaintyWeighting | None = None) -> torch.Tensor | None:
    """One scalar to minimise, or None when no task had a label in the batch."""
    if not losses:
        return None
    if config.loss_weighting == "uncertainty":
        return uncertainty(losses)
    weights = config.task_weights if config.loss_weighting == "static" else {}
    return sum(weights.get(task, 1.0) * loss for task, loss in losses.items())


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean of per-class F1 (classes absent from both truth and prediction count as 0)."""
    true_positive = np.diag(confusion).astype(float)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    denominator = predicted + actual
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return float(f1.mean())


@torch.no_grad()
def evaluate(model: nn.Module, loader, device: torch.device | None = None) -> dict[str, dict]:
    """Per task: loss, accuracy, macro-F1, confusion matrix (rows: true, columns: predicted), count.

    Only labelled rows count. The model's train/eval mode is restored afterwards.
    """
    device = device or model.device
    was_training = model.training
    model.eval()
    n_labels = {task: len(labels) for task, labels in model.tasks.items()}
    confusion = {task: np.zeros((n, n), dtype=np.int64) for task, n in n_labels.items()}
    loss_sum = dict.fromkeys(n_labels, 0.0)
    for batch in loader:
        logits = model(to_device(batch["input_ids"], device), to_device(batch["attention_mask"], device))
        for task, values in logits.items():
            target = batch["labels"][task].to(device)
            keep = target != IGNORE_INDEX
            if keep.any():
                loss_sum[task] += F.cross_entropy(values[keep].float(), target[keep], reduction="sum").item()
                pairs = torch.stack([target[keep], values[keep].argmax(dim=-1)]).cpu().numpy()
                np.add.at(confusion[task], (pairs[0], pairs[1]), 1)
    model.train(was_training)
    results = {}
    for task, matrix in confusion.items():
        n = int(matrix.sum())
        results[task] = {"loss": loss_sum[task] / n if n else math.nan,
                         "accuracy": float(np.trace(matrix) / n) if n else math.nan,
                         "macro_f1": macro_f1(matrix) if n else math.nan, "confusion": matrix, "n": n}
    return results


def _schedule(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1, then linear decay to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train(model: nn.Module, train_loader, val_loader=None, config: TrainConfig | None = None,
          unfreezing: GradualUnfreezing | None = None) -> pd.DataFrame:
    """Train ``model`` (a MultiTaskSentenceTransformer) and return its history.

    History rows: epoch, step, split (train/val), task (each task and "total"), loss, accuracy, macro_f1,
    lr (the largest in any parameter group), weight (task weight). The best validation checkpoint is kept and, with
    ``restore_best``, loaded back at the end. ``unfreezing`` unfreezes one more component per epoch
    (or every ``config.unfreeze_every`` steps).
    """
    config = config or TrainConfig()
    set_seed(config.seed)
    device = pick_device(config.device)
    model.to(device).train()
    precision = autocast_dtype(device, config.bf16)
    tasks = list(model.tasks)
    if config.loss_weighting == "static" and set(config.task_weights) != set(tasks):
        raise ValueError(f"static weighting needs a weight for each task {tasks}, got {config.task_weights}")
    uncertainty = UncertaintyWeighting(tasks).to(device) if config.loss_weighting == "uncertainty" else None

    groups = optimizer_groups(model, config.lr, config.head_lr, config.layer_decay, config.weight_decay)
    if uncertainty is not None:
        groups.append({"params": list(uncertainty.parameters()), "lr": config.head_lr or config.lr,
                       "weight_decay": 0.0, "component": "loss weights"})
    optimizer = torch.optim.AdamW(groups)
    total_steps = config.epochs * len(train_loader)
    warmup = int(config.warmup_ratio * total_steps)

    rows: list[dict] = []
    best_score, best_state, evaluations_without_gain = -math.inf, None, 0
    window: dict[str, list[float]] = {}
    step = 0

    def weights_now() -> dict[str, float]:
        if uncertainty is not None:
            return uncertainty.weights()
        return {t: config.task_weights.get(t, 1.0) if config.loss_weighting == "static" else 1.0 for t in tasks}

    def validate(epoch: int) -> bool:
        """Log validation rows; keep the best model; return True when early stopping says stop."""
        nonlocal best_score, best_state, evaluations_without_gain
        results = evaluate(model, val_loader, device)
        weights = weights_now()
        for task, r in results.items():
            rows.append({"epoch": epoch, "step": step, "split": "val", "task": task, "loss": r["loss"],
                         "accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "weight": weights[task]})
        rows.append({"epoch": epoch, "step": step, "split": "val", "task": "total",
                     "loss": sum(weights[t] * r["loss"] for t, r in results.items()),
                     "accuracy": np.mean([r["accuracy"] for r in results.values()]),
                     "macro_f1": np.mean([r["macro_f1"] for r in results.values()])})
        score = float(np.mean([r[config.metric] for r in results.values()]))
        if score > best_score:
            best_score, evaluations_without_gain = score, 0
            if config.checkpoint_dir is not None:
                model.save(config.checkpoint_dir)
            else:
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            evaluations_without_gain += 1
        patience = config.early_stopping_patience
        return patience is not None and evaluations_without_gain >= patience

    stop, last_validated = False, -1
    for epoch in range(1, config.epochs + 1):
        if unfreezing is not None and config.unfreeze_every is None and epoch > 1:
            unfreezing.unfreeze_next(optimizer, config.lr, config.layer_decay, config.weight_decay)
        for batch in tqdm(train_loader, desc=f"epoch {epoch}", disable=not config.show_progress_bar, leave=False):
            if unfreezing is not None and config.unfreeze_every and step and step % config.unfreeze_every == 0:
                unfreezing.unfreeze_next(optimizer, config.lr, config.layer_decay, config.weight_decay)
            factor = _schedule(step, total_steps, warmup)
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault("base_lr", group["lr"]) * factor
            with torch.autocast(device.type, dtype=precision, enabled=precision is not None):
                logits = model(to_device(batch["input_ids"], device), to_device(batch["attention_mask"], device))
            losses = task_losses(logits, batch["labels"])
            loss = combine_losses(losses, config, uncertainty)
            step += 1
            if loss is None:  # no task had a label in this batch: nothing to learn from
                continue
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at epoch {epoch}, step {step}; lower the "
                                         "learning rate or check the batch for bad inputs")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            for task, value in losses.items():
                target = batch["labels"][task].to(device)
                keep = target != IGNORE_INDEX
                window.setdefault(task, []).append(value.item())
                window.setdefault(f"{task}/correct", []).append(
                    (logits[task][keep].argmax(-1) == target[keep]).float().mean().item())
            window.setdefault("total", []).append(loss.item())
            if step % config.log_every == 0 or step == total_steps:
                lr_now = max(g["lr"] for g in optimizer.param_groups)
                weights = weights_now()
                for task in [*tasks, "total"]:
                    if window.get(task):
                        rows.append({"epoch": epoch, "step": step, "split": "train", "task": task,
                                     "loss": float(np.mean(window[task])), "lr": lr_now,
                                     "accuracy": float(np.mean(window[f"{task}/correct"])) if task != "total" else None,
                                     "weight": weights.get(task)})
                window = {}
            if val_loader is not None and config.eval_every and step % config.eval_every == 0:
                stop, last_validated = validate(epoch), step
                if stop:
                    break
        if stop:
            break
        if val_loader is not None and last_validated != step:  # always validate at the end of an epoch
            stop, last_validated = validate(epoch), step
            if stop:
                break

    if config.restore_best and val_loader is not None:
        if config.checkpoint_dir is not None:
            model.load_state_dict(type(model).load(config.checkpoint_dir).state_dict())
        elif best_state is not None:
            model.load_state_dict(best_state)
    model.eval()
    history = pd.DataFrame(rows, columns=["epoch", "step", "split", "task", "loss", "accuracy", "macro_f1", "lr",
                                          "weight"])
    history.attrs["config"] = dataclasses.asdict(config)
    history.attrs["best_" + config.metric] = best_score
    return history


def copy_model(model: nn.Module) -> nn.Module:
    """An independent copy (same weights), to train several variants from one starting point."""
    return copy.deepcopy(model)
