import math

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import (
    IGNORE_INDEX,
    TASKS,
    MultiTaskSentenceTransformer,
    SentenceTransformer,
    make_loader,
    pick_device,
    set_seed,
)
from helpers import training as training_module
from helpers.losses import task_losses
from helpers.metrics import evaluate, macro_f1
from helpers.training import TrainConfig, train
from helpers.weighting import Static, Sum, Uncertainty, make_weighting

TEXTS = ["the team won the cup final", "markets fell on weak earnings", "a new chip doubles battery life",
         "leaders signed the peace treaty", "the striker missed every chance", "the bank posted record profit",
         "the update crashed my phone", "floods displaced thousands of families"]
TOPICS = ["sports", "business", "sci_tech", "world"] * 2
SENTIMENTS = ["positive", "negative", "positive", "positive", "negative", "positive", "negative", "negative"]
FRAME = pd.DataFrame({"text": TEXTS, "split": "train", "topic": TOPICS, "sentiment": SENTIMENTS})


@pytest.fixture
def model(tiny_model_dirs):
    set_seed(0)
    return MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"], dropout=0.0)


def loaders(model, frame=FRAME, batch_size=4):
    return (make_loader(frame, model.tokenize, batch_size=batch_size, shuffle=True, seed=1),
            make_loader(frame, model.tokenize, batch_size=batch_size))


def quick_config(**overrides) -> TrainConfig:
    settings = {"epochs": 2, "lr": 1e-3, "head_lr": 1e-2, "warmup_ratio": 0.0, "device": "cpu", "log_every": 1}
    return TrainConfig(**{**settings, **overrides})


def test_one_step_lowers_the_loss_on_a_tiny_batch(model):
    batch = next(iter(make_loader(FRAME, model.tokenize, batch_size=8)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def loss_now():
        return Sum(list(TASKS))(task_losses(model(batch["input_ids"], batch["attention_mask"]), batch["labels"]))

    before = loss_now()
    optimizer.zero_grad()
    before.backward()
    optimizer.step()
    assert loss_now().item() < before.item()


def test_a_task_without_labels_adds_nothing_and_is_never_nan():
    logits = {"topic": torch.randn(3, 4), "sentiment": torch.randn(3, 2)}
    labels = {"topic": torch.full((3,), IGNORE_INDEX), "sentiment": torch.tensor([0, IGNORE_INDEX, 1])}
    losses = task_losses(logits, labels)
    assert list(losses) == ["sentiment"]
    by_hand = torch.nn.functional.cross_entropy(logits["sentiment"][[0, 2]], torch.tensor([0, 1]))
    assert Sum(list(TASKS))(losses).item() == pytest.approx(by_hand.item())
    nothing = {"topic": torch.full((3,), IGNORE_INDEX), "sentiment": torch.full((3,), IGNORE_INDEX)}
    assert task_losses(logits, nothing) == {}


def test_training_on_batches_without_any_label_stays_finite(model):
    unlabeled = FRAME.assign(topic=pd.NA, sentiment=pd.NA)
    labeled_half = pd.concat([unlabeled.head(4), FRAME.tail(4)])
    train_loader = make_loader(labeled_half, model.tokenize, batch_size=4)  # first batch has no label at all
    history = train(model, train_loader, None, quick_config(epochs=1))
    assert history["loss"].map(math.isfinite).all()


def test_uncertainty_weights_receive_gradients():
    weighting = Uncertainty(["topic", "sentiment"])
    weighting({"topic": torch.tensor(2.0), "sentiment": torch.tensor(0.5)}).backward()
    grads = {task: p.grad.item() for task, p in weighting.log_vars.items()}
    assert grads == pytest.approx({"topic": -2.0 + 0.5, "sentiment": -0.5 + 0.5})


def test_uncertainty_weighting_trains_its_weights(model):
    train_loader, val_loader = loaders(model)
    history = train(model, train_loader, val_loader, quick_config(loss_weighting="uncertainty"))
    weights = history[(history["split"] == "train") & (history["task"] == "topic")]["weight"]
    assert weights.iloc[-1] != pytest.approx(1.0) and weights.nunique() > 1


def test_static_weighting_needs_a_weight_for_every_task(model):
    train_loader, _ = loaders(model)
    with pytest.raises(ValueError, match="needs a weight for each task"):
        train(model, train_loader, None, quick_config(loss_weighting="static", task_weights={"topic": 1.0}))


def test_same_seed_same_history_on_cpu(tiny_model_dirs):
    histories = []
    for _ in range(2):
        set_seed(0)
        model = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"], dropout=0.1)
        histories.append(train(model, *loaders(model), quick_config()))
    pd.testing.assert_frame_equal(histories[0], histories[1])


def test_training_lowers_the_loss_and_logs_both_splits(model):
    history = train(model, *loaders(model), quick_config(epochs=4))
    total = history[(history["split"] == "train") & (history["task"] == "total")]["loss"]
    assert total.iloc[-1] < total.iloc[0]
    assert set(history["split"]) == {"train", "val"} and set(history["task"]) == {"topic", "sentiment", "total"}


def scripted_evaluations(monkeypatch, scores):
    """Make validation return ``scores`` in turn; record the model state at each call."""
    states, calls = [], iter(scores)

    def fake_evaluate(model, loader, device=None, precision="auto"):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        score = next(calls)
        return {task: {"loss": 1 - score, "accuracy": score, "macro_f1": score, "confusion": None, "n": 8}
                for task in model.tasks}

    monkeypatch.setattr(training_module, "evaluate", fake_evaluate)
    return states


def test_early_stopping_and_best_checkpoint_restore_in_memory(model, monkeypatch):
    states = scripted_evaluations(monkeypatch, [0.5, 0.9, 0.7, 0.6, 0.95])
    history = train(model, *loaders(model), quick_config(epochs=5, early_stopping_patience=2))
    assert len(states) == 4  # stopped after two validations without improvement
    assert history["epoch"].max() == 4
    for key, value in model.state_dict().items():
        assert torch.equal(value, states[1][key]), key  # the second validation was the best


def test_the_validation_before_the_first_step_can_be_the_best(model, monkeypatch):
    """Catches a best checkpoint that ignores step 0: training that only hurt must end at the start."""
    states = scripted_evaluations(monkeypatch, [0.9, 0.5, 0.4, 0.3, 0.2])
    train(model, *loaders(model), quick_config(epochs=2, eval_every=1))
    assert len(states) == 5 and not torch.equal(states[1]["heads.topic.weight"], states[0]["heads.topic.weight"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, states[0][key]), key


def test_the_best_checkpoint_in_memory_copies_only_what_trains_and_restores_it(model, monkeypatch):
    """A frozen bottom is never duplicated in memory, and the best weights still come back whole."""
    from helpers import freeze
    freeze(model, "bottom:1")
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    copied = []
    original_update = training_module.BestCheckpoint.update

    def spy(self, model, score):
        stop = original_update(self, model, score)
        copied.append(set(self.state or {}))
        return stop

    monkeypatch.setattr(training_module.BestCheckpoint, "update", spy)
    states = scripted_evaluations(monkeypatch, [0.2, 0.9, 0.1])
    train(model, *loaders(model), quick_config(epochs=3))
    assert copied[-1] == trainable  # and no frozen entry
    for key, value in model.state_dict().items():
        assert torch.equal(value, states[1][key]), key


def test_training_leaves_no_gradient_behind(model):
    """The last step's gradients would hold as much memory as the trained weights, for nothing."""
    train(model, *loaders(model), quick_config(epochs=1))
    assert all(p.grad is None for p in model.parameters())


def test_training_hands_freed_memory_back_before_its_first_step_after_each_and_at_the_end(model, monkeypatch):
    """Before the first step, what earlier work freed would otherwise sit under the run's own peak."""
    events = []
    monkeypatch.setattr(training_module, "return_freed_memory", lambda: events.append("released"))
    real_step = training_module.train_step
    monkeypatch.setattr(training_module, "train_step", lambda *args: events.append("step") or real_step(*args))
    batches = list(make_loader(FRAME, model.tokenize, batch_size=4))  # a list: no loader pass releases anything
    train(model, batches, None, quick_config(epochs=1))
    assert events == ["released", "step", "released", "step", "released", "released"]


def test_best_checkpoint_saved_to_disk_and_restored(model, monkeypatch, tmp_path):
    states = scripted_evaluations(monkeypatch, [0.9, 0.1, 0.2])
    train(model, *loaders(model), quick_config(epochs=3, checkpoint_dir=tmp_path / "best"))
    assert (tmp_path / "best" / "model.safetensors").is_file()
    for key, value in model.state_dict().items():
        assert torch.equal(value, states[0][key]), key


def test_a_non_finite_loss_stops_training_and_says_where(model):
    with torch.no_grad():
        model.heads["topic"].weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="at epoch 1, step 1"):
        train(model, loaders(model)[0], None, quick_config())


def test_evaluate_counts_only_labelled_rows(model):
    frame = FRAME.assign(topic=TOPICS[:4] + [pd.NA] * 4)
    results = evaluate(model, make_loader(frame, model.tokenize, batch_size=3))
    assert results["topic"]["n"] == 4 and results["sentiment"]["n"] == 8
    assert results["topic"]["confusion"].sum() == 4
    assert 0 <= results["topic"]["accuracy"] <= 1 and math.isfinite(results["topic"]["loss"])


def test_macro_f1():
    confusion = np.array([[3, 1], [0, 4]])  # class 0: P=1, R=.75; class 1: P=.8, R=1
    assert macro_f1(confusion) == pytest.approx(np.mean([2 * 1 * 0.75 / 1.75, 2 * 0.8 / 1.8]))
    assert macro_f1(np.array([[5, 0], [0, 0]])) == pytest.approx(0.5)


def test_static_weighting_total_is_the_weighted_sum():
    losses = {"topic": torch.tensor(2.0), "sentiment": torch.tensor(0.5)}
    assert Static(["topic", "sentiment"], {"topic": 0.25, "sentiment": 3.0})(losses).item() == pytest.approx(2.0)
    assert Sum(["topic", "sentiment"])(losses).item() == pytest.approx(2.5)


def test_uncertainty_total_includes_the_log_variance_term():
    weighting = Uncertainty(["topic", "sentiment"])
    with torch.no_grad():
        weighting.log_vars["topic"].fill_(math.log(4.0))
    losses = {"topic": torch.tensor(2.0), "sentiment": torch.tensor(0.5)}
    expected = 2.0 / 4 + math.log(4.0) / 2 + 0.5
    assert weighting(losses).item() == pytest.approx(expected)
    assert weighting.weights() == pytest.approx({"topic": 0.25, "sentiment": 1.0})


def test_weightings_are_chosen_by_name():
    assert type(make_weighting("uncertainty", ["a", "b"])) is Uncertainty
    assert make_weighting("static", ["a", "b"], {"a": 2.0, "b": 1.0}).weights() == {"a": 2.0, "b": 1.0}
    with pytest.raises(ValueError, match=r"loss_weighting must be one of \['sum', 'static', 'uncertainty'\]"):
        make_weighting("mean", ["a"])


def test_validation_total_uses_the_same_weighting_as_training(model):
    history = train(model, *loaders(model), quick_config(epochs=1, loss_weighting="static",
                                                          task_weights={"topic": 0.5, "sentiment": 2.0}))
    val = history[history["split"] == "val"].set_index("task")["loss"]
    assert val["total"] == pytest.approx(0.5 * val["topic"] + 2.0 * val["sentiment"])


def test_device_selection(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == torch.device("cuda") == pick_device(None)
    assert pick_device("cpu") == torch.device("cpu")


def test_bad_config_values():
    with pytest.raises(ValueError, match=r"loss_weighting must be one of \['sum', 'static', 'uncertainty'\]"):
        TrainConfig(loss_weighting="mean")
    with pytest.raises(ValueError, match="metric must be one of"):
        TrainConfig(metric="auc")
    with pytest.raises(ValueError, match=r"precision must be one of \['auto', 'fp32', 'bf16', 'fp16'\]"):
        TrainConfig(precision="half")


def test_validation_every_n_steps_never_repeats_at_an_epoch_end(model):
    train_loader, val_loader = loaders(model)  # 2 batches per epoch
    history = train(model, train_loader, val_loader, quick_config(epochs=2, eval_every=1))
    val_steps = history[(history["split"] == "val") & (history["task"] == "total")]["step"].tolist()
    assert val_steps == [0, 1, 2, 3, 4]  # step 0: before training, the curves' starting point


def test_bf16_training_on_the_cpu_lowers_the_loss(model):
    history = train(model, *loaders(model), quick_config(epochs=4, precision="bf16"))
    total = history[(history["split"] == "train") & (history["task"] == "total")]["loss"]
    assert total.iloc[-1] < total.iloc[0]
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast never touches the weights


def test_an_empty_loader_or_one_without_labels_is_refused(model):
    empty = make_loader(FRAME.head(0), model.tokenize, batch_size=4)
    with pytest.raises(ValueError, match="train_loader is empty"):
        train(model, empty, None, quick_config())
    unlabelled = make_loader(FRAME.assign(topic=pd.NA, sentiment=pd.NA), model.tokenize, batch_size=4)
    with pytest.raises(ValueError, match="no batch of train_loader carried a label"):
        train(model, unlabelled, None, quick_config())


def test_a_learning_rate_that_explodes_the_loss_is_reported(model):
    with pytest.warns(RuntimeWarning, match="the training loss grew from"):
        try:
            train(model, loaders(model)[0], None, quick_config(epochs=6, lr=1e3, head_lr=1e3, max_grad_norm=None))
        except FloatingPointError:
            pass  # it may also end in inf; the warning came first


def test_a_non_finite_gradient_stops_training_at_that_step_before_the_update(model, monkeypatch):
    weight = model.heads["topic"].weight
    backward_passes, weights_before = [], []

    def poison_third_gradient(gradient):
        backward_passes.append(1)
        weights_before.append(weight.detach().clone())
        return gradient * float("inf") if len(backward_passes) == 3 else gradient

    weight.register_hook(poison_third_gradient)
    with pytest.raises(FloatingPointError, match=r"gradient norm \(inf\) is not finite; the weights were not updated "
                                                 r"at epoch 2, step 3"):
        train(model, loaders(model)[0], None, quick_config())
    assert torch.equal(weight.detach(), weights_before[2])  # the poisoned step changed nothing
    assert not torch.equal(weights_before[2], weights_before[1])  # while the steps before it did


def test_unfreeze_every_needs_gradual_unfreezing(model):
    with pytest.raises(ValueError, match="unfreeze_every is set but no gradual unfreezing was asked for"):
        train(model, loaders(model)[0], None, quick_config(unfreeze_every=2))


def test_a_weighting_of_no_loss_is_refused():
    for weighting in (Sum(["topic"]), Uncertainty(["topic"])):
        with pytest.raises(ValueError, match="no task loss to weigh"):
            weighting({})


def test_history_names_the_encoder_and_head_learning_rates(model):
    history = train(model, loaders(model)[0], None, quick_config(epochs=1, lr=1e-3, head_lr=1e-2))
    first = history[history["split"] == "train"].iloc[0]
    assert first["lr"] == pytest.approx(1e-3) and first["head_lr"] == pytest.approx(1e-2)
    history = train(model, loaders(model)[0], None, quick_config(epochs=1, lr=1e-3, head_lr=None))
    assert history[history["split"] == "train"].iloc[0]["head_lr"] == pytest.approx(1e-3)  # None: the encoder's


def test_evaluation_follows_the_inference_rule_float32_on_a_cpu_even_with_native_bf16(model, monkeypatch):
    import helpers.precision

    loader = loaders(model)[1]
    fp32 = evaluate(model, loader, precision="fp32")
    bf16 = evaluate(model, loader, precision="bf16")
    assert fp32["topic"]["loss"] != bf16["topic"]["loss"]
    monkeypatch.setattr(helpers.precision, "cpu_has_native_bf16", lambda: True)  # as on a CPU with AVX512-BF16
    assert evaluate(model, loader)["topic"]["loss"] == fp32["topic"]["loss"]


def test_auto_is_a_device_wherever_a_device_is_taken(tiny_model_dirs):
    model = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"], device="auto")
    assert model.device == pick_device("auto")
    encoder = SentenceTransformer(tiny_model_dirs["bert"], device="auto")
    assert encoder.encode("a sentence", device="auto").shape == (encoder.embedding_dim,)
    assert len(model.predict(["a sentence"])) == 1


def test_fp16_with_a_gradient_scaler_skips_overflowing_steps_and_still_learns(model, monkeypatch):
    """The path a Colab T4 takes (fp16 autocast + GradScaler), simulated on the CPU: a start scale of 2**20
    overflows fp16's range (65504), so the first steps' gradients are inf. The scaler skips those steps and
    halves its scale, rather than the run raising; then training proceeds and the loss falls."""
    scalers, updates = [], []
    monkeypatch.setattr(training_module, "autocast_dtype", lambda precision, device, training: torch.float16)

    def cpu_scaler(device, dtype):
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0**20, enabled=dtype == torch.float16))
        return scalers[-1]

    def counted_optimizer(*args):
        optimizer = make_optimizer(*args)
        optimizer.register_step_post_hook(lambda *_: updates.append(1))
        return optimizer

    make_optimizer = training_module.make_optimizer
    monkeypatch.setattr(training_module, "grad_scaler", cpu_scaler)
    monkeypatch.setattr(training_module, "make_optimizer", counted_optimizer)
    frame = pd.concat([FRAME] * 4, ignore_index=True).assign(text=lambda f: f["text"] + f.index.astype(str))
    history = train(model, make_loader(frame, model.tokenize, batch_size=4, shuffle=True, seed=1), None,
                    quick_config(epochs=4, log_every=8))
    steps = 4 * len(frame) // 4
    assert scalers[0].is_enabled() and scalers[0].get_scale() < 2.0**20  # it backed off
    assert 0 < len(updates) < steps  # some steps were skipped, the others updated the weights
    total = history[(history["split"] == "train") & (history["task"] == "total")]["loss"]
    assert total.iloc[-1] < total.iloc[0]
