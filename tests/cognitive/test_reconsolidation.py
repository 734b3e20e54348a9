"""Reconsolidation with an injected clock: every edge of the window (never recalled,
too young, too soon, inside, too late), the inverted-U plasticity and the blend it
weights, versions kept (bounded) and persisted across a reopen, and a refused
update, for any reason, changes nothing."""
import math

import numpy as np
import pytest

import engram
from engram import errors
from engram.cognition.reconsolidation import Version
from engram.observe.tracing import KINDS, Cursor
from engram.store import snapfile

DIM = 8
S = 1_000_000_000          # ns per second
H = 3600 * S
T0 = 1_700_000_000 * S     # a fixed wall-clock start


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, ns):
        self.now += ns


def fresh(eng, name="labile", age=25 * H, tier="hot"):
    """A space with a fake clock and memory 0 recalled ``age`` after it was made."""
    m = eng.space(name)
    m.clock = clock = Clock()
    v = np.random.default_rng(1).standard_normal((3, DIM))
    m.remember(v, content=["first", "other", "third"], confidence=0.8, tier=tier)
    clock.advance(age)
    assert m.recall(v[0], k=1, spread=False).ids.tolist() == [0]
    return m, clock, v


def state(m):
    g = m.get([0, 1, 2])
    return (g.vectors.tobytes(), g.content, g.confidence.tobytes(), g.access_count.tobytes(),
            [(x.vector.tobytes(), x.content, x.confidence, x.replaced_ns) for x in m.versions(0)])


def reconsolidations(eng, space):
    return eng._metrics_seg.totals()["engram_reconsolidation_total"].get(space, 0)


@pytest.fixture
def eng():
    with engram.Engine(dim=DIM, workers=0, trace=True) as eng:
        yield eng


def test_mid_window_update_blends_by_the_peak_plasticity_and_keeps_the_old_version(eng):
    m, clock, v = fresh(eng)
    before = m.get(0)
    clock.advance(int(3.5 * H))                          # the middle of the 1 h .. 6 h window
    u = np.random.default_rng(2).standard_normal(DIM)
    p = m.reconsolidate(0, vector=u, content="revised", confidence=0.2)
    assert p == pytest.approx(0.5)                       # peak_plasticity x sin(pi / 2)
    scaled = u * np.linalg.norm(v[0]) / np.linalg.norm(u)
    after = m.get(0)
    assert after.vectors[0] == pytest.approx(0.5 * v[0] + 0.5 * scaled, rel=1e-5)
    assert after.confidence[0] == pytest.approx(0.5 * 0.8 + 0.5 * 0.2)
    assert after.content == ["revised"]
    [old] = m.versions(0)
    assert isinstance(old, Version) and old.content == "first" and old.confidence == pytest.approx(0.8)
    assert old.vector.tobytes() == before.vectors[0].tobytes() and old.replaced_ns == clock.now
    assert m.get([1, 2]).content == ["other", "third"]   # the others are untouched
    assert m.recall(after.vectors[0], k=1, spread=False).ids.tolist() == [0]   # the norm was updated too
    assert reconsolidations(eng, "labile") == 1
    ev = Cursor(eng._life.tracer.ring).read()
    ev = ev[ev["kind"] == KINDS["reconsolidation"]]
    assert ev["node_a"].tolist() == [0] and ev["node_b"].tolist() == [1] and ev["strength"][0] == pytest.approx(0.5)


@pytest.mark.parametrize("since, plasticity", [
    (1 * H, 0.0),                                         # opens: the inverted U starts at 0
    (2 * H, 0.5 * math.sin(math.pi / 5)),
    (6 * H, 0.0),                                         # closes: back to 0, still inside
])
def test_window_edges_are_inside_with_the_inverted_u(eng, since, plasticity):
    m, clock, _ = fresh(eng)
    clock.advance(since)
    assert m.reconsolidate(0, confidence=0.1) == pytest.approx(plasticity, abs=1e-12)
    assert len(m.versions(0)) == 1


@pytest.mark.parametrize("age, since, reason", [
    (25 * H, 1 * H - 1, "too soon"),
    (25 * H, 0, "too soon"),
    (25 * H, 6 * H + 1, "too late"),
    (24 * H - 1, 3 * H, "too young"),                     # younger than 24 h when recalled
])
def test_outside_the_window_is_refused_with_the_reason_and_changes_nothing(eng, age, since, reason):
    m, clock, _ = fresh(eng, age=age)
    clock.advance(since)
    before = state(m)
    with pytest.raises(errors.ReconsolidationWindowError, match=reason) as info:
        m.reconsolidate(0, vector=np.ones(DIM), content="no", confidence=0.1)
    assert info.value.reason == reason
    assert state(m) == before and reconsolidations(eng, "labile") == 0


def test_never_recalled_is_refused_however_old(eng):
    m = eng.space("unrecalled")
    m.clock = clock = Clock()
    m.remember(np.ones(DIM))
    clock.advance(30 * 24 * H)
    with pytest.raises(errors.ReconsolidationWindowError, match="never recalled") as info:
        m.reconsolidate(0, confidence=0.5)
    assert info.value.reason == "never recalled" and m.versions(0) == []


def test_a_new_recall_reopens_the_window(eng):
    m, clock, v = fresh(eng)
    clock.advance(7 * H)
    with pytest.raises(errors.ReconsolidationWindowError, match="too late"):
        m.reconsolidate(0, confidence=0.5)
    m.recall(v[0], k=1, spread=False)
    clock.advance(3 * H)
    assert m.reconsolidate(0, confidence=0.5) > 0


@pytest.mark.parametrize("kwargs, error", [
    ({}, errors.InvalidInputError),                                        # nothing to apply
    ({"vector": np.ones(DIM + 1)}, errors.DimensionError),
    ({"vector": np.r_[np.ones(DIM - 1), np.nan]}, errors.NonFiniteError),
    ({"vector": np.zeros(DIM)}, errors.InvalidInputError),
    ({"vector": np.ones((2, DIM))}, errors.InvalidInputError),
    ({"confidence": 1.5}, errors.InvalidInputError),
    ({"content": 5}, errors.InvalidInputError),
    ({"vector": np.ones(DIM), "confidence": -0.1}, errors.InvalidInputError),   # one bad field: none applied
])
def test_bad_input_inside_the_window_is_refused_and_changes_nothing(eng, kwargs, error):
    m, clock, _ = fresh(eng)
    clock.advance(3 * H)
    before = state(m)
    with pytest.raises(error):
        m.reconsolidate(0, **kwargs)
    assert state(m) == before and reconsolidations(eng, "labile") == 0


def test_unknown_forgotten_and_several_ids_are_refused(eng):
    m, clock, _ = fresh(eng)
    m.forget(2)
    clock.advance(3 * H)
    for bad in (99, 2):
        with pytest.raises(errors.UnknownIdError):
            m.reconsolidate(bad, confidence=0.5)
        with pytest.raises(errors.UnknownIdError):
            m.versions(bad)
    with pytest.raises(errors.InvalidInputError, match="one memory id"):
        m.reconsolidate([0, 1], confidence=0.5)


def test_history_is_bounded_oldest_dropped_first(eng):
    m, clock, _ = fresh(eng)
    m.configure_reconsolidation(history=2)
    clock.advance(3 * H)
    for c in (0.1, 0.2, 0.3):
        m.reconsolidate(0, content=f"v{c}", confidence=c)
    assert [x.content for x in m.versions(0)] == ["v0.1", "v0.2"]      # "first" was dropped
    m.configure_reconsolidation(history=1)
    assert [x.content for x in m.versions(0)] == ["v0.2"]


def test_warm_tier_updates_stay_in_float16(eng):
    m, clock, v = fresh(eng, tier="warm")
    clock.advance(int(3.5 * H))
    m.reconsolidate(0, vector=v[1])
    scaled = v[1] * np.linalg.norm(v[0]) / np.linalg.norm(v[1])
    assert m.get(0).vectors[0] == pytest.approx(0.5 * v[0] + 0.5 * scaled, abs=5e-3)
    with pytest.raises(errors.InvalidInputError, match="float16"):
        m.reconsolidate(0, vector=np.full(DIM, 1e6))


def test_configurable_window(eng):
    m, clock, _ = fresh(eng, age=2 * H)
    m.configure_reconsolidation(min_age_s=3600, opens_after_s=0, closes_after_s=60, peak_plasticity=1.0)
    clock.advance(30 * S)
    assert m.reconsolidate(0, confidence=0.0) == pytest.approx(1.0)
    assert m.get(0).confidence[0] == pytest.approx(0.0)


@pytest.mark.parametrize("changes, message", [
    ({"opens_after_s": -1}, "opens_after_s"), ({"closes_after_s": 3600}, "later than"),
    ({"min_age_s": float("inf")}, "min_age_s"), ({"peak_plasticity": 0}, "peak_plasticity"),
    ({"peak_plasticity": 1.5}, "peak_plasticity"), ({"history": 0}, "history"), ({"history": True}, "history"),
    ({"window": 3}, "unknown reconsolidation settings"),
])
def test_bad_settings_are_refused_and_change_nothing(eng, changes, message):
    m = eng.space("strict")
    before = m.configure_reconsolidation()
    with pytest.raises(errors.InvalidInputError, match=message):
        m.configure_reconsolidation(**changes)
    assert m.configure_reconsolidation() == before


def test_versions_survive_a_reopen(tmp_path):
    with engram.Engine(path=tmp_path, dim=DIM, workers=0) as eng:
        m, clock, _ = fresh(eng)
        clock.advance(3 * H)
        m.reconsolidate(0, vector=np.arange(DIM) + 1.0, content="second", confidence=0.3)
        m.reconsolidate(0, content=None, confidence=0.9)
        before = state(m)
    with engram.Engine(path=tmp_path, dim=DIM, workers=0) as eng:
        m = eng.space("labile")
        assert state(m) == before
        assert [x.content for x in m.versions(0)] == ["first", "second"]


def test_snapshots_without_versions_still_load(tmp_path):
    with engram.Engine(path=tmp_path, dim=DIM, workers=0) as eng:
        eng.space("old").remember(np.ones(DIM))
    snap = snapfile.newest(tmp_path)
    for img in snap.spaces:                              # as written before reconsolidation existed
        img.arrays = {k: a for k, a in img.arrays.items() if not k.startswith("versions_")}
    snapfile.write(tmp_path, snap.lsn, snap.dim, snap.record_hash, snap.spaces)
    snap.close()
    with engram.Engine(path=tmp_path, dim=DIM, workers=0) as eng:
        assert len(eng.space("old")) == 1 and eng.space("old").versions(0) == []
