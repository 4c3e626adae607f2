"""SentenceTransformer.save writes the sentence-transformers format: the installed library (the reference)
loads it and computes the same vectors, and so does this project's SentenceTransformer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY
from transformers import AutoModel, AutoTokenizer, BertConfig

from helpers import TASKS, MultiTaskSentenceTransformer, SentenceTransformer, set_seed
from helpers.backbone import bundled_model_path

st_ref = pytest.importorskip("sentence_transformers")

SENTENCES = ["The striker scored twice.", "Markets fell on weak earnings, and the bank cut its forecast.",
             "a", "word " * 400]  # the last runs past every limit: truncation must match too


def reference_of(folder: Path):
    return st_ref.SentenceTransformer(str(folder), device="cpu")


def test_the_reference_library_loads_the_saved_minilm_and_computes_the_same_vectors(minilm, tmp_path):
    minilm.save(tmp_path / "encoder")
    reference = reference_of(tmp_path / "encoder")
    assert reference.max_seq_length == minilm.max_seq_length == 256
    np.testing.assert_allclose(reference.encode(SENTENCES), minilm.encode(SENTENCES), rtol=0, atol=1e-5)
    loaded = SentenceTransformer(tmp_path / "encoder")
    np.testing.assert_array_equal(loaded.encode(SENTENCES), minilm.encode(SENTENCES))


@pytest.mark.parametrize("arch", ["bert", "roberta", "distilbert"])
@pytest.mark.parametrize("pooling", ["cls", "max", "mean"])
def test_every_pooling_and_architecture_round_trips(tiny_model_dirs, tmp_path, arch, pooling):
    encoder = SentenceTransformer(tiny_model_dirs[arch], pooling=pooling, max_seq_length=12)
    encoder.save(tmp_path / "encoder")
    reference = reference_of(tmp_path / "encoder")
    assert reference.max_seq_length == 12
    assert getattr(reference[0].auto_model, "pooler", None) is None  # built without the pooler it never had
    np.testing.assert_allclose(reference.encode(SENTENCES), encoder.encode(SENTENCES), rtol=0, atol=1e-5)
    loaded = SentenceTransformer(tmp_path / "encoder")  # no pooling given: the folder's
    assert (loaded.pooling, loaded.max_seq_length) == (pooling, 12)
    np.testing.assert_array_equal(loaded.encode(SENTENCES), encoder.encode(SENTENCES))


def test_the_fine_tuned_encoder_of_a_multitask_model_is_what_gets_saved(tiny_model_dirs, tmp_path):
    set_seed(0)
    model = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"], pooling="max")
    for parameter in model.encoder.parameters():  # weights no pretrained file holds
        parameter.data += 0.01 * parameter.data.sign()
    model.encoder.save(tmp_path / "encoder")
    np.testing.assert_allclose(reference_of(tmp_path / "encoder").encode(SENTENCES),
                               model.encoder.encode(SENTENCES), rtol=0, atol=1e-5)


def test_no_normalize_module_is_written_so_vectors_keep_their_length(tiny_model_dirs, tmp_path):
    encoder = SentenceTransformer(tiny_model_dirs["bert"])
    encoder.save(tmp_path / "encoder")
    modules = json.loads((tmp_path / "encoder" / "modules.json").read_text())
    assert [module["path"] for module in modules] == ["", "1_Pooling"]
    norms = np.linalg.norm(reference_of(tmp_path / "encoder").encode(SENTENCES), axis=1)
    assert not np.allclose(norms, 1.0)


def test_a_folder_saved_by_the_reference_library_loads_with_its_pooling(tiny_model_dirs, tmp_path):
    SentenceTransformer(tiny_model_dirs["bert"], pooling="cls").save(tmp_path / "ours")
    reference = reference_of(tmp_path / "ours")
    reference.save(str(tmp_path / "theirs"))  # the installed release's own layout
    loaded = SentenceTransformer(tmp_path / "theirs")
    assert loaded.pooling == "cls"
    np.testing.assert_allclose(loaded.encode(SENTENCES), reference.encode(SENTENCES), rtol=0, atol=1e-5)


def test_the_pooling_given_wins_over_the_folders_and_other_models_pool_by_mean(tiny_model_dirs, tmp_path):
    SentenceTransformer(tiny_model_dirs["bert"], pooling="cls").save(tmp_path / "encoder")
    assert SentenceTransformer(tmp_path / "encoder", pooling="max").pooling == "max"
    assert SentenceTransformer(tiny_model_dirs["bert"]).pooling == "mean"  # a folder without modules.json
    assert SentenceTransformer().pooling == "mean"  # the bundled MiniLM declares mean
    assert MultiTaskSentenceTransformer(TASKS, tmp_path / "encoder").encoder.pooling == "cls"


@pytest.mark.parametrize("declared", [{"pooling_mode": "weightedmean"}, {"pooling_mode": ["cls", "mean"]},
                                      {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True}])
def test_a_pooling_this_encoder_does_not_compute_is_refused_unless_one_is_given(tiny_model_dirs, tmp_path, declared):
    SentenceTransformer(tiny_model_dirs["bert"]).save(tmp_path / "encoder")
    (tmp_path / "encoder" / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32,
                                                                                **declared}))
    with pytest.raises(ValueError, match=r"encoder/1_Pooling/config\.json declares pooling .* pass pooling='mean'"):
        SentenceTransformer(tmp_path / "encoder")
    assert SentenceTransformer(tmp_path / "encoder", pooling="mean").pooling == "mean"


def test_saving_again_replaces_what_save_wrote_and_keeps_the_rest(tiny_model_dirs, tmp_path):
    folder = tmp_path / "encoder"
    SentenceTransformer(tiny_model_dirs["bert"], pooling="cls").save(folder)
    (folder / "NOTES.md").write_text("mine")
    (folder / "vocab.txt").write_text("left by an earlier save")  # listed below as one of save's files
    (tmp_path / "outside.txt").write_text("not the folder's")
    marker = folder / "config_sentence_transformers.json"
    config = json.loads(marker.read_text())
    config["saved_by"]["files"] += ["vocab.txt", "../outside.txt"]
    marker.write_text(json.dumps(config))
    SentenceTransformer(tiny_model_dirs["bert"], pooling="max").save(folder)
    assert SentenceTransformer(folder).pooling == "max"
    assert (folder / "NOTES.md").read_text() == "mine"
    assert not (folder / "vocab.txt").exists()
    assert (tmp_path / "outside.txt").read_text() == "not the folder's"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["encoder", "outside.txt"]


def test_a_folder_that_save_did_not_write_is_refused(tiny_model_dirs, minilm, tmp_path):
    encoder = SentenceTransformer(tiny_model_dirs["bert"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"]).save(tmp_path / "multitask")
    encoder.save(tmp_path / "encoder")
    for folder in ("mine", "multitask"):
        before = sorted(path.name for path in (tmp_path / folder).iterdir())
        with pytest.raises(FileExistsError, match="is not empty and does not hold a saved sentence-transformers enc"):
            encoder.save(tmp_path / folder)
        assert sorted(path.name for path in (tmp_path / folder).iterdir()) == before
    with pytest.raises(FileExistsError, match="is not empty and does not hold a saved model"):
        MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"]).save(tmp_path / "encoder")


@pytest.fixture(scope="module")
def cased_folder(tmp_path_factory):
    """A tiny BERT whose tokenizer keeps case (MiniLM's vocabulary is lowercase: "The" becomes [UNK])."""
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()), do_lower_case=False)
    config = BertConfig(**TINY, vocab_size=tokenizer.vocab_size)
    folder = tmp_path_factory.mktemp("tiny-cased")
    AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def set_setting(folder: Path, name: str, value: object) -> None:
    path = folder / "sentence_bert_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), name: value}))


CASED = ["The Striker SCORED twice.", "Markets Fell", "a"]


def test_a_folder_that_asks_for_lowercase_input_gets_it_here_and_keeps_it_when_saved(cased_folder, tmp_path):
    SentenceTransformer(cased_folder).save(tmp_path / "encoder")
    set_setting(tmp_path / "encoder", "do_lower_case", True)
    reference = reference_of(tmp_path / "encoder")
    encoder = SentenceTransformer(tmp_path / "encoder")
    assert encoder.do_lower_case
    np.testing.assert_allclose(encoder.encode(CASED), reference.encode(CASED), rtol=0, atol=1e-5)
    assert not np.allclose(SentenceTransformer(cased_folder).encode(CASED), reference.encode(CASED), atol=1e-3)
    encoder.save(tmp_path / "again")
    np.testing.assert_allclose(reference_of(tmp_path / "again").encode(CASED), reference.encode(CASED), rtol=0,
                               atol=1e-5)
    model = MultiTaskSentenceTransformer(TASKS, tmp_path / "encoder")
    model.save(tmp_path / "multitask")
    loaded = MultiTaskSentenceTransformer.load(tmp_path / "multitask").encoder
    np.testing.assert_array_equal(loaded.encode(CASED), encoder.encode(CASED))


@pytest.mark.parametrize("pooling", [None, "mean"])
def test_a_folder_with_a_module_this_encoder_does_not_apply_is_refused_by_name(tiny_model_dirs, tmp_path, pooling):
    SentenceTransformer(tiny_model_dirs["bert"]).save(tmp_path / "encoder")
    modules_path = tmp_path / "encoder" / "modules.json"
    modules = json.loads(modules_path.read_text())
    modules_path.write_text(json.dumps([*modules, {"idx": 2, "name": "2", "path": "2_Dense",
                                                   "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(ValueError, match=r"encoder/modules\.json lists 2_Dense \(sentence_transformers\.models\.Dense\)"
                                         r", which this encoder does not apply"):
        SentenceTransformer(tmp_path / "encoder", pooling=pooling)
    modules_path.write_text(json.dumps([*modules, {"idx": 2, "name": "2", "path": "2_Normalize",
                                                   "type": "sentence_transformers.models.Normalize"}]))
    assert SentenceTransformer(tmp_path / "encoder", pooling=pooling).embedding_dim == 32  # Normalize: left out
