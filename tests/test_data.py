"""The loader refuses bad rows with errors that say where and what; labels map from the spec."""

import pandas as pd
import pytest
import torch

from helpers import IGNORE_INDEX, TASKS, SentenceDataset, label_maps, label_portions, load_corpus, make_loader
from helpers.data import LengthGroupedBatches, load_texts

GOOD = "text,topic,sentiment,split\nA fine day for the home team,sports,positive,train\n"


def write(tmp_path, text: str, encoding: str = "utf-8"):
    path = tmp_path / "corpus.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_good_file_loads(tmp_path):
    frame = load_corpus(write(tmp_path, GOOD))
    assert frame.to_dict("records") == [{"text": "A fine day for the home team", "split": "train",
                                         "topic": "sports", "sentiment": "positive"}]


@pytest.mark.parametrize("row, message", [
    ("Ok text here,sports,happy,train", r"line 3, column 'sentiment': 'happy' is not allowed; allowed: \['negative', "),
    ("Ok text here,weather,positive,train", r"line 3, column 'topic': 'weather'.*'sci_tech'\]"),
    ("Ok text here,sports,positive,dev", r"line 3, column 'split': 'dev' is not allowed; allowed: \['train', 'val'"),
    (",sports,positive,train", r"line 3, column 'text': '' is not allowed; every text must contain words"),
    ("'   ',sports,positive,train".replace("'", '"'), r"line 3, column 'text': '   '"),
    ("A fine day for the home team,sports,positive,val", r"line 3, column 'text'.*repeats line 2"),
])
def test_bad_rows_name_file_line_column_and_value(tmp_path, row, message):
    path = write(tmp_path, GOOD + row + "\n")
    with pytest.raises(ValueError, match=message) as error:
        load_corpus(path)
    assert str(path) in str(error.value)


def test_missing_column_lists_what_is_required(tmp_path):
    path = write(tmp_path, "text,topic,split\nSome text,sports,train\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['sentiment'\]; found \['text', 'topic', 'split'\]"):
        load_corpus(path)


def test_non_utf8_file_is_refused(tmp_path):
    path = write(tmp_path, GOOD + "Café crème,world,positive,train\n", encoding="latin-1")
    with pytest.raises(ValueError, match=r"is not UTF-8.*save the file with UTF-8"):
        load_corpus(path)


def test_empty_label_is_a_missing_label_and_becomes_ignore_index(tmp_path):
    frame = load_corpus(write(tmp_path, GOOD + "No topic given here,,negative,train\n"))
    assert pd.isna(frame.at[1, "topic"])
    dataset = SentenceDataset(frame)
    assert dataset[1]["labels"] == {"topic": IGNORE_INDEX, "sentiment": 0}


def test_label_maps_come_from_the_spec_not_the_data(tmp_path):
    frame = load_corpus(write(tmp_path, GOOD))  # only 'sports' and 'positive' occur
    assert label_maps() == {"topic": {"world": 0, "sports": 1, "business": 2, "sci_tech": 3},
                            "sentiment": {"negative": 0, "positive": 1}}
    assert SentenceDataset(frame)[0]["labels"] == {"topic": 1, "sentiment": 1}


def test_dataset_refuses_labels_outside_the_spec():
    frame = pd.DataFrame({"text": ["x y z"], "split": ["train"], "topic": ["weather"], "sentiment": ["positive"]})
    with pytest.raises(ValueError, match="labels outside the task spec.*weather"):
        SentenceDataset(frame)


def test_collate_pads_to_the_longest_in_the_batch_and_stacks_labels(minilm):
    frame = pd.DataFrame({"text": ["short one", "a noticeably longer sentence than the first", "mid length one"],
                          "split": "train", "topic": ["world", pd.NA, "business"],
                          "sentiment": ["negative", "positive", pd.NA]})
    batch = next(iter(make_loader(frame, minilm.tokenize, TASKS, batch_size=3)))
    longest = max(len(minilm.tokenizer(t)["input_ids"]) for t in frame["text"])
    assert batch["input_ids"].shape == (3, longest) == batch["attention_mask"].shape
    assert torch.equal(batch["labels"]["topic"], torch.tensor([0, IGNORE_INDEX, 2]))
    assert torch.equal(batch["labels"]["sentiment"], torch.tensor([0, 1, IGNORE_INDEX]))


def test_shuffling_is_seeded(minilm, corpus):
    frame = corpus.head(640)
    first = [b["input_ids"][0, :5].tolist() for b in make_loader(frame, minilm.tokenize, shuffle=True, seed=3)]
    again = [b["input_ids"][0, :5].tolist() for b in make_loader(frame, minilm.tokenize, shuffle=True, seed=3)]
    other = [b["input_ids"][0, :5].tolist() for b in make_loader(frame, minilm.tokenize, shuffle=True, seed=4)]
    assert first == again != other


def test_length_grouped_batches_cover_every_row_once_with_little_padding():
    lengths = [(i * 37) % 101 + 1 for i in range(1000)]
    batches = list(LengthGroupedBatches(lengths, batch_size=32, seed=0))
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert len(batches) == len(LengthGroupedBatches(lengths, 32)) == 32
    padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    random_order = torch.randperm(1000, generator=torch.Generator().manual_seed(0)).tolist()
    random_batches = [random_order[i:i + 32] for i in range(0, 1000, 32)]
    random_padding = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in random_batches)
    assert padding < 0.2 * random_padding


def test_label_portions_name_which_labels_a_row_carries():
    frame = pd.DataFrame({"text": list("abcd"), "topic": ["world", pd.NA, "sports", pd.NA],
                          "sentiment": ["positive", "negative", pd.NA, pd.NA]})
    assert label_portions(frame).tolist() == ["aligned", "sentiment only", "topic only", "unlabelled"]
    three = {**TASKS, "urgency": ["low", "high"]}
    frame["urgency"] = ["low", "high", "high", pd.NA]
    assert label_portions(frame, three).tolist() == ["aligned", "sentiment + urgency", "topic + urgency",
                                                     "unlabelled"]


def test_line_numbers_count_the_lines_of_a_quoted_field_that_spans_several(tmp_path):
    spanning = '"A match report\nover two lines",sports,positive,train\n\n'  # and a blank line after it
    path = write(tmp_path, GOOD + spanning + "Ok text here,sports,happy,train\n")
    with pytest.raises(ValueError, match=r"line 6, column 'sentiment': 'happy'"):
        load_corpus(path)


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR (old Mac)"])
def test_every_line_ending_reads_the_same_rows_and_the_same_line_numbers(tmp_path, ending):
    rows = [GOOD.strip(), '"A match report' + ending + 'over two lines",sports,positive,train', "Ok text,world,,val"]
    frame = load_corpus(write(tmp_path, ending.join(rows) + ending))
    assert frame["text"].tolist() == ["A fine day for the home team", "A match report\nover two lines", "Ok text"]
    assert frame["split"].tolist() == ["train", "train", "val"]
    path = write(tmp_path, ending.join([*rows, "Bad one,sports,happy,train"]) + ending)
    with pytest.raises(ValueError, match=r"line 6, column 'sentiment': 'happy'"):
        load_corpus(path)


def test_lines_of_only_spaces_are_skipped_and_not_counted_wrong(tmp_path):
    path = write(tmp_path, GOOD + "   \n\t\nOk text here,sports,happy,train\n")
    with pytest.raises(ValueError, match=r"line 5, column 'sentiment': 'happy'"):
        load_corpus(path)


def test_texts_to_label_keep_their_columns_and_may_repeat(tmp_path):
    frame = load_texts(write(tmp_path, "id,text\n7,Good film\n8,Good film\n9,Bad food\n"))
    assert frame.to_dict("list") == {"id": ["7", "8", "9"], "text": ["Good film", "Good film", "Bad food"]}


@pytest.mark.parametrize("content, message", [
    ("id,text\n", r"has a header but no rows; add one row per sentence"),
    ("id,sentence\n1,Good film\n", r"lacks column\(s\) \['text'\]; found \['id', 'sentence'\]"),
    ("id,text\n1,Good film\n2,  \n", r"line 3, column 'text': '  ' is not allowed; every text must contain words"),
    ("", r"is empty; it needs a header line"),
])
def test_texts_to_label_are_checked(tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        load_texts(write(tmp_path, content))


def portion_frame(n: int = 200) -> pd.DataFrame:
    """Rows of three portions (both labels, sentiment only, topic only), lengths spread over each."""
    kinds = [("world", "positive"), (pd.NA, "negative"), ("sports", pd.NA)]
    return pd.DataFrame({"text": [f"row {i} " + "word " * ((i * 7) % 23) for i in range(n)],
                         "topic": [kinds[i % 3][0] for i in range(n)],
                         "sentiment": [kinds[i % 3][1] for i in range(n)]})


def batch_rows(loader) -> list[list[int]]:
    return [list(batch) for batch in loader.batch_sampler]


def test_portion_batches_never_mix_portions_and_cover_every_row_once():
    frame = portion_frame()
    loader = make_loader(frame, str.split, shuffle=True, batching="portion", batch_size=16)
    batches = batch_rows(loader)
    portions = label_portions(frame).tolist()
    assert all(len({portions[i] for i in batch}) == 1 for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(len(frame)))
    per_portion = pd.Series(portions).value_counts()
    assert len(batches) == len(loader) == sum(-(-n // 16) for n in per_portion)
    first = [portions[batch[0]] for batch in batches]
    assert len(set(first[:6])) > 1  # the portions' batches are shuffled together, not one portion after another


def test_length_batches_mix_portions_and_random_batches_do_not_sort_by_length():
    frame = portion_frame()
    portions = label_portions(frame).tolist()
    mixed = batch_rows(make_loader(frame, str.split, shuffle=True, batch_size=16))
    assert any(len({portions[i] for i in batch}) > 1 for batch in mixed)
    lengths = frame["text"].str.len().tolist()

    def spread(batches: list[list[int]]) -> float:
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)

    random = batch_rows(make_loader(frame, str.split, shuffle=True, batch_size=16, batching="random"))
    assert sorted(i for batch in random for i in batch) == list(range(len(frame)))
    assert spread(random) > 3 * spread(mixed)  # random batches span long and short sentences alike


def test_batching_is_checked_by_name_and_portion_batches_need_one_process():
    frame = portion_frame(30)
    with pytest.raises(ValueError, match=r"batching must be one of \['length', 'random', 'portion'\], got 'task'"):
        make_loader(frame, str.split, shuffle=True, batching="task")
    with pytest.raises(ValueError, match="one process"):
        make_loader(frame, str.split, shuffle=True, batching="portion", world_size=2)


def test_a_loader_keeps_the_tokenizer_and_not_the_model(tiny_model_dirs):
    """A DataLoader lives as long as a notebook keeps it; the model it tokenized for must be free to go."""
    import gc
    import weakref

    from helpers import MultiTaskSentenceTransformer
    model = MultiTaskSentenceTransformer(TASKS, tiny_model_dirs["bert"])
    frame = pd.DataFrame({"text": ["a b", "c d e"], "split": "train", "topic": ["world", "sports"],
                          "sentiment": [None, "positive"]})
    loader = make_loader(frame, model.tokenize)
    expected = model.encoder.tokenizer(["a b", "c d e"], padding=True, return_tensors="pt")["input_ids"]
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None
    assert torch.equal(next(iter(loader))["input_ids"], expected)


@pytest.mark.parametrize("shuffle", [True, False])
def test_every_pass_over_a_loader_first_hands_freed_memory_back(monkeypatch, shuffle):
    """A loop written by hand calls nothing that releases memory: its loader's passes do, once each, first."""
    import helpers.data

    events = []
    monkeypatch.setattr(helpers.data, "return_freed_memory", lambda: events.append("released"))
    loader = make_loader(portion_frame(40), lambda texts: {"n": torch.tensor(len(texts))}, shuffle=shuffle,
                         batch_size=16)
    for _ in range(2):
        for _ in loader:
            events.append("batch")
    assert isinstance(loader, torch.utils.data.DataLoader)
    assert events == ["released", "batch", "batch", "batch"] * 2
