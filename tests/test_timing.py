import pytest

from helpers import timing

N_ITEMS = 10


@pytest.fixture
def clock(monkeypatch):
    """A fake clock that only moves when a contender runs, by the duration that contender scripts."""
    now = [0.0]
    monkeypatch.setattr(timing, "perf_counter", lambda: now[0])
    return now


def contender(clock, name, durations, calls):
    def run():
        calls.append(name)
        clock[0] += durations[calls.count(name) - 1]
    return run


def test_warm_up_then_alternating_rounds_and_the_best_round_wins(clock):
    calls = []
    runs = {"a": contender(clock, "a", [100.0, 2.0, 1.0, 4.0], calls),  # warm-up first: never counted
            "b": contender(clock, "b", [100.0, 5.0, 5.0, 2.5], calls)}
    speed = timing.best_throughputs(runs, N_ITEMS, rounds=3)
    assert calls == ["a", "b"] * 4  # one warm-up each, then three alternating rounds
    assert speed == {"a": N_ITEMS / 1.0, "b": N_ITEMS / 2.5}


def test_contenders_keep_their_order_and_rounds_are_counted(clock):
    calls = []
    runs = {name: contender(clock, name, [1.0] * 6, calls) for name in ["z", "y", "x"]}
    assert list(timing.best_throughputs(runs, N_ITEMS, rounds=5)) == ["z", "y", "x"]
    assert calls == ["z", "y", "x"] * 6
