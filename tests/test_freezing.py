import pytest
import torch

from helpers import TASKS, MultiTaskSentenceTransformer, set_seed
from helpers.freezing import GradualUnfreezing, component_learning_rates, freeze, optimizer_groups
from helpers.parameters import parameter_table

HEAD_PARAMETERS = (32 + 1) * 4 + (32 + 1) * 2


@pytest.fixture
def model(tiny_model_dirs):
    set_seed(0)
    return MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"], dropout=0.0)


def trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train_steps(model, steps: int = 3) -> None:
    optimizer = torch.optim.AdamW(optimizer_groups(model, lr=1e-2))
    batch = model.tokenize(["one short sentence", "another, somewhat longer sentence"])
    for _ in range(steps):
        logits = model(**batch)
        loss = sum(torch.nn.functional.cross_entropy(v, torch.tensor([0, 1])) for v in logits.values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@pytest.mark.parametrize("strategy", ["none", "backbone", "embeddings", "bottom:1", "head:sentiment"])
def test_frozen_parameters_stay_bitwise_equal_and_trainable_ones_change(model, strategy):
    freeze(model, strategy)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    train_steps(model)
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert not torch.equal(p, before[name]), f"{name} is trainable but did not change"
        else:
            assert torch.equal(p, before[name]), f"{name} is frozen but changed"


def test_trainable_counts_per_strategy(model):
    table = parameter_table(freeze(model, "none"))
    total = table.loc["total", "parameters"]
    embeddings, layer = table.loc["embeddings", "parameters"], table.loc["layer 0", "parameters"]
    assert trainable(freeze(model, "none")) == total
    assert trainable(freeze(model, "backbone")) == HEAD_PARAMETERS
    assert trainable(freeze(model, "all")) == 0
    assert trainable(freeze(model, "embeddings")) == total - embeddings
    assert trainable(freeze(model, "bottom:1")) == total - embeddings - layer
    assert trainable(freeze(model, "bottom:0")) == total - embeddings
    assert trainable(freeze(model, "head:topic")) == total - (32 + 1) * 4


def test_freeze_sets_the_whole_state_and_is_not_cumulative(model):
    freeze(model, "all")
    freeze(model, "head:topic")
    assert all(p.requires_grad for p in model.encoder.parameters())
    freeze(model, "none")
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("strategy, listed", [
    ("heads", "'backbone'"), ("head:colour", r"\['head:topic', 'head:sentiment'\]"), ("bottom:9", "k in 0..2"),
    ("bottom:x", "k in 0..2"), (None, "'none'"),
])
def test_unknown_strategy_lists_the_valid_ones(model, strategy, listed):
    with pytest.raises(ValueError, match=f"unknown freezing strategy.*{listed}"):
        freeze(model, strategy)


def test_optimizer_groups_hold_only_trainable_parameters(model):
    freeze(model, "bottom:1")
    grouped = [p for group in optimizer_groups(model, lr=1e-4) for p in group["params"]]
    assert grouped and all(p.requires_grad for p in grouped)
    assert len(grouped) == len([p for p in model.parameters() if p.requires_grad])


def test_no_weight_decay_on_biases_and_layer_norm(model):
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer_groups(freeze(model, "none"), lr=1e-4, weight_decay=0.1):
        for p in group["params"]:
            decays = not (names[id(p)].endswith("bias") or "LayerNorm" in names[id(p)])
            assert group["weight_decay"] == (0.1 if decays else 0.0), names[id(p)]


def test_layer_decay_lowers_rates_with_depth(model):
    rates = component_learning_rates(model, lr=1e-3, head_lr=5e-3, layer_decay=0.5)
    assert rates == {"embeddings": 2.5e-4, "layer 0": 5e-4, "layer 1": 1e-3, "head: topic": 5e-3,
                     "head: sentiment": 5e-3}
    group_rates = {g["component"]: g["lr"] for g in optimizer_groups(model, 1e-3, 5e-3, 0.5)}
    assert group_rates == rates


def test_a_fully_frozen_model_fails_early_with_a_clear_error(model):
    with pytest.raises(ValueError, match="no trainable parameters.*freeze\\(model, 'backbone'\\)"):
        optimizer_groups(freeze(model, "all"), lr=1e-4)


def test_gradual_unfreezing_reaches_full_fine_tuning_on_schedule(model):
    schedule = GradualUnfreezing(model)
    assert trainable(model) == sum(p.numel() for p in model.parameters())  # building it changes nothing
    schedule.begin()
    optimizer = torch.optim.AdamW(optimizer_groups(model, lr=1e-3))
    assert trainable(model) == HEAD_PARAMETERS
    assert schedule.unfreeze_next(optimizer, lr=1e-3, layer_decay=0.5) == ["layer 1"]
    assert schedule.unfreeze_next(optimizer, lr=1e-3, layer_decay=0.5) == ["layer 0"]
    assert not schedule.done
    assert schedule.unfreeze_next(optimizer, lr=1e-3, layer_decay=0.5) == ["embeddings"]
    assert schedule.done and schedule.unfreeze_next(optimizer, lr=1e-3) == []
    assert trainable(model) == sum(p.numel() for p in model.parameters())
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert in_optimizer == {id(p) for p in model.parameters()}
    rates = {g["component"]: g["lr"] for g in optimizer.param_groups}
    assert rates["layer 1"] == 1e-3 and rates["layer 0"] == 5e-4 and rates["embeddings"] == 2.5e-4
