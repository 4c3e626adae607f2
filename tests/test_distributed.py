"""Data-parallel training on CPU processes (gloo): the same steps as one process, in sync, failing together."""

import dataclasses
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torch.optim.optimizer import register_optimizer_step_pre_hook

from helpers import (
    IGNORE_INDEX,
    TASKS,
    MultiTaskSentenceTransformer,
    SentenceDataset,
    distributed,
    make_loader,
    set_seed,
    training,
)
from helpers.data import LengthGroupedBatches
from helpers.training import HISTORY_COLUMNS, TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
TOPICS, SENTIMENTS = TASKS["topic"], TASKS["sentiment"]
WORDS = "the team bank chip treaty market storm vote goal phone rate".split()


def labelled_rows(n: int) -> pd.DataFrame:
    """``n`` distinct short texts of varied length, each with both labels."""
    return pd.DataFrame({"text": [" ".join(WORDS[(i * k) % len(WORDS)] for k in range(1, 3 + i % 9)) + f" {i}"
                                  for i in range(n)],
                         "topic": [TOPICS[i % 4] for i in range(n)],
                         "sentiment": [SENTIMENTS[i % 3 == 0] for i in range(n)]})


FULL = labelled_rows(32)
THREE_STEPS = labelled_rows(96)
# Partial labels: topic on 1 row in 3, sentiment on 1 in 4, many rows with none.
PARTIAL = FULL.head(24).assign(topic=[t if i % 3 == 0 else pd.NA for i, t in enumerate(FULL["topic"].head(24))],
                               sentiment=[s if i % 4 == 1 else pd.NA for i, s in enumerate(FULL["sentiment"].head(24))])
# Label patterns for one step of 2 processes x 16 rows; without shuffling, rank 0 takes the even rows, rank 1 the
# odd ones. Each pattern gives the ranks different numbers of a task's labels.
LABEL_PATTERNS = {
    "topic 1 in 3, sentiment 1 in 4": FULL.assign(topic=FULL["topic"].where(FULL.index % 3 == 0),
                                                  sentiment=FULL["sentiment"].where(FULL.index % 4 == 1)),
    "no topic label on rank 1": FULL.assign(topic=FULL["topic"].where(FULL.index % 2 == 0),
                                            sentiment=FULL["sentiment"].where(FULL.index % 3 != 0)),
    "no label at all on rank 1": FULL.assign(topic=FULL["topic"].where(FULL.index % 2 == 0),
                                             sentiment=FULL["sentiment"].where(FULL.index % 4 == 0)),
    # Three steps; the last has no topic label on any rank: in one process AdamW leaves the topic head alone.
    "no topic label in the last of three steps": THREE_STEPS.assign(
        topic=THREE_STEPS["topic"].where((THREE_STEPS.index % 3 == 0) & (THREE_STEPS.index < 64))),
}
WEIGHTINGS = {"sum": {}, "static": {"task_weights": {"topic": 0.7, "sentiment": 1.6}}, "uncertainty": {}}
ONE_STEP = TrainConfig(epochs=1, lr=1e-4, head_lr=1e-3, warmup_ratio=0.0, device="cpu", precision="fp32",
                       loss_weighting="uncertainty", max_grad_norm=1.0, log_every=1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def join_group(rank: int, port: int) -> None:
    """What torchrun does for a worker: describe the group in the environment; then join it."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2")
    torch.set_num_threads(1)
    distributed.setup("cpu")


def spawn_two(worker, *args, timeout: float = 120) -> None:
    """Run ``worker(rank, port, *args)`` in two processes; fail (and stop them) if they outlast ``timeout``."""
    context = mp.start_processes(worker, args=(free_port(), *args), nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the two processes were still running after {timeout} s")


def model_from(folder: str, dropout: float = 0.0) -> MultiTaskSentenceTransformer:
    """The same model in every process; ``dropout`` everywhere, the backbone's included."""
    set_seed(0)
    model = MultiTaskSentenceTransformer(TASKS, folder)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = dropout  # BERT's attention reads its dropout rate from here too
    return model


def train_partial_labels(rank: int, port: int, folder: str, out: Path) -> None:
    join_group(rank, port)
    try:
        model = model_from(folder, dropout=0.1)
        train_loader = distributed.make_loader(PARTIAL, model.tokenize, TASKS, batch_size=2, shuffle=True, seed=3)
        val_loader = distributed.make_loader(PARTIAL, model.tokenize, TASKS, batch_size=5)
        config = TrainConfig(epochs=2, lr=1e-3, head_lr=1e-2, device="cpu", precision="fp32", eval_every=3,
                             loss_weighting="uncertainty", early_stopping_patience=2, checkpoint_dir=out / "best")
        history = train(model, train_loader, val_loader, config)
        save_file(model.state_dict(), out / f"rank{rank}.safetensors")
        history[history["split"] == "val"].to_csv(out / f"val{rank}.csv", index=False)
    finally:
        distributed.teardown()


def one_step(rank: int, port: int, folder: str, out: Path) -> None:
    join_group(rank, port)
    try:
        model = model_from(folder)
        loader = distributed.make_loader(FULL, model.tokenize, TASKS, batch_size=16, shuffle=True)
        history = train(model, loader, None, ONE_STEP)
        save_file(model.state_dict(), out / f"rank{rank}.safetensors")
        history.to_csv(out / f"history{rank}.csv", index=False)
    finally:
        distributed.teardown()


def train_keeping_gradients(model: torch.nn.Module, loader, config: TrainConfig) -> dict[str, torch.Tensor]:
    """Train; return the weights after the step and the step's gradients as the optimizer saw them (``train``
    releases them when it ends). Adam's first step hardly depends on the gradient's scale, so a gradient off by
    a constant factor would hide behind equal weights."""
    names = {p: name for name, p in model.named_parameters()}
    gradients = {}

    def keep(optimizer, args, kwargs) -> None:
        gradients.update({f"{names[p]}.grad": p.grad.clone() for group in optimizer.param_groups
                          for p in group["params"] if p in names and p.grad is not None})

    handle = register_optimizer_step_pre_hook(keep)
    try:
        train(model, loader, None, config)
    finally:
        handle.remove()
    return {**model.state_dict(), **gradients}


def pattern_config(weighting: str, settings: dict) -> TrainConfig:
    """One epoch (one step per 32 rows) with strong weight decay and a high head rate, so that a head that
    AdamW should leave alone but moves shows at once."""
    return dataclasses.replace(ONE_STEP, loss_weighting=weighting, max_grad_norm=None, weight_decay=0.5,
                               head_lr=1e-2, **settings)


def train_each_pattern(rank: int, port: int, folder: str, out: Path) -> None:
    join_group(rank, port)
    try:
        for pattern, frame in LABEL_PATTERNS.items():
            for weighting, settings in WEIGHTINGS.items():
                model = model_from(folder)
                loader = distributed.make_loader(frame, model.tokenize, TASKS, batch_size=16)
                state = train_keeping_gradients(model, loader, pattern_config(weighting, settings))
                save_file(state, out / f"{pattern} {weighting} {rank}.safetensors")
    finally:
        distributed.teardown()


def test_steps_on_two_processes_equal_steps_on_the_whole_batches_with_missing_labels(tiny_model_dirs, tmp_path):
    """Each task's loss is the mean over its labelled rows in the whole step, wherever they are; a task with no
    label in a step leaves its head untouched, as in one process."""
    folder = str(tiny_model_dirs["bert"])
    spawn_two(train_each_pattern, folder, tmp_path)
    for pattern, frame in LABEL_PATTERNS.items():
        shares = [frame.iloc[rank::2] for rank in range(2)]
        assert [share["topic"].notna().sum() for share in shares] != [8, 8]  # the ranks' counts differ
        for weighting, settings in WEIGHTINGS.items():
            model = model_from(folder)
            start = model.heads["topic"].weight.detach().clone()
            one_process = train_keeping_gradients(model, make_loader(frame, model.tokenize, TASKS, batch_size=32),
                                                  pattern_config(weighting, settings))
            assert not torch.equal(start, model.heads["topic"].weight)
            assert len(one_process) > len(model.state_dict())
            for rank in range(2):
                ddp = load_file(tmp_path / f"{pattern} {weighting} {rank}.safetensors")
                assert ddp.keys() == one_process.keys()
                for name, value in one_process.items():
                    torch.testing.assert_close(ddp[name], value, rtol=0, atol=1e-5,
                                               msg=f"{pattern}, {weighting}, rank {rank}: {name}")


def test_each_rank_gets_an_equal_share_reshuffled_each_epoch_and_grouped_by_length():
    lengths = [(7 * i) % 23 + 1 for i in range(50)]
    samplers = [LengthGroupedBatches(lengths, 4, seed=0, rank=rank, world_size=3) for rank in range(3)]
    epochs = [[list(sampler) for sampler in samplers] for _ in range(2)]
    for shares in epochs:
        assert [len(batches) for batches in shares] == [len(sampler) for sampler in samplers] == [5, 5, 5]
        rows = [row for batches in shares for batch in batches for row in batch]
        assert len(rows) == 3 * 17 and set(rows) == set(range(50))  # 17 rows each: one row is seen twice
        for batches in shares:  # one chunk holds the whole share, so batches are runs of sorted lengths
            spans = sorted((min(lengths[i] for i in batch), max(lengths[i] for i in batch)) for batch in batches)
            assert all(high <= next_low for (_, high), (next_low, _) in zip(spans, spans[1:]))
    assert epochs[0] != epochs[1]


def test_some_step_has_labels_on_one_rank_only():
    """The partial-label run below then covers a rank that must join a step it has nothing to learn from."""
    dataset = SentenceDataset(PARTIAL, TASKS)
    samplers = [LengthGroupedBatches([len(t) for t in dataset.texts], 2, 3, rank, 2) for rank in range(2)]
    labelled = [[any(dataset[i]["labels"][t] != IGNORE_INDEX for i in batch for t in TASKS) for batch in sampler]
                for sampler in samplers]
    assert any(a != b for a, b in zip(*labelled))


def test_two_processes_end_with_identical_weights_and_validations(tiny_model_dirs, tmp_path):
    spawn_two(train_partial_labels, str(tiny_model_dirs["bert"]), tmp_path)
    weights = [load_file(tmp_path / f"rank{rank}.safetensors") for rank in range(2)]
    for name, value in weights[0].items():
        assert torch.equal(value, weights[1][name]), name
    validations = [pd.read_csv(tmp_path / f"val{rank}.csv") for rank in range(2)]
    pd.testing.assert_frame_equal(*validations)  # same scores, same loss weights, same early-stopping steps
    assert (tmp_path / "best" / "model.safetensors").is_file()


def test_one_step_on_two_processes_equals_one_step_on_the_whole_batch(tiny_model_dirs, tmp_path):
    folder = str(tiny_model_dirs["bert"])
    spawn_two(one_step, folder, tmp_path)
    model = model_from(folder)
    start = {name: value.clone() for name, value in model.state_dict().items()}
    history = train(model, make_loader(FULL, model.tokenize, TASKS, batch_size=32), None, ONE_STEP)
    for rank in range(2):
        ddp = load_file(tmp_path / f"rank{rank}.safetensors")
        for name, value in model.state_dict().items():
            torch.testing.assert_close(ddp[name], value, rtol=0, atol=1e-5, msg=name)
    assert not torch.equal(start["heads.topic.weight"], model.state_dict()["heads.topic.weight"])
    ddp_weights = pd.read_csv(tmp_path / "history0.csv").set_index("task")["weight"].dropna()
    assert ddp_weights.to_dict() == pytest.approx(history.set_index("task")["weight"].dropna().to_dict(), abs=1e-6)


def non_finite_loss_on_rank_1(rank: int, port: int, folder: str, out: Path) -> None:
    """fp16 as on an older GPU (simulated on the CPU: autocast and a gradient scaler), where a step's gradient norm
    may be inf by design and only the loss is checked; rank 1's loss is NaN, rank 0's is not."""
    join_group(rank, port)
    try:
        training.training_dtype = lambda config: torch.float16
        training.grad_scaler = lambda device, dtype: torch.amp.GradScaler("cpu", enabled=True)
        if rank == 1:
            losses = training.task_losses
            training.task_losses = lambda *args, **kwargs: {task: loss * math.nan
                                                            for task, loss in losses(*args, **kwargs).items()}
        model = model_from(folder)
        loader = distributed.make_loader(FULL, model.tokenize, TASKS, batch_size=4, shuffle=True)
        try:
            train(model, loader, None, ONE_STEP)
            outcome = "finished"
        except Exception as error:  # what each rank met, for the test to read
            outcome = f"{type(error).__name__}: {error}"
        (out / f"rank{rank}.txt").write_text(outcome)
    finally:
        distributed.teardown()


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_the_same_step(tiny_model_dirs, tmp_path):
    spawn_two(non_finite_loss_on_rank_1, str(tiny_model_dirs["bert"]), tmp_path, timeout=90)
    for rank in range(2):
        outcome = (tmp_path / f"rank{rank}.txt").read_text()
        assert re.fullmatch(r"FloatingPointError: the loss \(\S+\) or the gradient norm \(\S+\) is not finite "
                            r"on 1 of 2 processes \(numbers of this one\); the weights were not updated at epoch 1, "
                            r"step 1;.*", outcome), (rank, outcome)


def run_torchrun(arguments: list[str], timeout: float = 240) -> tuple[int, str]:
    """torchrun with two CPU workers; its whole process group is killed if it outlasts ``timeout``."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *arguments]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"torchrun was still running after {timeout} s:\n{process.communicate()[0]}")
    return process.returncode, output


def small_csv(path: Path) -> Path:
    FULL.assign(split=["train", "train", "val", "test"] * 8).to_csv(path, index=False)
    return path


def test_the_command_under_torchrun_writes_a_model_that_loads_and_predicts(tiny_model_dirs, tmp_path):
    out = tmp_path / "out"
    code, output = run_torchrun(["-m", "helpers", "train", "--data", str(small_csv(tmp_path / "rows.csv")),
                                 "--out", str(out), "--model", str(tiny_model_dirs["bert"]), "--epochs", "2",
                                 "--batch-size", "4", "--device", "cpu", "--loss-weighting", "uncertainty",
                                 "--freeze", "bottom:1"])
    assert code == 0, output
    assert "2 process(es)" in output and output.count("wrote ") == 1  # only rank 0 reports
    assert "frozen bottom of 1 layer(s) not cached under torchrun" in output
    model = MultiTaskSentenceTransformer.load(out)
    assert model.predict(["markets rallied"])["topic"].iloc[0] in TOPICS
    assert list(pd.read_csv(out / "history.csv").columns) == HISTORY_COLUMNS
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["topic"]["n"] == 8 and metrics["val"]["sentiment"]["n"] == 8  # summed over ranks


FAILING_RANK = """
import os
from helpers import cli, training

def broken_step(*args, **kwargs):
    raise RuntimeError("rank 1 failed on purpose")

if os.environ["RANK"] == "1":
    training.train_step = broken_step
cli.main()
"""


def test_a_failing_rank_fails_the_whole_run_without_hanging(tiny_model_dirs, tmp_path):
    script, out = tmp_path / "fail_on_rank_1.py", tmp_path / "out"
    script.write_text(FAILING_RANK)
    code, output = run_torchrun([str(script), "--data", str(small_csv(tmp_path / "rows.csv")), "--out", str(out),
                                 "--model", str(tiny_model_dirs["bert"]), "--device", "cpu"])
    assert code != 0 and "rank 1 failed on purpose" in output
    assert not (out / "model.safetensors").exists()
