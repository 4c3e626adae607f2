import pytest
from transformers import BertConfig

from helpers import TASKS, MultiTaskSentenceTransformer
from helpers.freezing import freeze
from helpers.parameters import components, module_tree, parameter_table, skeleton

HEADS = {"head: topic": (32 + 1) * 4, "head: sentiment": (32 + 1) * 2}  # Linear(32, C): (d + 1) * C


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"])


def test_components_cover_every_parameter_once(model):
    seen = [id(p) for group in components(model).values() for p in group]
    assert len(seen) == len(set(seen)) == len(list(model.parameters()))


def test_parameter_table_rows_and_total(model):
    table = parameter_table(freeze(model, "backbone"))
    assert list(table.index) == ["embeddings", "layer 0", "layer 1", *HEADS, "total"]
    assert table.loc[list(HEADS), "parameters"].tolist() == list(HEADS.values())
    assert table.loc["total", "parameters"] == sum(p.numel() for p in model.parameters())
    assert table.loc["total", "trainable"] == sum(HEADS.values())
    assert (table["trainable"] + table["frozen"] == table["parameters"]).all()


def test_module_tree_counts_and_stops_at_max_depth(model):
    lines = module_tree(model, max_depth=1).splitlines()
    total = sum(p.numel() for p in model.parameters())
    assert lines[0] == f"model: MultiTaskSentenceTransformer ({total:,} parameters)"
    assert lines[1].startswith("    encoder: SentenceTransformer (") and lines[1].endswith("submodules]")
    assert all(line.startswith("    ") for line in lines[1:]) and not any(line.startswith(" " * 8) for line in lines)


def test_bert_base_skeleton_matches_the_published_figures():
    table = parameter_table(skeleton(BertConfig(), TASKS))["parameters"]
    assert table["embeddings"] == 23_837_184 and table["layer 11"] == 7_087_872 and table["pooler"] == 590_592
    assert table["total"] == 109_482_240 + (768 + 1) * 6
