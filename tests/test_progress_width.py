"""A long description is cut, so the bar keeps its width within the line's 100 characters."""

from helpers.progress import MAX_DESCRIPTION, NCOLS, progress_bar, short_description


def test_a_long_description_is_cut_with_an_ellipsis_and_the_bar_keeps_its_width(capsys):
    long = "(a) topic only, sentiment head frozen, then the backbone too, for a second phase"
    with progress_bar(total=12, desc=long, unit="step") as bar:
        bar.set_postfix_str("epoch 1/1")
        bar.update(12)
    final = capsys.readouterr().out.rstrip().split("\r")[-1]
    description, rest = final.split(": 100%|", 1)
    assert description == short_description(long) and description.endswith("…")
    assert len(description) == MAX_DESCRIPTION and long.startswith(description[:-1])
    assert len(final) <= NCOLS
    assert len(rest.split("|")[0]) >= 10  # the bar itself, beside an instant run's long rate


def test_a_short_description_is_kept_whole():
    assert short_description("training") == "training"
    assert short_description("x" * MAX_DESCRIPTION) == "x" * MAX_DESCRIPTION
