"""The multi-task training loop, its losses and its metrics. Explained in notebook 04.

``train`` is the recipe; ``train_step`` is one optimisation step; ``BestCheckpoint`` keeps the best model
and decides early stopping; ``History`` turns steps and validations into the table ``train`` returns.
Under torchrun the same loop trains data-parallel; the few distributed steps live in helpers.distributed
and do nothing in a single process.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .data import IGNORE_INDEX
from .freezing import GradualUnfreezing, optimizer_groups
from .precision import PRECISIONS, autocast, autocast_dtype, grad_scaler
from .utils import inference_state, module_device, pick_device, set_seed, to_device
from .weighting import WEIGHTINGS, LossWeighting, make_weighting

METRICS = ("macro_f1", "accuracy")
HISTORY_COLUMNS = ["epoch", "step", "split", "task", "loss", "accuracy", "macro_f1", "lr", "weight"]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


_CHECKS = {  # field: (may be None, test, what is allowed)
    "epochs": (False, lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "lr": (False, lambda v: _is_finite(v) and v > 0, "a finite number > 0"),
    "head_lr": (True, lambda v: _is_finite(v) and v > 0, "a finite number > 0"),
    "weight_decay": (False, lambda v: _is_finite(v) and v >= 0, "a finite number >= 0"),
    "layer_decay": (True, lambda v: _is_finite(v) and 0 < v <= 1, "a number in (0, 1]"),
    "warmup_ratio": (False, lambda v: _is_finite(v) and 0 <= v < 1, "a number in [0, 1)"),
    "max_grad_norm": (True, lambda v: _is_finite(v) and v > 0, "a finite number > 0"),
    "seed": (False, _is_int, "an int"),
    "eval_every": (True, lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "log_every": (False, lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "early_stopping_patience": (True, lambda v: _is_int(v) and v >= 1, "an int >= 1"),
    "unfreeze_every": (True, lambda v: _is_int(v) and v >= 1, "an int >= 1"),
}


def _setting(default: Any, help: str) -> Any:
    """A field whose ``help`` explains it here and for its flag in ``python -m helpers.train --help``."""
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Everything that defines a training run; the defaults suit MiniLM on a CPU."""

    epochs: int = _setting(3, "passes over the training data")
    lr: float = _setting(5e-5, "encoder learning rate")
    head_lr: float | None = _setting(1e-3, "task-head learning rate: fresh heads learn faster than pretrained "
                                           "layers; None = lr")
    weight_decay: float = _setting(0.01, "AdamW weight decay (biases and norm weights are not decayed)")
    layer_decay: float | None = _setting(None, "layer-wise learning-rate decay, e.g. 0.8: each encoder layer "
                                               "learns this factor slower than the one above; None = off")
    warmup_ratio: float = _setting(0.1, "linear warm-up over this share of steps, then linear decay to 0")
    max_grad_norm: float | None = _setting(1.0, "clip the gradient norm to this; None = no clipping")
    loss_weighting: str = _setting("sum", "how task losses add up: sum | static | uncertainty "
                                          "(see helpers.weighting)")
    task_weights: dict[str, float] = field(default_factory=dict, metadata={
        "help": 'one weight per task for "static", e.g. {"topic": 0.7, "sentiment": 1.4}'})
    seed: int = _setting(42, "seeds dropout (and in python -m helpers.train the heads, the shuffling and the "
                             "90/10 split), so a run repeats")
    device: str = _setting("auto", "auto (cuda > mps > cpu), cpu, cuda, mps; under torchrun each process "
                                   "takes GPU LOCAL_RANK")
    precision: str = _setting("auto", "auto | fp32 | bf16 | fp16 (see helpers.precision)")
    eval_every: int | None = _setting(None, "also validate every n steps (always at each epoch's end)")
    log_every: int = _setting(10, "training rows in the history every n steps")
    metric: str = _setting("macro_f1", "validation metric (mean over tasks) for the best checkpoint and "
                                       "early stopping: macro_f1 | accuracy")
    early_stopping_patience: int | None = _setting(None, "validations without improvement before stopping; "
                                                         "None = never stop early")
    checkpoint_dir: str | Path | None = _setting(None, "best model saved here with model.save; None keeps it "
                                                       "in memory")
    restore_best: bool = _setting(True, "load the best validated weights back at the end")
    unfreeze_every: int | None = _setting(None, "with gradual unfreezing (train's unfreezing argument): steps "
                                                "per stage; None = one stage per epoch")
    show_progress_bar: bool = _setting(False, "a progress bar over each epoch's batches")

    def __post_init__(self) -> None:
        """Refuse settings that would train silently into NaN or climb the loss."""
        for name, (optional, ok, allowed) in _CHECKS.items():
            value = getattr(self, name)
            if not (optional and value is None) and not ok(value):
                raise ValueError(f"{name} must be {'None or ' if optional else ''}{allowed}, got {value!r}")
        for name, choices in (("loss_weighting", WEIGHTINGS), ("metric", METRICS), ("precision", PRECISIONS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {getattr(self, name)!r}")
        bad_weights = {task: w for task, w in dict(self.task_weights).items() if not (_is_finite(w) and w >= 0)}
        if bad_weights:
            raise ValueError(f"task_weights must be finite numbers >= 0, got {bad_weights}")


def labelled(logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]
             ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per task, (logits, targets) of the rows that carry that task's label; tasks with none are left out.

    The one place where ``IGNORE_INDEX`` is honoured. The rows are picked where the labels are (the CPU,
    straight from the collator), so a GPU never waits for the mask.
    """
    kept = {}
    for task, values in logits.items():
        rows = (labels[task] != IGNORE_INDEX).nonzero().squeeze(1)
        if len(rows):
            kept[task] = (values.index_select(0, rows.to(values.device)), labels[task][rows].to(values.device))
    return kept


def task_losses(logits: Mapping[str, torch.Tensor], labels: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-entropy per task over its labelled rows; a task with no label in the batch is left out
    (cross-entropy over no rows would be NaN)."""
    kept = labelled(logits, labels)
    return {task: F.cross_entropy(values.float(), target) for task, (values, target) in kept.items()}


def macro_f1(confusion: np.ndarray) -> float:
    """Unweighted mean of per-class F1 (classes absent from both truth and prediction count as 0)."""
    true_positive = np.diag(confusion).astype(float)
    predicted, actual = confusion.sum(axis=0), confusion.sum(axis=1)
    denominator = predicted + actual
    f1 = np.divide(2 * true_positive, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return float(f1.mean())


def evaluate(model: nn.Module, loader, device: str | torch.device | None = None, precision: str = "auto"
             ) -> dict[str, dict]:
    """Per task: loss, accuracy, macro-F1, confusion matrix (rows: true, columns: predicted), count.

    Only labelled rows count. Runs like ``encode`` (eval mode, no autograd, the model's mode and device
    restored afterwards, also on error) under the autocast training uses for ``precision``. Under torchrun
    every rank calls it on its own share of the rows; the counts are summed over ranks, so every rank gets
    the metrics of all the rows.
    """
    confusion = {task: np.zeros((len(labels), len(labels)), dtype=np.int64) for task, labels in model.tasks.items()}
    loss_sum = {task: torch.zeros(()) for task in model.tasks}
    with inference_state(model, device) as target:
        dtype = autocast_dtype(precision, target, training=True)
        for batch in loader:
            with autocast(target, dtype):
                logits = model(to_device(batch["input_ids"], target), to_device(batch["attention_mask"], target))
            for task, (values, labels) in labelled(logits, batch["labels"]).items():
                loss_sum[task] += F.cross_entropy(values.float(), labels, reduction="sum").cpu()
                pairs = torch.stack([labels, values.argmax(dim=-1)]).cpu().numpy()
                np.add.at(confusion[task], (pairs[0], pairs[1]), 1)
    confusion = {task: distributed.sum_over_ranks(torch.from_numpy(m)).numpy() for task, m in confusion.items()}
    loss_sum = {task: distributed.sum_over_ranks(value) for task, value in loss_sum.items()}
    results = {}
    for task, matrix in confusion.items():
        n = int(matrix.sum())
        results[task] = {"loss": loss_sum[task].item() / n if n else math.nan,
                         "accuracy": float(np.trace(matrix) / n) if n else math.nan,
                         "macro_f1": macro_f1(matrix) if n else math.nan, "confusion": matrix, "n": n}
    return results


@dataclass
class StepResult:
    """What one step measured, kept as tensors: reading them waits for the device, so it happens at logging."""

    losses: dict[str, torch.Tensor]  # per task, plus "total" (the weighted objective)
    correct: dict[str, torch.Tensor]  # labelled rows predicted right, per task
    labelled: dict[str, int]  # labelled rows, per task


def train_step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer, weighting: LossWeighting,
               dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None,
               max_grad_norm: float | None = None) -> StepResult | None:
    """One optimisation step; None when no row of the batch has a label (nothing to learn from).

    Only the forward pass runs under autocast (``dtype``); the loss is taken in float32, and the backward
    pass, clipping and the optimizer step update the float32 weights. Raises FloatingPointError when the
    loss or an updated weight is not finite. Under DDP (``model`` wrapped by ``distributed.wrap``) the ranks
    skip a step only together: a rank without labels still joins the others' gradient all-reduce.
    """
    device = module_device(model)
    with autocast(device, dtype):
        logits = model(to_device(batch["input_ids"], device), to_device(batch["attention_mask"], device))
    losses = task_losses(logits, batch["labels"])
    if not distributed.any_rank(bool(losses)):
        return None
    total = distributed.connect_outputs(weighting(losses), logits)
    if not torch.isfinite(total):  # before the update, so the weights stay as they were
        raise FloatingPointError(f"the loss became {total.item()}")
    scaler = scaler or grad_scaler(device, None)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    distributed.average_gradients(weighting.parameters())  # DDP averages the model's gradients, not these
    if max_grad_norm is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not fp16-scaled ones
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    scaler.step(optimizer)
    scaler.update()
    updated = [p for group in optimizer.param_groups for p in group["params"]]
    if not torch.isfinite(torch.stack(torch._foreach_norm(updated))).all():
        raise FloatingPointError("a weight became non-finite after the update")
    if not losses:
        return None
    kept = labelled({task: values.detach() for task, values in logits.items()}, batch["labels"])
    return StepResult(losses={**{t: loss.detach() for t, loss in losses.items()}, "total": total.detach()},
                      correct={t: (values.argmax(-1) == target).sum() for t, (values, target) in kept.items()},
                      labelled={t: len(target) for t, (_, target) in kept.items()})


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then linear decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def set_learning_rates(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Each group's rate = its own base rate x ``factor``.

    By hand rather than with ``LambdaLR``: gradual unfreezing adds parameter groups mid-run, and a
    scheduler only scales the groups that existed when it was built.
    """
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("base_lr", group["lr"]) * factor


def make_optimizer(model: nn.Module, weighting: LossWeighting, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters (see ``optimizer_groups``) and any learned loss weights."""
    groups = optimizer_groups(model, config.lr, config.head_lr, config.layer_decay, config.weight_decay)
    learned = list(weighting.parameters())
    if learned:
        groups.append({"params": learned, "lr": config.head_lr or config.lr, "weight_decay": 0.0,
                       "component": "loss weights"})
    return torch.optim.AdamW(groups)


class BestCheckpoint:
    """Keeps the best model seen by validation (in memory, or saved to ``directory``) and decides early
    stopping: stop after ``patience`` validations in a row without a better score.

    Under torchrun every rank gets the same scores (``evaluate`` sums over ranks), so all stop together;
    only rank 0 writes ``directory``, and at the end it passes the weights it reads back to the others.
    """

    def __init__(self, patience: int | None = None, directory: str | Path | None = None) -> None:
        self.patience, self.directory = patience, directory
        self.score, self.state, self.stale = -math.inf, None, 0

    def update(self, model: nn.Module, score: float) -> bool:
        """Record one validation score; return True when training should stop."""
        if score > self.score:
            self.score, self.stale = score, 0
            if self.directory is not None:
                distributed.save_on_main(model, self.directory)
            else:
                self.state = {name: value.detach().clone() for name, value in model.state_dict().items()}
        else:
            self.stale += 1
        return self.patience is not None and self.stale >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best weights back into ``model`` (nothing happens before the first validation)."""
        if self.score == -math.inf:
            return
        if self.directory is None:
            model.load_state_dict(self.state)
        else:
            if distributed.is_main():
                model.load_state_dict(type(model).load(self.directory).state_dict())
            distributed.copy_from_main(model)  # the other ranks may run on machines without that disk


class History:
    """The rows ``train`` returns: training losses averaged over each log window, and validation scores.

    Under torchrun the training rows come from each rank's own batches (rank 0's are the ones written);
    the validation rows cover every rank's share.
    """

    def __init__(self, weighting: LossWeighting, metric: str) -> None:
        self.weighting, self.metric = weighting, metric
        self.rows: list[dict] = []
        self.window: list[StepResult] = []
        self.first_loss: float | None = None
        self.steps_with_labels = 0

    def add(self, result: StepResult | None) -> None:
        if result is not None:
            self.window.append(result)
            self.steps_with_labels += 1

    def log_train(self, epoch: int, step: int, lr: float) -> None:
        """One row per task and one for the total, averaged over the steps since the last call."""
        if not self.window:
            return
        weights, task_loss_sum = self.weighting.weights(), 0.0
        for task in self.weighting.tasks:
            steps = [result for result in self.window if task in result.losses]
            if steps:
                loss = torch.stack([result.losses[task] for result in steps]).mean().item()
                correct = sum(result.correct[task] for result in steps).item()
                accuracy = correct / sum(result.labelled[task] for result in steps)
                self._row(epoch, step, "train", task, loss, accuracy=accuracy, lr=lr, weight=weights[task])
                task_loss_sum += loss
        total = torch.stack([result.losses["total"] for result in self.window]).mean().item()
        self._row(epoch, step, "train", "total", total, lr=lr)
        self._warn_if_diverging(step, lr, task_loss_sum)
        self.window = []

    def log_val(self, epoch: int, step: int, results: dict[str, dict]) -> float:
        """Rows for one validation; returns the score that picks the best checkpoint (mean ``metric``)."""
        weights = self.weighting.weights()
        scored = {task: r for task, r in results.items() if r["n"]}
        for task, r in results.items():
            self._row(epoch, step, "val", task, r["loss"], accuracy=r["accuracy"], macro_f1=r["macro_f1"],
                      weight=weights[task])
        with torch.no_grad():
            total = self.weighting({task: torch.tensor(r["loss"]) for task, r in scored.items()})
        self._row(epoch, step, "val", "total", float(total),
                  accuracy=float(np.mean([r["accuracy"] for r in scored.values()])),
                  macro_f1=float(np.mean([r["macro_f1"] for r in scored.values()])))
        return float(np.mean([r[self.metric] for r in scored.values()]))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)

    def _row(self, epoch: int, step: int, split: str, task: str, loss: float, **values: float | None) -> None:
        self.rows.append({"epoch": epoch, "step": step, "split": split, "task": task, "loss": loss, **values})

    def _warn_if_diverging(self, step: int, lr: float, task_loss: float) -> None:
        """Cross-entropy that grows by orders of magnitude means the learning rate is far too high."""
        if self.first_loss is None:
            self.first_loss = task_loss
        elif task_loss > 100 * max(self.first_loss, 0.1) and math.isfinite(self.first_loss):
            warnings.warn(f"the training loss grew from {self.first_loss:.3g} to {task_loss:.3g} by step {step}: "
                          f"the learning rate (now {lr:.3g}) is probably far too high", RuntimeWarning, stacklevel=3)
            self.first_loss = math.inf  # warn once


def train(model: nn.Module, train_loader, val_loader=None, config: TrainConfig | None = None,
          unfreezing: GradualUnfreezing | None = None) -> pd.DataFrame:
    """Train ``model`` (a MultiTaskSentenceTransformer) and return its history (see ``History``).

    The best validation checkpoint is kept and, with ``restore_best``, loaded back at the end.
    ``unfreezing`` unfreezes one more component per epoch (or every ``config.unfreeze_every`` steps).
    Under torchrun it trains data-parallel: give each rank its share (``distributed.make_loader``).
    """
    config = config or TrainConfig()
    if len(train_loader) == 0:
        raise ValueError("train_loader is empty: give it at least one batch of labelled sentences")
    set_seed(config.seed + distributed.rank())  # under torchrun, each rank draws its own dropout masks
    device = pick_device(config.device)
    model.to(device).train()
    parallel = distributed.wrap(model, gradual_unfreezing=unfreezing is not None)  # DDP under torchrun
    dtype = autocast_dtype(config.precision, device, training=True)
    scaler = grad_scaler(device, dtype)
    weighting = make_weighting(config.loss_weighting, list(model.tasks), config.task_weights).to(device)
    optimizer = make_optimizer(model, weighting, config)
    total_steps = config.epochs * len(train_loader)
    warmup = int(config.warmup_ratio * total_steps)
    history = History(weighting, config.metric)
    best = BestCheckpoint(config.early_stopping_patience, config.checkpoint_dir)
    step, stop = 0, False
    for epoch in range(1, config.epochs + 1):
        batches = tqdm(train_loader, desc=f"epoch {epoch}", disable=not config.show_progress_bar, leave=False)
        for index, batch in enumerate(batches, 1):
            if unfreezing is not None and _unfreezing_due(config, epoch, index, step):
                unfreezing.unfreeze_next(optimizer, config.lr, config.layer_decay, config.weight_decay)
            set_learning_rates(optimizer, lr_factor(step, total_steps, warmup))
            step += 1
            try:
                history.add(train_step(parallel, batch, optimizer, weighting, dtype, scaler, config.max_grad_norm))
            except FloatingPointError as error:
                raise FloatingPointError(f"{error} at epoch {epoch}, step {step}; lower the learning rate or "
                                         "check the batch for bad inputs") from None
            if step % config.log_every == 0 or step == total_steps:
                history.log_train(epoch, step, max(group["lr"] for group in optimizer.param_groups))
            end_of_epoch = index == len(train_loader)
            if val_loader is not None and (end_of_epoch or config.eval_every and step % config.eval_every == 0):
                results = evaluate(model, val_loader, precision=config.precision)
                stop = best.update(model, history.log_val(epoch, step, results))
            if stop:
                break
        if not distributed.any_rank(history.steps_with_labels > 0):
            raise ValueError("no batch of train_loader carried a label for any task: check the label columns")
        if stop:
            break
    if config.restore_best and val_loader is not None:
        best.restore(model)
    model.eval()
    frame = history.frame()
    frame.attrs.update({"config": dataclasses.asdict(config), "best_" + config.metric: best.score})
    return frame


def _unfreezing_due(config: TrainConfig, epoch: int, index: int, step: int) -> bool:
    """A new unfreezing stage starts each epoch after the first, or every ``unfreeze_every`` steps."""
    if config.unfreeze_every is None:
        return index == 1 and epoch > 1
    return step > 0 and step % config.unfreeze_every == 0


def copy_model(model: nn.Module) -> nn.Module:
    """An independent copy (same weights), to train several variants from one starting point."""
    return copy.deepcopy(model)
