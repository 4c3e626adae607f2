"""The multi-task training loop. Explained in notebook 04.

``train`` is the recipe; ``train_step`` is one optimisation step; ``BestCheckpoint`` keeps the best model
and decides early stopping; ``History`` turns steps and validations into the table ``train`` returns.
Under torchrun the same loop trains data-parallel; the few distributed steps live in helpers.distributed
and do nothing in a single process.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from . import distributed
from .checks import check_choice, is_bool, is_finite_number, is_int, is_positive_int
from .devices import module_device, pick_device, to_device
from .freezing import GradualUnfreezing, head_learning_rate, optimizer_groups
from .losses import label_counts, labelled, task_losses
from .memory import return_freed_memory
from .metrics import evaluate
from .precision import autocast, autocast_dtype, check_precision, grad_scaler
from .progress import progress_bar
from .seeding import set_seed
from .weighting import LossWeighting, check_weighting, make_weighting

METRICS = ("macro_f1", "accuracy")
HISTORY_COLUMNS = ["epoch", "step", "split", "task", "loss", "accuracy", "macro_f1", "lr", "head_lr", "weight"]
_CHECKS = {  # field: (may be None, test, what is allowed)
    "epochs": (False, is_positive_int, "an int >= 1"),
    "lr": (False, lambda v: is_finite_number(v) and v > 0, "a finite number > 0"),
    "head_lr": (True, lambda v: is_finite_number(v) and v > 0, "a finite number > 0"),
    "weight_decay": (False, lambda v: is_finite_number(v) and v >= 0, "a finite number >= 0"),
    "layer_decay": (True, lambda v: is_finite_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "warmup_ratio": (False, lambda v: is_finite_number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "max_grad_norm": (True, lambda v: is_finite_number(v) and v > 0, "a finite number > 0"),
    "seed": (False, is_int, "an int"),
    "eval_every": (True, is_positive_int, "an int >= 1"),
    "log_every": (False, is_positive_int, "an int >= 1"),
    "early_stopping_patience": (True, is_positive_int, "an int >= 1"),
    "unfreeze_every": (True, is_positive_int, "an int >= 1"),
    "restore_best": (False, is_bool, "True or False"),
    "show_progress_bar": (False, is_bool, "True or False"),
}


def _setting(default: Any, help: str) -> Any:
    """A field whose ``help`` explains it here and for its flag in ``python -m helpers train --help``."""
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
    seed: int = _setting(42, "seeds dropout (and in python -m helpers train the heads, the shuffling and the "
                             "90/10 split), so a run repeats")
    device: str = _setting("auto", "auto (cuda > mps > cpu), cpu, cuda, mps; under torchrun each process "
                                   "takes GPU LOCAL_RANK")
    precision: str = _setting("auto", "auto | fp32 | bf16 | fp16 (see helpers.precision)")
    eval_every: int | None = _setting(None, "also validate every n steps and before the first (always at each "
                                            "epoch's end)")
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
        check_weighting(self.loss_weighting)
        check_choice("metric", self.metric, METRICS)
        check_precision(self.precision)
        bad_weights = {task: w for task, w in dict(self.task_weights).items() if not (is_finite_number(w) and w >= 0)}
        if bad_weights:
            raise ValueError(f"task_weights must be finite numbers >= 0, got {bad_weights}")


@dataclass
class StepResult:
    """What one step measured on this rank, kept as tensors on the device; ``History`` reads them when it logs."""

    loss_sums: dict[str, torch.Tensor]  # per task with a label in the step: summed cross-entropy of this rank's rows
    correct: dict[str, torch.Tensor]  # per task: this rank's labelled rows predicted right
    labelled: dict[str, int]  # per task: this rank's labelled rows


def training_dtype(config: TrainConfig) -> torch.dtype | None:
    """The autocast dtype of ``config``'s training steps on its device (None: float32), by the training rule of
    ``helpers.precision``: what ``train`` uses and what the command checks before loading and puts on the card."""
    return autocast_dtype(config.precision, pick_device(config.device), training=True)


def gradient_norm(parameters) -> torch.Tensor:
    """The L2 norm of all gradients together (what clipping measures), as a tensor: no device wait."""
    norms = [torch.linalg.vector_norm(p.grad.detach().float()) for p in parameters if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def train_step(model: nn.Module, batch: dict, optimizer: torch.optim.Optimizer, weighting: LossWeighting,
               dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None,
               max_grad_norm: float | None = None) -> StepResult | None:
    """One optimisation step; None when no row of the batch (on any rank) has a label.

    Only the forward pass runs under autocast (``dtype``); the loss is taken in float32, and the backward
    pass, clipping and the optimizer step update the float32 weights. Each task's loss is divided by the
    number of its labelled rows in the whole step, over every rank (one all-reduce of the counts), so a
    data-parallel step equals the one-process step on the union of the ranks' batches. A task with no label in
    the whole step leaves its head without a gradient, as in one process, so AdamW leaves it alone (under DDP
    it would get zeros, which AdamW decays and moves with its momentum). One device wait per step: the loss
    and the gradient norm are checked together before the update, and FloatingPointError is raised when either
    is not finite, with the weights as they were; under torchrun on every rank when it is so on any.
    """
    counts = distributed.total_counts(label_counts(batch["labels"]))
    if not any(counts.values()):
        return None  # on every rank alike: the counts are global
    device = module_device(model)
    with autocast(device, dtype):
        logits = model(to_device(batch["input_ids"], device), to_device(batch["attention_mask"], device))
    losses = task_losses(logits, batch["labels"], counts, scale=distributed.world_size())
    total = distributed.connect_outputs(weighting(losses), logits)
    scaler = scaler or grad_scaler(device, None)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    distributed.clear_idle_head_gradients(model, counts)
    distributed.average_gradients(weighting.parameters())  # DDP averages the model's gradients, not these
    if max_grad_norm is not None:
        scaler.unscale_(optimizer)  # clip the true gradients, not fp16-scaled ones
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    else:
        norm = gradient_norm(model.parameters())
    # The step's one device wait. With fp16 the scaler skips steps with inf gradients by design: loss only. Under
    # torchrun the ranks agree (one reduction): a rank that raised alone would leave the others in a collective.
    finite = torch.isfinite(total.detach() if scaler.is_enabled() else total.detach() + norm)
    failing = int(distributed.sum_over_ranks((~finite).reshape(1).int()).item())
    if failing:
        ranks = f" on {failing} of {distributed.world_size()} processes (numbers of this one)"
        raise FloatingPointError(f"the loss ({total.item():.4g}) or the gradient norm ({norm.item():.4g}) is not "
                                 f"finite{ranks if distributed.is_distributed() else ''}; the weights were not updated")
    scaler.step(optimizer)
    scaler.update()
    kept = labelled({task: values.detach() for task, values in logits.items()}, batch["labels"])
    share = distributed.world_size()
    return StepResult(loss_sums={t: loss.detach() * counts[t] / share for t, loss in losses.items()},
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
        groups.append({"params": learned, "lr": head_learning_rate(config.lr, config.head_lr), "weight_decay": 0.0,
                       "component": "loss weights"})
    return torch.optim.AdamW(groups)


class BestCheckpoint:
    """Keeps the best model seen by validation (in memory, or saved to ``directory``) and decides early
    stopping: stop after ``patience`` validations in a row without a better score.

    Under torchrun every rank gets the same scores (``evaluate`` sums over ranks), so all stop together;
    only rank 0 writes ``directory``, and at the end it passes the weights it reads back to the others.
    """

    def __init__(self, patience: int | None = None, directory: str | Path | None = None,
                 changing: set[str] | None = None) -> None:
        """``changing``: the state-dict entries that training can change (the trainable parameters, when nothing
        unfreezes during the run); only those are copied in memory, the frozen rest is never duplicated. None:
        every entry."""
        self.patience, self.directory, self.changing = patience, directory, changing
        self.score, self.state, self.stale = -math.inf, None, 0

    def update(self, model: nn.Module, score: float) -> bool:
        """Record one validation score; return True when training should stop."""
        if score > self.score:
            self.score, self.stale = score, 0
            if self.directory is not None:
                distributed.save_on_main(model, self.directory)
            else:
                self.state = {name: value.detach().clone() for name, value in model.state_dict().items()
                              if self.changing is None or name in self.changing}
        else:
            self.stale += 1
        return self.patience is not None and self.stale >= self.patience

    def restore(self, model: nn.Module) -> None:
        """Load the best weights back into ``model`` (nothing happens before the first validation)."""
        if self.score == -math.inf:
            return
        if self.directory is None:
            _load_changed(model, self.state)
        else:
            if distributed.is_main():
                _load_changed(model, type(model).load(self.directory).state_dict())
            distributed.copy_from_main(model)  # the other ranks may run on machines without that disk


def _load_changed(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """``model.load_state_dict(state, strict=False)`` for the entries ``state`` holds, writing only the tensors
    that differ: frozen weights are left untouched, so a cache of the frozen bottom (``helpers.caching``) stays
    valid."""
    current = model.state_dict()
    if not state.keys() <= current.keys():
        model.load_state_dict(state)  # raises, naming the unexpected keys
    with torch.no_grad():
        for name, tensor in state.items():
            if not torch.equal(current[name], tensor.to(current[name].device)):
                current[name].copy_(tensor)


class History:
    """The rows ``train`` returns: the training loss and accuracy of each log window, and validation scores.
    ``lr`` is the encoder's learning rate (its top layer's, with layer decay), ``head_lr`` the heads'.

    One rule for every task row, training and validation alike: loss and accuracy are means over the labelled
    rows they cover (a step with more of a task's labels weighs more). The ``total`` row is the loss weighting
    applied to those task losses (at the weights of the moment), so the training and validation totals measure
    the same quantity. Under torchrun every row covers all ranks, as in one process.
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

    def log_train(self, epoch: int, step: int, lr: float, head_lr: float) -> None:
        """One row per task and one for the total, over the steps since the last call."""
        if not self.window:
            return
        tasks = [task for task in self.weighting.tasks if any(task in r.loss_sums for r in self.window)]
        loss_sums = [torch.stack([r.loss_sums[t] for r in self.window if t in r.loss_sums]).sum().item() for t in tasks]
        correct = [sum(r.correct[task].item() for r in self.window if task in r.correct) for task in tasks]
        counts = [sum(r.labelled.get(task, 0) for r in self.window) for task in tasks]
        # One reduction for the whole window (the task list is the same on every rank: it follows global counts).
        summed = distributed.sum_over_ranks(torch.tensor(loss_sums + correct + counts, dtype=torch.float64)).tolist()
        n = len(tasks)
        losses = {task: total / count for task, total, count in zip(tasks, summed[:n], summed[2 * n:])}
        weights, rates = self.weighting.weights(), {"lr": lr, "head_lr": head_lr}
        for task, right, count in zip(tasks, summed[n:2 * n], summed[2 * n:]):
            self._row(epoch, step, "train", task, losses[task], accuracy=right / count, weight=weights[task], **rates)
        self._row(epoch, step, "train", "total", self._total(losses), **rates)
        self._warn_if_diverging(step, max(rates.values()), sum(losses.values()))
        self.window = []

    def log_val(self, epoch: int, step: int, results: dict[str, dict]) -> float:
        """Rows for one validation; returns the score that picks the best checkpoint (mean ``metric``)."""
        scored = {task: r for task, r in results.items() if r["n"]}
        if not scored:
            raise ValueError("the validation loader holds no label of any task, so there is nothing to score: give "
                             "it rows that carry labels, or pass val_loader=None")
        weights = self.weighting.weights()
        for task, r in results.items():
            self._row(epoch, step, "val", task, r["loss"], accuracy=r["accuracy"], macro_f1=r["macro_f1"],
                      weight=weights[task])
        self._row(epoch, step, "val", "total", self._total({task: r["loss"] for task, r in scored.items()}),
                  accuracy=float(np.mean([r["accuracy"] for r in scored.values()])),
                  macro_f1=float(np.mean([r["macro_f1"] for r in scored.values()])))
        return float(np.mean([r[self.metric] for r in scored.values()]))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=HISTORY_COLUMNS)

    def _total(self, losses: dict[str, float]) -> float:
        with torch.no_grad():
            return float(self.weighting({task: torch.tensor(loss) for task, loss in losses.items()}))

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


def _check_run(train_loader, config: TrainConfig, unfreezing: GradualUnfreezing | None) -> None:
    if len(train_loader) == 0:
        raise ValueError("train_loader is empty: give it at least one batch of labelled sentences")
    if config.unfreeze_every is not None and unfreezing is None:
        raise ValueError("unfreeze_every is set but no gradual unfreezing was asked for: pass "
                         "unfreezing=GradualUnfreezing(model), or leave unfreeze_every at None")


def train(model: nn.Module, train_loader, val_loader=None, config: TrainConfig | None = None,
          unfreezing: GradualUnfreezing | None = None, description: str = "training") -> pd.DataFrame:
    """Train ``model`` (a MultiTaskSentenceTransformer) and return its history (see ``History``).

    The best validation checkpoint is kept and, with ``restore_best``, loaded back at the end; with ``eval_every``
    the validation before the first step competes too, so a run that only made the model worse ends where it
    started.
    ``unfreezing`` freezes the backbone, then unfreezes one more component per epoch (or every
    ``config.unfreeze_every`` steps). Under torchrun it trains data-parallel: give each rank its share
    (``distributed.make_loader``). With ``config.show_progress_bar``, one bar named ``description`` counts the
    steps of the whole run.
    """
    config = config or TrainConfig()
    _check_run(train_loader, config, unfreezing)
    if unfreezing is not None:
        unfreezing.begin()
    set_seed(config.seed + distributed.rank())  # under torchrun, each rank draws its own dropout masks
    device = pick_device(config.device)
    model.to(device).train()
    return_freed_memory()  # what earlier work freed goes back before this run's own peak, not on top of it
    parallel = distributed.wrap(model, gradual_unfreezing=unfreezing is not None)  # DDP under torchrun
    dtype = training_dtype(config)
    scaler = grad_scaler(device, dtype)
    weighting = make_weighting(config.loss_weighting, list(model.tasks), config.task_weights).to(device)
    optimizer = make_optimizer(model, weighting, config)
    total_steps = config.epochs * len(train_loader)
    warmup = int(config.warmup_ratio * total_steps)
    head_lr = head_learning_rate(config.lr, config.head_lr)
    # Without unfreezing, what trains is fixed for the run: the best checkpoint need copy only that
    changing = None if unfreezing is not None else {name for name, p in model.named_parameters() if p.requires_grad}
    history = History(weighting, config.metric)
    best = BestCheckpoint(config.early_stopping_patience, config.checkpoint_dir, changing)
    step, stop = 0, False
    if val_loader is not None and config.eval_every is not None:  # the curves' starting point: step 0
        best.update(model, history.log_val(0, 0, evaluate(model, val_loader, precision=config.precision)))
    progress = progress_bar(total=total_steps, desc=description, unit="step", disable=not config.show_progress_bar)
    for epoch in range(1, config.epochs + 1):
        progress.set_postfix_str(f"epoch {epoch}/{config.epochs}")
        for index, batch in enumerate(train_loader, 1):
            if unfreezing is not None and _unfreezing_due(config, epoch, index, step):
                unfreezing.unfreeze_next(optimizer, config.lr, config.layer_decay, config.weight_decay)
            factor = lr_factor(step, total_steps, warmup)
            set_learning_rates(optimizer, factor)
            step += 1
            progress.update()
            try:
                history.add(train_step(parallel, batch, optimizer, weighting, dtype, scaler, config.max_grad_norm))
                return_freed_memory()  # steps of many batch shapes scatter freed memory: hand it back each time
            except FloatingPointError as error:
                raise FloatingPointError(f"{error} at epoch {epoch}, step {step}; lower the learning rate or "
                                         "check the batch for bad inputs") from None
            if val_loader is not None and _validation_due(config, index, len(train_loader), step):
                results = evaluate(model, val_loader, precision=config.precision)
                stop = best.update(model, history.log_val(epoch, step, results))
            if step % config.log_every == 0 or step == total_steps or stop:  # stopping early ends a window too
                history.log_train(epoch, step, config.lr * factor, head_lr * factor)
            if stop:
                break
        if history.steps_with_labels == 0:  # the same on every rank: steps are skipped on global counts
            raise ValueError("no batch of train_loader carried a label for any task: check the label columns")
        if stop:
            break
    progress.close()
    optimizer.zero_grad(set_to_none=True)  # the last step's gradients serve nothing now: release their memory
    if config.restore_best and val_loader is not None:
        best.restore(model)
    model.eval()
    return_freed_memory()
    return history.frame()


def _validation_due(config: TrainConfig, index: int, batches: int, step: int) -> bool:
    """Validation runs at each epoch's end (batch ``index`` of ``batches``), and every ``eval_every`` steps."""
    return index == batches or config.eval_every is not None and step % config.eval_every == 0


def _unfreezing_due(config: TrainConfig, epoch: int, index: int, step: int) -> bool:
    """A new unfreezing stage starts each epoch after the first, or every ``unfreeze_every`` steps."""
    if config.unfreeze_every is None:
        return index == 1 and epoch > 1
    return step > 0 and step % config.unfreeze_every == 0
