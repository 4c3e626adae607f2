"""Progress bars are text on standard output, so a saved notebook keeps their final state."""

from helpers import SentenceTransformer
from helpers.progress import progress_bar


def test_a_bar_writes_its_final_state_to_stdout(capsys):
    for _ in progress_bar(range(7), desc="work"):
        pass
    out, err = capsys.readouterr()
    assert err == "" and out.rstrip().split("\r")[-1].startswith("work: 100%") and "7/7" in out


def test_encode_shows_its_bar_on_stdout_when_asked(tiny_model_dirs, capsys):
    SentenceTransformer(tiny_model_dirs["bert"]).encode(["a", "b", "c"], batch_size=1, show_progress_bar=True)
    out, err = capsys.readouterr()
    assert "Batches: 100%" in out and "3/3" in out and err == ""


def test_a_listing_is_a_dedented_python_code_block():
    from helpers import MultiTaskSentenceTransformer
    from helpers.listing import source_listing

    text = source_listing(MultiTaskSentenceTransformer.forward, source_listing).data
    assert text.startswith("```python\ndef forward(self") and text.endswith("\n```")
    assert "\n\ndef source_listing(" in text
