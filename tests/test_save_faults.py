"""Faults leave models as they were: a failed save keeps the saved model, a failed encode keeps mode and device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import nn

from helpers import TASKS, MultiTaskSentenceTransformer, multitask, saving, set_seed

DISK_FULL = "No space left on device"


def fail(*args, **kwargs):
    raise OSError(28, DISK_FULL)


def half_written_weights(state, path, metadata=None):
    Path(path).write_bytes(b"\0" * 100)
    fail()


def fail_json_file(monkeypatch, name: str, module=multitask) -> None:
    write_json = module.write_json
    monkeypatch.setattr(module, "write_json", lambda path, data: fail() if path.name == name
                        else write_json(path, data))


def fail_rename(monkeypatch, source_matches) -> None:
    rename = os.rename
    monkeypatch.setattr(os, "rename", lambda source, target: fail() if source_matches(Path(source))
                        else rename(source, target))


# Each stage makes one step of save() fail, as a full disk would; the target folder is always named "m".
STAGES = {
    "backbone-config": lambda mp, model: mp.setattr(type(model.encoder.backbone.config), "save_pretrained", fail),
    "tokenizer": lambda mp, model: mp.setattr(type(model.encoder.tokenizer), "save_pretrained", fail),
    "sentence-bert-config": lambda mp, model: fail_json_file(mp, "sentence_bert_config.json"),
    "weights": lambda mp, model: mp.setattr(multitask, "save_file", fail),
    "weights-half-written": lambda mp, model: mp.setattr(multitask, "save_file", half_written_weights),
    "config": lambda mp, model: fail_json_file(mp, "config.json", saving),  # the marker, written by helpers.saving
    "rename-old-aside": lambda mp, model: fail_rename(mp, lambda source: source.parent.name == "m"),
    "rename-new-in": lambda mp, model: fail_rename(mp, lambda source: ".tmp-" in str(source)),
}


@pytest.fixture(scope="module")
def old(tiny_model_dirs) -> MultiTaskSentenceTransformer:
    set_seed(0)
    return MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"], hidden_dim=8)


@pytest.fixture(scope="module")
def new(tiny_model_dirs) -> MultiTaskSentenceTransformer:
    set_seed(1)
    return MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"], hidden_dim=8)


def files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def assert_loads_as(folder: Path, model: MultiTaskSentenceTransformer) -> None:
    loaded = MultiTaskSentenceTransformer.load(folder).state_dict()
    expected = model.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[name], expected[name]) for name in expected)


def saved_with_user_files(model: MultiTaskSentenceTransformer, target: Path) -> None:
    """``model`` saved in ``target``, then a user's notes and a folder of their own added beside it."""
    model.save(target)
    (target / "NOTES.md").write_text("trained on the March export")
    (target / "plots").mkdir()
    (target / "plots" / "curve.txt").write_text("0.9")


@pytest.mark.parametrize("stage", STAGES)
def test_failed_save_keeps_the_saved_model_bit_identical_and_a_retry_succeeds(old, new, tmp_path, monkeypatch, stage):
    target = tmp_path / "m"
    saved_with_user_files(old, target)
    before = files(target)
    STAGES[stage](monkeypatch, new)
    with pytest.raises(OSError, match=DISK_FULL):
        new.save(target)
    monkeypatch.undo()
    assert files(target) == before
    assert [path.name for path in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind
    assert_loads_as(target, old)
    new.save(target)
    assert_loads_as(target, new)
    assert [path.name for path in tmp_path.iterdir()] == ["m"]


def test_a_save_over_a_saved_model_keeps_the_files_it_did_not_write(old, new, tmp_path):
    target = tmp_path / "m"
    saved_with_user_files(old, target)
    user_files = {name: data for name, data in files(target).items() if name.startswith(("NOTES", "plots"))}
    new.save(target)
    assert_loads_as(target, new)
    assert {name: data for name, data in files(target).items() if name.startswith(("NOTES", "plots"))} == user_files


def count_renames(monkeypatch, fail_from: int | None = None, fail_until: int | None = None) -> list[int]:
    """Count ``os.rename`` calls; those numbered ``fail_from`` to ``fail_until`` (from 1) fail as a full disk."""
    rename, calls = os.rename, [0]

    def counted(source, target):
        calls[0] += 1
        if fail_from is not None and fail_from <= calls[0] <= (fail_until or fail_from):
            fail()
        rename(source, target)

    monkeypatch.setattr(os, "rename", counted)
    return calls


def renames_of_a_save(model, folder: Path, monkeypatch) -> int:
    with monkeypatch.context() as context:
        calls = count_renames(context)
        model.save(folder)
    return calls[0]


def test_a_failure_at_any_rename_of_the_swap_puts_every_file_back(old, new, tmp_path, monkeypatch):
    saved_with_user_files(old, tmp_path / "probe")
    renames = renames_of_a_save(new, tmp_path / "probe", monkeypatch)
    assert renames == 2 * 4  # config.json, model.safetensors, backbone/ and README.md: out, then in
    for failing in range(1, renames + 1):
        target = tmp_path / f"m{failing}"
        saved_with_user_files(old, target)
        before = files(target)
        with monkeypatch.context() as context:
            count_renames(context, fail_from=failing)
            with pytest.raises(OSError, match=DISK_FULL):
                new.save(target)
        assert files(target) == before, f"rename {failing}"
        assert_loads_as(target, old)
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_when_even_putting_back_fails_the_previous_files_stay_beside_the_folder(old, new, tmp_path, monkeypatch):
    target = tmp_path / "m"
    saved_with_user_files(old, target)
    before = files(target)
    with monkeypatch.context() as context:  # the 3rd rename fails, and so does every rename after it (the undo)
        count_renames(context, fail_from=3, fail_until=99)
        with pytest.raises(OSError, match=DISK_FULL):
            new.save(target)
    aside = [path for path in tmp_path.iterdir() if ".m.old-" in path.name]
    assert len(aside) == 1  # the two entries moved out before the failure wait there; nothing was deleted
    assert {**files(target), **files(aside[0])} == before


@pytest.mark.parametrize("stage", [stage for stage in STAGES if stage != "rename-old-aside"])
@pytest.mark.parametrize("empty_folder", [False, True], ids=["absent", "empty"])
def test_failed_save_into_a_new_folder_leaves_nothing_and_a_retry_succeeds(new, tmp_path, monkeypatch, stage,
                                                                            empty_folder):
    target = tmp_path / "m"
    if empty_folder:
        target.mkdir()
    STAGES[stage](monkeypatch, new)
    with pytest.raises(OSError, match=DISK_FULL):
        new.save(target)
    monkeypatch.undo()
    assert [path.name for path in tmp_path.iterdir()] == (["m"] if empty_folder else [])
    assert not empty_folder or not any(target.iterdir())
    new.save(target)
    assert_loads_as(target, new)


def test_save_through_a_symlink_replaces_the_linked_folder_and_keeps_the_link(old, new, tmp_path):
    old.save(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    new.save(tmp_path / "link")
    assert (tmp_path / "link").is_symlink()
    assert_loads_as(tmp_path / "real", new)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["link", "real"]


@pytest.mark.parametrize("device", ["gpu", "meta", "cuda:99", 2.5])
@pytest.mark.parametrize("training", [True, False], ids=["train-mode", "eval-mode"])
def test_encode_on_a_bad_device_leaves_mode_device_and_weights(old, device, training):
    encoder = old.encoder
    weights = {name: tensor.clone() for name, tensor in encoder.state_dict().items()}
    encoder.train(training)
    try:
        with pytest.raises(ValueError, match="device"):
            encoder.encode(["a sentence"], device=device)
        assert all(module.training == training for module in encoder.modules())
        assert {parameter.device for parameter in encoder.parameters()} == {torch.device("cpu")}
        assert all(torch.equal(tensor, weights[name]) for name, tensor in encoder.state_dict().items())
    finally:
        old.eval()


def fail_moving_to(monkeypatch, device: str) -> None:
    """``Module.to(device)`` moves one submodule, then fails: a model left half-moved."""
    to = nn.Module.to

    def failing_to(module, *args, **kwargs):
        if args and torch.device(args[0]) == torch.device(device):
            to(next(module.children()), *args, **kwargs)
            raise RuntimeError("CUDA out of memory")
        return to(module, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "to", failing_to)


def fail_forward(monkeypatch, model: nn.Module) -> None:
    monkeypatch.setattr(model, "forward", lambda *args, **kwargs: fail())


@pytest.mark.parametrize("call, fault", [
    (lambda model: model.encoder.encode(["x"], device="cpu:0"), lambda mp, model: fail_moving_to(mp, "cpu:0")),
    (lambda model: model.encoder.encode(["x"], device="cpu:0"), lambda mp, model: fail_forward(mp, model.encoder)),
    (lambda model: model.predict(["x"]), lambda mp, model: fail_forward(mp, model)),
], ids=["encode-move", "encode-forward", "predict-forward"])
def test_a_failure_inside_encode_or_predict_restores_the_mode_and_device(old, monkeypatch, call, fault):
    old.train()
    try:
        fault(monkeypatch, old)
        with pytest.raises((OSError, RuntimeError)):
            call(old)
        monkeypatch.undo()
        assert all(module.training for module in old.modules())
        assert {parameter.device for parameter in old.parameters()} == {torch.device("cpu")}
    finally:
        old.eval()


def test_mid_swap_the_folder_passes_for_a_model_only_once_it_holds_the_whole_new_one(old, new, tmp_path,
                                                                                      monkeypatch):
    """What a process killed between two renames leaves: config.json leaves first and comes back last."""
    target = tmp_path / "m"
    saved_with_user_files(old, target)
    rename, marked = os.rename, []

    def observed(source, destination):
        rename(source, destination)
        marked.append(multitask.holds_saved_model(target))

    monkeypatch.setattr(os, "rename", observed)
    new.save(target)
    assert marked == [False] * (len(marked) - 1) + [True]
    assert_loads_as(target, new)
