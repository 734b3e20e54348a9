"""Interference at remember time: near-duplicates weaken each other by the documented
model (checked against values computed here by hand), dissimilar memories and
switched-off spaces are untouched, every event is counted and traced, and bad
settings are refused without changing anything."""
import math

import numpy as np
import pytest

import engram
from engram import errors
from engram.observe.tracing import KINDS, Cursor

DIM = 16
P, R, T = 0.2, 0.1, 0.9          # the default rates and threshold


def unit(i):
    return np.eye(DIM)[i]


def near(i, j, cos):
    """A vector at cosine ``cos`` to unit(i), leaning towards unit(j)."""
    return cos * unit(i) + math.sqrt(1 - cos * cos) * unit(j)


def e(cos):
    return (cos - T) / (1 - T)


def counts(eng, space):
    return eng._metrics_seg.totals()["engram_interference_total"].get(space, {})


@pytest.fixture
def eng():
    with engram.Engine(dim=DIM, workers=0, trace=True) as eng:
        yield eng


def test_off_by_default_changes_nothing(eng):
    m = eng.space("quiet")
    m.remember(unit(0), confidence=0.8)
    m.remember(unit(0), confidence=0.9)                  # an exact duplicate
    assert m.get([0, 1]).confidence.tolist() == pytest.approx([0.8, 0.9])
    assert counts(eng, "quiet") == {"proactive": 0, "retroactive": 0, "fan": 0}


def test_near_duplicates_weaken_each_other_by_the_model(eng):
    m = eng.space("dupes")
    m.configure_interference(proactive=True, retroactive=True)
    old = m.remember([near(0, 2, 0.98), near(0, 1, 0.94), unit(5)], confidence=[0.8, 0.7, 0.6])
    m.remember(unit(7), confidence=0.5, tier="warm")      # another tier, dissimilar
    new = m.remember([unit(0), unit(9)], confidence=0.9)  # unit(0): two competitors; unit(9): none
    conf = m.get(np.r_[old, 3, new]).confidence
    load = 1 - (1 - e(0.98)) * (1 - e(0.94))
    assert conf[0] == pytest.approx(0.8 * (1 - R * e(0.98)), rel=1e-5)
    assert conf[1] == pytest.approx(0.7 * (1 - R * e(0.94)), rel=1e-5)
    assert conf[2] == pytest.approx(0.6) and conf[3] == pytest.approx(0.5)    # dissimilar: untouched
    assert conf[4] == pytest.approx(0.9 * (1 - P * load), rel=1e-5)
    assert conf[5] == pytest.approx(0.9)
    assert counts(eng, "dupes") == {"proactive": 1, "retroactive": 2, "fan": 0}
    ev = Cursor(eng._life.tracer.ring).read()
    ev = ev[ev["kind"] == KINDS["interference"]]
    got = {(int(a), int(b)): (float(v), float(s)) for a, b, v, s in ev[["node_a", "node_b", "value", "strength"]]}
    assert set(got) == {(4, 0), (0, 4), (1, 4)}           # weakened memory, its closest competitor
    assert got[(4, 0)][0] == pytest.approx(conf[4], rel=1e-5) and got[(4, 0)][1] == pytest.approx(0.98, rel=1e-5)
    assert got[(1, 4)][1] == pytest.approx(0.94, rel=1e-5)


def test_a_batch_adds_up_on_an_old_memory_and_the_warm_tier_counts(eng):
    m = eng.space("batch")
    m.configure_interference(retroactive=True)
    m.remember(unit(0), confidence=0.8, tier="warm")
    m.remember([near(0, 1, 0.99), near(0, 2, 0.95)], confidence=0.9)
    load = 1 - (1 - e(0.99)) * (1 - e(0.95))
    got = m.get([0, 1, 2]).confidence
    assert got[0] == pytest.approx(0.8 * (1 - R * load), rel=1e-3)   # f16 rows: cosines to ~1e-3
    assert got[1:].tolist() == pytest.approx([0.9, 0.9])            # proactive is off
    assert counts(eng, "batch") == {"proactive": 0, "retroactive": 1, "fan": 0}


def test_only_proactive_when_retroactive_is_off(eng):
    m = eng.space("pro-only")
    m.configure_interference(proactive=True)
    m.remember(unit(0), confidence=0.8)
    m.remember(unit(0), confidence=0.9)
    assert m.get([0, 1]).confidence.tolist() == pytest.approx([0.8, 0.9 * (1 - P)])
    assert counts(eng, "pro-only")["retroactive"] == 0


def test_confidence_never_rises_and_never_drops_below_the_floor(eng):
    m = eng.space("floor")
    m.configure_interference(proactive=True, retroactive=True, proactive_rate=1.0, retroactive_rate=1.0, floor=0.1)
    m.remember([unit(0), unit(1)], confidence=[0.5, 0.05])     # 0.05: already below the floor
    m.remember([unit(0), unit(1)], confidence=[0.04, 1.0])
    assert m.get([0, 1, 2, 3]).confidence.tolist() == pytest.approx([0.1, 0.05, 0.04, 0.1])


def test_forgotten_and_below_threshold_memories_do_not_interfere(eng):
    m = eng.space("gone")
    m.configure_interference(proactive=True, retroactive=True, threshold=0.95)
    m.remember([unit(0), near(1, 2, 0.94)], confidence=0.8)
    m.forget(0)
    m.remember([unit(0), unit(1)], confidence=0.9)
    assert m.get([1, 2, 3]).confidence.tolist() == pytest.approx([0.8, 0.9, 0.9])
    assert counts(eng, "gone") == {"proactive": 0, "retroactive": 0, "fan": 0}


def test_switching_off_again_stops_it(eng):
    m = eng.space("switch")
    m.configure_interference(proactive=True, retroactive=True)
    m.configure_interference(proactive=False, retroactive=False)
    m.remember([unit(0), unit(0)], confidence=0.8)
    m.remember(unit(0), confidence=0.8)
    assert m.get([0, 1, 2]).confidence.tolist() == pytest.approx([0.8] * 3)


@pytest.mark.parametrize("changes, message", [
    ({"threshold": 1.0}, "threshold"), ({"threshold": -0.1}, "threshold"), ({"threshold": float("nan")}, "threshold"),
    ({"proactive_rate": 1.5}, "proactive_rate"), ({"retroactive_rate": "0.1"}, "retroactive_rate"),
    ({"floor": -1}, "floor"), ({"competitors": 0}, "competitors"), ({"competitors": 2.0}, "competitors"),
    ({"proactive": "yes"}, "proactive"), ({"threshhold": 0.9}, "unknown interference settings"),
])
def test_bad_settings_are_refused_and_change_nothing(eng, changes, message):
    m = eng.space("strict")
    before = m.configure_interference(proactive=True)
    with pytest.raises(errors.InvalidInputError, match=message):
        m.configure_interference(retroactive=True, **changes)
    assert m.configure_interference() == before


def test_a_rejected_remember_changes_nothing_even_with_interference_on(eng):
    m = eng.space("reject")
    m.configure_interference(proactive=True, retroactive=True)
    m.remember(unit(0), confidence=0.8)
    with pytest.raises(errors.NonFiniteError):
        m.remember([unit(0), np.full(DIM, np.nan)])
    assert len(m) == 1 and m.get(0).confidence.tolist() == pytest.approx([0.8])
    assert counts(eng, "reject")["retroactive"] == 0
