"""The core against numbers worked out by hand: losses, metrics, the schedule, clipping, weighting, splits,
predictions and the saved model. Each test fails for one plausible one-line bug (named in its docstring)."""

import math

import pandas as pd
import pytest
import torch
from torch import nn

from helpers import TASKS, MultiTaskSentenceTransformer, make_loader, set_seed
from helpers.data import LengthGroupedBatches, split_loaders
from helpers.losses import task_losses
from helpers.metrics import evaluate
from helpers.training import TrainConfig, lr_factor, train, train_step
from helpers.weighting import Sum

IGNORE = -100
TEXTS = ["the team won the cup final", "markets fell on weak earnings", "a new chip doubles battery life",
         "leaders signed the peace treaty", "the striker missed every chance", "the bank posted record profit",
         "the update crashed my phone", "floods displaced thousands of families"]
FRAME = pd.DataFrame({"text": TEXTS, "split": "train", "topic": ["sports", "business", "sci_tech", "world"] * 2,
                      "sentiment": ["positive", "negative", "positive", "positive", "negative", "positive",
                                    "negative", "negative"]})


def nll(row: list[float], label: int) -> float:
    """-log softmax(row)[label], from the definition."""
    return -(row[label] - math.log(sum(math.exp(v) for v in row)))


@pytest.fixture
def tiny(tiny_model_dirs):
    set_seed(0)
    return MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"], dropout=0.0)


# --- the masked loss ---------------------------------------------------------------------------------------

def test_task_losses_average_cross_entropy_over_the_labelled_rows_only():
    """Catches -100 rows counted (as class 0, or in the denominator) and all-unlabelled tasks kept."""
    topic = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0], [1.0, -2.0, 0.5]]
    sentiment = [[0.0, 1.0], [2.0, 0.0], [0.3, 0.1], [1.0, 1.0]]
    logits = {"topic": torch.tensor(topic), "sentiment": torch.tensor(sentiment), "spam": torch.zeros(4, 2)}
    labels = {"topic": torch.tensor([2, IGNORE, 0, 1]), "sentiment": torch.tensor([IGNORE, 1, IGNORE, IGNORE]),
              "spam": torch.full((4,), IGNORE)}
    losses = task_losses(logits, labels)
    assert set(losses) == {"topic", "sentiment"}
    assert losses["topic"].item() == pytest.approx((nll(topic[0], 2) + nll(topic[2], 0) + nll(topic[3], 1)) / 3)
    assert losses["sentiment"].item() == pytest.approx(nll(sentiment[1], 1))


# --- evaluate ----------------------------------------------------------------------------------------------

TOPIC_LOGITS = [[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0], [1.0, 2.0, 0.5], [0.2, 0.1, 0.0],
                [0.0, 1.0, 1.5]]  # argmax per row: 0, 1, 2, 1, 0, 2
SENTIMENT_LOGITS = [[0.0, 1.0], [2.0, 0.0], [0.0, 0.5], [0.4, 0.0], [1.0, 0.0], [0.3, 0.0]]  # 1, 0, 1, 0, 0, 0
TOPIC_LABELS = [0, 0, 2, 0, IGNORE, 1]
SENTIMENT_LABELS = [1, 1, IGNORE, IGNORE, 0, 1]


class LookupModel(nn.Module):
    """Row i (input id i) always gets the logits above, whatever the mode or the device."""

    tasks = {"topic": ["a", "b", "c"], "sentiment": ["neg", "pos"]}

    def __init__(self) -> None:
        super().__init__()
        self.topic = nn.Parameter(torch.tensor(TOPIC_LOGITS))
        self.sentiment = nn.Parameter(torch.tensor(SENTIMENT_LOGITS))
        self.scale = 1.0

    def forward(self, input_ids, attention_mask):
        rows = input_ids[:, 0]
        return {"topic": self.scale * self.topic[rows], "sentiment": self.scale * self.sentiment[rows]}


def lookup_batches(groups):
    return [{"input_ids": torch.tensor([[i] for i in ids]), "attention_mask": torch.ones(len(ids), 1, dtype=torch.long),
             "labels": {"topic": torch.tensor([TOPIC_LABELS[i] for i in ids]),
                        "sentiment": torch.tensor([SENTIMENT_LABELS[i] for i in ids])}} for ids in groups]


def test_evaluate_gives_exact_accuracy_loss_and_confusion_over_labelled_rows():
    """Catches accuracy or loss over every row, a transposed confusion matrix, a loss that is summed
    rather than averaged, and counts lost between batches."""
    results = evaluate(LookupModel(), lookup_batches([[0, 1, 2], [3, 4, 5]]), precision="fp32")
    topic, sentiment = results["topic"], results["sentiment"]
    assert topic["n"] == 5 and sentiment["n"] == 4
    assert topic["accuracy"] == pytest.approx(2 / 5) and sentiment["accuracy"] == pytest.approx(2 / 4)
    assert topic["confusion"].tolist() == [[1, 2, 0], [0, 0, 1], [0, 0, 1]]  # [true, predicted]
    assert sentiment["confusion"].tolist() == [[1, 0], [2, 1]]
    topic_rows = [i for i, y in enumerate(TOPIC_LABELS) if y != IGNORE]
    sentiment_rows = [i for i, y in enumerate(SENTIMENT_LABELS) if y != IGNORE]
    assert topic["loss"] == pytest.approx(sum(nll(TOPIC_LOGITS[i], TOPIC_LABELS[i]) for i in topic_rows) / 5)
    assert sentiment["loss"] == pytest.approx(
        sum(nll(SENTIMENT_LOGITS[i], SENTIMENT_LABELS[i]) for i in sentiment_rows) / 4)
    # per class F1: topic a 2*1/(1+3), b 0, c 2*1/(2+1); sentiment neg 2*1/(3+1), pos 2*1/(1+3)
    assert topic["macro_f1"] == pytest.approx((0.5 + 0 + 2 / 3) / 3)
    assert sentiment["macro_f1"] == pytest.approx(0.5)


def test_evaluate_reports_nan_for_a_task_without_labels_and_restores_the_mode():
    model = LookupModel().train()
    batch = lookup_batches([[0, 1]])[0]
    batch["labels"]["topic"] = torch.full((2,), IGNORE)
    results = evaluate(model, [batch], precision="fp32")
    assert results["topic"]["n"] == 0 and math.isnan(results["topic"]["accuracy"])
    assert math.isnan(results["topic"]["loss"]) and math.isnan(results["topic"]["macro_f1"])
    assert results["topic"]["confusion"].tolist() == [[0] * 3] * 3
    assert results["sentiment"]["n"] == 2 and model.training


# --- the learning-rate schedule ----------------------------------------------------------------------------

@pytest.mark.parametrize("step, total, warmup, expected", [
    (0, 10, 4, 0.25), (1, 10, 4, 0.5), (3, 10, 4, 1.0), (4, 10, 4, 1.0), (7, 10, 4, 0.5), (9, 10, 4, 1 / 6),
    (10, 10, 4, 0.0), (0, 10, 0, 1.0), (5, 10, 0, 0.5), (9, 10, 0, 0.1), (0, 1, 0, 1.0), (0, 1, 1, 1.0),
])
def test_lr_factor_by_hand(step, total, warmup, expected):
    assert lr_factor(step, total, warmup) == pytest.approx(expected)


def test_train_warms_up_then_decays_the_learning_rate_linearly(tiny):
    """Catches a constant learning rate, a schedule that is computed but never applied, and warm-up or
    decay off by one step: 8 steps, 2 of warm-up, logged after each step."""
    loader = make_loader(FRAME, tiny.tokenize, batch_size=2)
    config = TrainConfig(epochs=2, lr=1e-3, head_lr=1e-2, warmup_ratio=0.25, device="cpu", log_every=1)
    history = train(tiny, loader, None, config)
    rows = history[(history["split"] == "train") & (history["task"] == "total")]
    assert rows["step"].tolist() == list(range(1, 9))
    factors = [1 / 2, 1, 1, 5 / 6, 4 / 6, 3 / 6, 2 / 6, 1 / 6]  # lr_factor(step - 1, 8, 2)
    assert rows["lr"].tolist() == pytest.approx([1e-3 * f for f in factors])  # the encoder's rate
    assert rows["head_lr"].tolist() == pytest.approx([1e-2 * f for f in factors])


# --- gradient clipping -------------------------------------------------------------------------------------

def test_clipping_bounds_the_step_of_plain_sgd():
    """Catches clipping that is skipped, applied after the step, or clips to another norm."""
    batch = lookup_batches([[0, 1, 2, 3, 4, 5]])[0]
    moves = {}
    for max_grad_norm in (None, 0.01):
        model = LookupModel()
        model.scale = 100.0  # confident and often wrong: large gradients
        before = [p.detach().clone() for p in model.parameters()]
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        train_step(model, batch, optimizer, Sum(list(model.tasks)), max_grad_norm=max_grad_norm)
        moves[max_grad_norm] = torch.cat([(p.detach() - b).flatten() for p, b in zip(model.parameters(), before)])
    raw = moves[None].norm().item()
    assert raw > 1.0  # 100 times the clipping norm
    assert 0.0099 <= moves[0.01].norm().item() <= 0.01 * (1 + 1e-4)
    # clipping scales the whole gradient: same direction
    assert torch.allclose(moves[0.01], moves[None] * (moves[0.01].norm() / raw), atol=1e-6)


def test_train_clips_with_the_configured_norm(tiny, monkeypatch):
    """Catches train() not passing max_grad_norm on to the step."""
    seen = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm, *args, **kwargs):
        seen.append(max_norm)
        return real(parameters, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    loader = make_loader(FRAME, tiny.tokenize, batch_size=4)
    train(tiny, loader, None, TrainConfig(epochs=1, device="cpu", max_grad_norm=0.5))
    assert seen == [0.5, 0.5]
    seen.clear()
    train(tiny, loader, None, TrainConfig(epochs=1, device="cpu", max_grad_norm=None))
    assert seen == []


# --- static weighting --------------------------------------------------------------------------------------

def test_static_weights_give_the_logged_training_total(tiny):
    """Catches a training total that ignores the weights (the plain sum) or swaps them."""
    config = TrainConfig(epochs=1, lr=1e-3, warmup_ratio=0.0, device="cpu", log_every=1, loss_weighting="static",
                         task_weights={"topic": 0.25, "sentiment": 3.0})
    history = train(tiny, make_loader(FRAME, tiny.tokenize, batch_size=4), None, config)
    for step, rows in history[history["split"] == "train"].groupby("step"):
        loss = rows.set_index("task")["loss"]
        assert loss["total"] == pytest.approx(0.25 * loss["topic"] + 3.0 * loss["sentiment"], rel=1e-5), step
        assert rows.set_index("task")["weight"][["topic", "sentiment"]].tolist() == [0.25, 3.0]


def test_a_zero_static_weight_leaves_that_head_untouched(tiny):
    """Catches weights used for the logged total but not for the gradients."""
    sentiment_before = {k: v.clone() for k, v in tiny.heads["sentiment"].state_dict().items()}
    topic_before = {k: v.clone() for k, v in tiny.heads["topic"].state_dict().items()}
    config = TrainConfig(epochs=1, lr=1e-3, weight_decay=0.0, warmup_ratio=0.0, device="cpu",
                         loss_weighting="static", task_weights={"topic": 1.0, "sentiment": 0.0})
    train(tiny, make_loader(FRAME, tiny.tokenize, batch_size=4), None, config)
    assert all(torch.equal(v, sentiment_before[k]) for k, v in tiny.heads["sentiment"].state_dict().items())
    assert not any(torch.equal(v, topic_before[k]) for k, v in tiny.heads["topic"].state_dict().items())


# --- splits ------------------------------------------------------------------------------------------------

def test_split_loaders_hold_exactly_their_split(tiny):
    """Catches swapped or merged splits: the sentences each loader yields are those of its split."""
    corpus = pd.concat([FRAME.assign(split=split, text=FRAME["text"] + " " + split)
                        for split in ("train", "val", "test")], ignore_index=True)
    corpus = corpus.sample(frac=1, random_state=0)  # splits interleaved
    loaders = split_loaders(corpus, tiny, batch_size=3)
    assert list(loaders) == ["train", "val", "test"]
    for split, loader in loaders.items():
        expected = sorted(corpus.loc[corpus["split"] == split, "text"])
        assert sorted(loader.dataset.texts) == expected
        seen = [text for batch in loader
                for text in tiny.encoder.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)]
        assert sorted(seen) == expected, split


# --- predict -----------------------------------------------------------------------------------------------

def set_head(model, task, bias):
    head = model.heads[task]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(bias, dtype=torch.float32))


@pytest.mark.parametrize("task", ["topic", "sentiment"])
def test_predict_names_the_label_the_head_picks(tiny, task):
    """Catches an argmax mapped to the wrong label (off by one, reversed, another task's labels)."""
    labels = TASKS[task]
    for k, label in enumerate(labels):
        set_head(tiny, task, [1e4 if i == k else 0.0 for i in range(len(labels))])
        frame = tiny.predict(TEXTS[:3], batch_size=2)
        assert frame[task].tolist() == [label] * 3
        assert frame[f"{task}_prob"].tolist() == [1.0] * 3


def test_predict_probability_is_the_softmax_maximum(tiny):
    set_head(tiny, "topic", [0.0, math.log(3.0), 0.0, 0.0])  # softmax: 1/6, 1/2, 1/6, 1/6
    set_head(tiny, "sentiment", [math.log(4.0), 0.0])  # softmax: 4/5, 1/5
    frame = tiny.predict(TEXTS[:2])
    assert frame["topic"].tolist() == ["sports", "sports"] and frame["sentiment"].tolist() == ["negative"] * 2
    assert frame["topic_prob"].tolist() == pytest.approx([0.5, 0.5])
    assert frame["sentiment_prob"].tolist() == pytest.approx([0.8, 0.8])


# --- the saved model ---------------------------------------------------------------------------------------

def test_save_then_load_keeps_every_tensor_bit_for_bit_and_every_setting(tiny_model_dirs, tmp_path):
    """Catches a tensor left out of the file (a LayerNorm left at its default would pass a round trip of a
    fresh model) and a setting that is not saved: every tensor is perturbed and every setting is not the
    default."""
    set_seed(1)
    model = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"], pooling="max", dropout=0.25, hidden_dim=8,
                                         max_seq_length=17)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            tensor.add_(torch.randn(tensor.shape, generator=generator).to(tensor.dtype))
    model.save(tmp_path / "saved")
    loaded = MultiTaskSentenceTransformer.load(tmp_path / "saved")
    original, restored = model.state_dict(), loaded.state_dict()
    assert list(restored) == list(original)
    for name, tensor in original.items():
        assert torch.equal(restored[name], tensor), name
    assert loaded.config() == model.config()
    assert (loaded.encoder.max_seq_length, loaded.encoder.pooling, loaded.dropout.p, loaded.hidden_dim) == (
        17, "max", 0.25, 8)
    assert loaded.tokenize([" ".join(["word"] * 40)])["input_ids"].shape == (1, 17)


# --- details that mutation testing (`make mutants`) found unchecked ---------------------------------------

def test_history_rows_carry_epoch_step_and_learning_rate(tiny):
    """Catches task rows logged without their learning rate and validation rows without their epoch."""
    loader = make_loader(FRAME, tiny.tokenize, batch_size=4)
    history = train(tiny, loader, loader, TrainConfig(epochs=2, warmup_ratio=0.0, device="cpu", log_every=1))
    assert history["epoch"].tolist() == [1] * 9 + [2] * 9  # 3 train rows per step, 3 val rows per epoch
    assert history["step"].tolist() == [1] * 3 + [2] * 6 + [3] * 3 + [4] * 6
    train_rows = history[history["split"] == "train"]
    assert train_rows.groupby("step")["lr"].nunique().eq(1).all() and train_rows["lr"].notna().all()


def test_optimizer_rates_for_encoder_heads_and_learned_loss_weights(tiny):
    """Catches learned loss weights trained at the encoder rate (or the optimizer's default)."""
    from helpers.training import make_optimizer
    from helpers.weighting import Uncertainty

    weighting = Uncertainty(list(TASKS))
    groups = make_optimizer(tiny, weighting, TrainConfig(lr=1e-3, head_lr=1e-2, weight_decay=0.05)).param_groups
    rates = {(g["component"], g["weight_decay"]): g["lr"] for g in groups}
    assert rates[("loss weights", 0.0)] == 1e-2 and rates[("layer 0", 0.05)] == 1e-3
    assert rates[("head: topic", 0.05)] == 1e-2
    groups = make_optimizer(tiny, weighting, TrainConfig(lr=1e-3, head_lr=None)).param_groups
    assert {g["lr"] for g in groups} == {1e-3}


def test_a_step_without_a_task_s_labels_leaves_its_parameters_alone():
    """Catches gradients zeroed instead of cleared: AdamW would keep moving the idle task on momentum."""
    model = LookupModel()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1, weight_decay=0.1)
    both, topic_only = lookup_batches([[0, 1, 2, 5]])[0], lookup_batches([[0, 1, 2, 3]])[0]
    topic_only["labels"]["sentiment"] = torch.full((4,), IGNORE)
    train_step(model, both, optimizer, Sum(list(model.tasks)))
    sentiment, topic = model.sentiment.detach().clone(), model.topic.detach().clone()
    train_step(model, topic_only, optimizer, Sum(list(model.tasks)))
    assert torch.equal(model.sentiment, sentiment) and not torch.equal(model.topic, topic)


def test_evaluate_without_labels_gives_nan_quietly_and_uses_the_device_asked_for(monkeypatch):
    import warnings

    from helpers import metrics

    devices = []
    real = metrics.inference

    def spy(model, device=None, precision="auto"):
        devices.append(device)
        return real(model, device, precision)

    monkeypatch.setattr(metrics, "inference", spy)
    batch = lookup_batches([[0, 1]])[0]
    batch["labels"]["topic"] = torch.full((2,), IGNORE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero behind the NaN
        results = evaluate(LookupModel(), [batch], device="cpu", precision="fp32")
    assert math.isnan(results["topic"]["accuracy"]) and devices == ["cpu"]


def test_train_runs_the_forward_pass_under_the_precision_asked_for(tiny, monkeypatch):
    from helpers import training

    dtypes = []
    real = training.autocast

    def spy(device, dtype):
        dtypes.append(dtype)
        return real(device, dtype)

    monkeypatch.setattr(training, "autocast", spy)
    train(tiny, make_loader(FRAME, tiny.tokenize, batch_size=4), None,
          TrainConfig(epochs=1, device="cpu", precision="bf16"))
    assert dtypes == [torch.bfloat16, torch.bfloat16]


@pytest.mark.parametrize("unfreeze_every, expected", [(None, 1), (1, 3)])
def test_gradual_unfreezing_stages_start_on_schedule(tiny, unfreeze_every, expected):
    """Two epochs of two steps: one new stage at the start of epoch 2, or one before every step but the first."""
    from helpers.freezing import GradualUnfreezing

    unfreezing = GradualUnfreezing(tiny)
    train(tiny, make_loader(FRAME, tiny.tokenize, batch_size=4), None,
          TrainConfig(epochs=2, device="cpu", unfreeze_every=unfreeze_every), unfreezing=unfreezing)
    assert unfreezing.stages_done == expected


def test_the_divergence_warning_fires_at_100_times_the_first_loss():
    import warnings

    from helpers.training import History, StepResult

    def log(history, step, loss):
        history.add(StepResult(loss_sums={"a": torch.tensor(2 * loss)}, correct={"a": torch.tensor(1)},
                               labelled={"a": 2}))
        history.log_train(1, step, 0.01, 0.1)

    history = History(Sum(["a"]), "macro_f1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        log(history, 1, 2.0)
        log(history, 2, 150.0)  # 75 times the first loss: no warning
    with pytest.warns(RuntimeWarning, match="grew from 2 to 250"):
        log(history, 3, 250.0)


def test_saving_over_a_saved_model_leaves_nothing_beside_it(tiny, tmp_path):
    tiny.save(tmp_path / "m")
    tiny.save(tmp_path / "m")
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_load_refuses_a_newer_format_and_moves_to_the_device_asked_for(tiny, tmp_path):
    import json

    tiny.save(tmp_path / "m")
    assert MultiTaskSentenceTransformer.load(tmp_path / "m", device="cpu").device == torch.device("cpu")
    config = tmp_path / "m" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "format_version": 99}))
    with pytest.raises(ValueError, match="format_version 99"):
        MultiTaskSentenceTransformer.load(tmp_path / "m")


def test_shuffled_batches_depend_on_the_seed_only(tiny):
    """Catches a shuffle drawn from the global random state instead of the loader's seeded generator."""
    def epochs(seed):
        torch.manual_seed(seed)  # the global state differs between the two calls
        loader = make_loader(FRAME, tiny.tokenize, batch_size=2, shuffle=True, seed=5)
        return [[batch["input_ids"].tolist() for batch in loader] for _ in range(4)]

    assert epochs(0) == epochs(1)


def test_make_loader_and_load_corpus_follow_the_task_spec(tiny, tmp_path):
    from helpers.data import label_portions, load_corpus

    frame = FRAME.assign(spam=["yes", "no"] * 4)
    batch = next(iter(make_loader(frame, tiny.tokenize, {"spam": ["no", "yes"]}, batch_size=4)))
    assert list(batch["labels"]) == ["spam"] and batch["labels"]["spam"].tolist() == [1, 0, 1, 0]
    tasks = {"a": ["x", "y"], "b": ["x", "y"], "c": ["x", "y"]}
    rows = pd.DataFrame({"a": ["x", "x", None, None], "b": ["y", "x", "y", None], "c": ["x", None, None, None]})
    portions = label_portions(rows, tasks)
    assert portions.name == "portion" and portions.tolist() == ["aligned", "a + b", "b only", "unlabelled"]
    path = tmp_path / "corpus.csv"
    path.write_text("text,split,topic,sentiment\nthe team won,bogus,sports,positive\n")
    with pytest.raises(ValueError, match="bogus"):
        load_corpus(path, require_split=False)  # a split column that is there is checked


def test_encoder_details(tiny_model_dirs, monkeypatch, capfd):
    """Default pooling, what tokenize returns (no token type ids: one-sentence input), no progress bar unless
    asked, and float32 inference on a CPU even where training would use bf16."""
    from helpers import SentenceTransformer, precision

    bert = SentenceTransformer(tiny_model_dirs["bert"])
    assert bert.pooling == "mean"
    batch = bert.tokenize(TEXTS[:2])
    assert set(batch) == {"input_ids", "attention_mask"}
    distil = SentenceTransformer(tiny_model_dirs["distilbert"])
    assert set(distil.tokenize(TEXTS[:2])) == {"input_ids", "attention_mask"}
    with torch.no_grad():
        plain = bert(**batch)
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    capfd.readouterr()
    vectors = bert.encode(TEXTS[:1], convert_to_tensor=True)
    assert capfd.readouterr() == ("", "")  # no bar, on either stream
    assert torch.allclose(vectors, plain[:1], atol=1e-6)


# --- the training history -----------------------------------------------------------------------------------

def test_a_steps_accuracy_counts_the_labelled_rows_only():
    """Catches unlabelled rows counted as predictions (right or wrong) in the training history."""
    model = LookupModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    result = train_step(model, lookup_batches([range(6)])[0], optimizer, Sum(list(model.tasks)))
    # topic: rows 0-3 and 5 labelled, argmax 0, 1, 2, 1, -, 2 against 0, 0, 2, 0, -, 1: right on rows 0 and 2
    # sentiment: rows 0, 1, 4 and 5 labelled, argmax 1, 0, -, -, 0, 0 against 1, 1, -, -, 0, 1: right on 0 and 4
    assert result.labelled == {"topic": 5, "sentiment": 4}
    assert {task: int(value) for task, value in result.correct.items()} == {"topic": 2, "sentiment": 2}
    expected = sum(nll(TOPIC_LOGITS[i], TOPIC_LABELS[i]) for i in range(6) if TOPIC_LABELS[i] != IGNORE)
    assert result.loss_sums["topic"].item() == pytest.approx(expected)


def test_history_rows_are_means_over_the_labelled_rows_of_their_window():
    """Catches a mean of per-step means (a step with 1 label weighing as much as one with 3)."""
    from helpers.training import History, StepResult

    history = History(Sum(["a", "b"]), "macro_f1")
    history.add(StepResult(loss_sums={"a": torch.tensor(2.0)}, correct={"a": torch.tensor(1)}, labelled={"a": 1}))
    history.add(StepResult(loss_sums={"a": torch.tensor(3.0), "b": torch.tensor(1.5)},
                           correct={"a": torch.tensor(0), "b": torch.tensor(2)}, labelled={"a": 3, "b": 3}))
    history.log_train(1, 2, 0.01, 0.1)
    rows = history.frame().set_index("task")
    assert rows.loc["a", "loss"] == pytest.approx(5 / 4) and rows.loc["a", "accuracy"] == pytest.approx(1 / 4)
    assert rows.loc["b", "loss"] == pytest.approx(0.5) and rows.loc["b", "accuracy"] == pytest.approx(2 / 3)
    assert rows.loc["total", "loss"] == pytest.approx(5 / 4 + 0.5)  # the weighting of the task means


def test_early_stopping_in_the_middle_of_a_log_window_keeps_its_training_rows(tiny, monkeypatch):
    """Catches the steps since the last training row dropped when validation stops the run."""
    from helpers import training

    scores = iter([0.1, 0.9, 0.1, 0.1, 0.1])  # step 0 (before training), then steps 3 and 4
    monkeypatch.setattr(training, "evaluate", lambda *args, **kwargs: {
        task: {"loss": 1.0, "accuracy": 0.5, "macro_f1": next(scores) if task == "topic" else 0.5, "n": 4}
        for task in TASKS})
    loader = make_loader(FRAME, tiny.tokenize, batch_size=2)
    history = train(tiny, loader, loader, TrainConfig(epochs=3, device="cpu", eval_every=3, log_every=5,
                                                      early_stopping_patience=1))
    last_train = history[history["split"] == "train"]["step"].max()
    # validations at steps 3 and 4 (an epoch is 4 steps): the second is worse, so training stops at step 4,
    # before the first log window of 5 steps is full
    assert history[history["split"] == "val"]["step"].max() == 4 == last_train


def test_a_validation_split_without_labels_is_named_as_the_problem(tiny):
    frame = FRAME.assign(topic=pd.NA, sentiment=pd.NA)
    with pytest.raises(ValueError, match="the validation loader holds no label of any task"):
        train(tiny, make_loader(FRAME, tiny.tokenize, batch_size=4), make_loader(frame, tiny.tokenize, batch_size=4),
              TrainConfig(epochs=1, device="cpu"))


def test_every_epoch_gets_new_batches_of_similar_lengths(tiny):
    """Catches length-grouped batches that are not reshuffled between epochs."""
    frame = pd.concat([FRAME.assign(text=FRAME["text"] + " " + "x " * k) for k in range(4)], ignore_index=True)
    loader = make_loader(frame, tiny.tokenize, batch_size=4, shuffle=True, seed=0)
    epochs = [[batch["input_ids"].tolist() for batch in loader] for _ in range(3)]
    for batches in epochs:
        assert sum(len(batch) for batch in batches) == len(frame)
    assert epochs[0] != epochs[1] != epochs[2] and epochs[0] != epochs[2]
    assert len({tuple(map(tuple, epoch[0])) for epoch in epochs}) == 3  # even the first batch differs


def test_batches_leave_an_epoch_in_random_order_not_in_the_order_they_were_built():
    """Catches length-grouped batches yielded as built: shortest first, so every epoch would open with its
    shortest sentences and close with its longest."""
    lengths = [(7 * i) % 96 + 1 for i in range(96)]
    sampler = LengthGroupedBatches(lengths, batch_size=4, seed=0, chunk_batches=24)  # one chunk: the whole epoch
    for _ in range(3):
        shortest = [min(lengths[row] for row in batch) for batch in sampler]
        assert sorted(shortest) == [1 + 4 * k for k in range(24)]  # batches of 4 neighbours in length
        assert shortest != sorted(shortest)
