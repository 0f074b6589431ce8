"""cpu_share: a generation gets the cores other processes leave free, shared with this process's own
running generations. The machine's counters are replaced by known values: the arithmetic is what is
tested; the real counters are read once to show they exist here."""

from __future__ import annotations

import pytest

from fmops.providers import cpu_share


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """A 4-core machine whose busy seconds, own CPU seconds and clock the test sets."""
    state = {"busy": 1000.0, "own": 10.0, "now": 100.0}
    monkeypatch.setattr(cpu_share, "cores", lambda: 4)
    monkeypatch.setattr(cpu_share, "_busy_seconds", lambda: state["busy"])
    monkeypatch.setattr(cpu_share.time, "process_time", lambda: state["own"])
    monkeypatch.setattr(cpu_share.time, "monotonic", lambda: state["now"])
    monkeypatch.setattr(cpu_share.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.setattr(cpu_share, "_last", None)
    monkeypatch.setattr(cpu_share, "_others", 0.0)
    monkeypatch.setattr(cpu_share, "_active", 0)
    return state


def advance(state: dict[str, float], seconds: float, *, others: float, own: float) -> None:
    """`seconds` pass with other processes on `others` cores and this one on `own`."""
    state["now"] += seconds
    state["busy"] += (others + own) * seconds
    state["own"] += own * seconds


def test_an_idle_machine_gives_one_generation_every_core(machine: dict[str, float]) -> None:
    with cpu_share.generating():
        assert cpu_share.threads() == 4
        advance(machine, 1.0, others=0.0, own=4.0)  # its own threads' use does not count against it
        assert cpu_share.threads() == 4


def test_other_processes_load_takes_their_cores(machine: dict[str, float]) -> None:
    with cpu_share.generating():
        cpu_share.threads()
        advance(machine, 1.0, others=2.6, own=1.0)
        assert cpu_share.threads() == 1  # 4 - 2.6 = 1.4 cores free
        advance(machine, 1.0, others=1.2, own=1.0)
        assert cpu_share.threads() == 3
        advance(machine, 1.0, others=7.0, own=0.0)
        assert cpu_share.threads() == 1  # never fewer than one


def test_concurrent_generations_share_the_free_cores(machine: dict[str, float]) -> None:
    with cpu_share.generating(), cpu_share.generating():
        assert cpu_share.threads() == 2
        with cpu_share.generating():
            assert cpu_share.threads() == 1
    with cpu_share.generating():
        assert cpu_share.threads() == 4


def test_the_first_decision_trusts_the_load_average(
    machine: dict[str, float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cpu_share.os, "getloadavg", lambda: (3.5, 2.0, 1.0))
    with cpu_share.generating():
        assert cpu_share.threads() == 1


def test_a_window_shorter_than_the_sample_keeps_the_last_figure(machine: dict[str, float]) -> None:
    with cpu_share.generating():
        cpu_share.threads()
        advance(machine, 1.0, others=3.0, own=0.0)
        assert cpu_share.threads() == 1
        advance(machine, 0.1, others=0.0, own=0.0)  # too short to tell: still 3 cores busy elsewhere
        assert cpu_share.threads() == 1


def test_the_real_counters_are_readable_here() -> None:
    assert cpu_share._busy_seconds() is not None
    assert 1 <= (cpu_share.threads() or 0) <= cpu_share.cores()
