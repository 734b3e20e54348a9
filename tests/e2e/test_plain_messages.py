"""Error messages show the values a caller passed as plain values: numpy scalars (what
indexing an array gives) appear as 5 and 1.5, never as np.int64(5) or np.float64(1.5)."""
import json

import numpy as np
import pytest

import engram
from engram import errors

DIM = 4


@pytest.fixture
def eng():
    with engram.Engine(dim=DIM, workers=0) as e:
        e.space("plain").remember(np.eye(DIM))
        yield e


def refused(call, error=errors.InvalidInputError) -> str:
    with pytest.raises(error) as info:
        call()
    return str(info.value)


def all_plain(cases) -> None:
    """Every case is refused; no message shows a numpy repr (all of them listed if any do),
    and each shows the value as given."""
    texts = [(refused(call, *error), shows) for call, shows, *error in cases]
    shown_numpy = [t for t, _ in texts if "np." in t]
    assert not shown_numpy, "\n".join(shown_numpy)
    for text, shows in texts:
        assert shows in text, text


def space_calls(mem):
    q = np.ones(DIM)
    return [
        (lambda: mem.remember(q, confidence=np.float64(1.5)), "confidence[0] = 1.5"),
        (lambda: mem.remember(np.ones((2, DIM)), confidence=[np.float32(0.5), np.float32(-0.25)]),
         "confidence[1] = -0.25"),
        (lambda: mem.remember(q, tier=np.str_("frozen")), "got 'frozen'"),
        (lambda: mem.link(0, 1, np.float64(1.5)), "weights[0] = 1.5"),
        (lambda: mem.recall(q, k=np.int64(0)), "got 0"),
        (lambda: mem.recall(q, budget_ms=np.float64(-1.5)), "got -1.5"),
        (lambda: mem.recall(q, spread=np.int64(1)), "got 1"),
        (lambda: mem.spread({0: np.float64(2.5)}), "= 2.5"),
        (lambda: mem.spread([0], max_depth=np.int64(300)), "got 300"),
        (lambda: mem.spread([0], decay=np.float64(1.5)), "got 1.5"),
        (lambda: mem.spread([0], threshold=np.float32(-0.5)), "got -0.5"),
        (lambda: mem.spread([0], fan=np.str_("up")), "got 'up'"),
        (lambda: mem.path([0], 1, max_hops=np.int64(0)), "got 0"),
        (lambda: mem.configure_recall(decay=np.float64(1.5)), "got 1.5"),
        (lambda: mem.configure_recall(seed_factor=np.int64(100)), "got 100"),
        (lambda: mem.configure_recall(spread_weight=np.float32(2.5)), "got 2.5"),
        (lambda: mem.configure_recall(mode=np.str_("walk")), "got 'walk'"),
        (lambda: mem.configure_recall(priming=np.int64(2)), "got 2"),
        (lambda: mem.configure_interference(threshold=np.float64(1.5)), "got 1.5"),
        (lambda: mem.configure_reconsolidation(history=np.int64(0)), "got 0"),
    ]


def test_space_calls_show_plain_values(eng):
    mem = eng.space("plain")
    before = (len(mem), mem.configure_recall(), mem.configure_interference(), mem.configure_reconsolidation())
    all_plain(space_calls(mem))
    assert (len(mem), mem.configure_recall(), mem.configure_interference(),
            mem.configure_reconsolidation()) == before          # refused calls changed nothing


def test_engine_calls_show_plain_values(eng):
    all_plain([
        (lambda: eng.space(np.str_("A")), "name 'A'", errors.InvalidSpaceNameError),
        (lambda: engram.Engine(dim=np.int64(0)), "got 0"),
        (lambda: engram.Engine(dim=4, workers=np.int64(-2)), "got -2"),
        (lambda: engram.Engine(dim=4, workers=0, routing=np.str_("any")), "got 'any'"),
        (lambda: engram.Engine(dim=4, workers=0, trace=np.float64(1.5)), "got 1.5"),
        (lambda: engram.TraceConfig(sample=np.float64(1.5)).check(), "got 1.5"),
        (lambda: engram.TraceConfig(ring_size=np.int64(100)).check(), "got 100"),
        (lambda: eng.configure_workers(steal_min_edges=np.int64(-1)), "got -1"),
    ])


def test_kernel_calls_show_plain_values():
    k = engram.kernels.backend("numpy")
    rows = np.eye(DIM, dtype=np.float32)
    ones = np.ones(2, np.float32)
    all_plain([
        (lambda: k.cosine_topk(rows[0], rows, np.int64(-1)), "got -1"),
        (lambda: k.decay(ones, ones, "power", beta=np.float64(-1.5)), "got -1.5"),
        (lambda: k.decay(ones, ones, np.str_("linear")), "'linear'"),
        (lambda: k.crc32c(b"x", crc=np.int64(-1)), "got -1"),
        (lambda: engram.kernels.backend(np.str_("fortran")), "'fortran'", errors.KernelError),
    ])


def test_numpy_values_that_are_right_are_taken_as_plain_values(eng):
    """A setting given as a numpy scalar is kept as the Python value (a snapshot writes JSON)."""
    mem = eng.space(np.str_("numpy-named"))
    assert type(mem.name) is str and eng.spaces == ["numpy-named", "plain"]
    cfg = mem.configure_recall(max_depth=np.int64(3), decay=np.float32(0.5), priming=np.bool_(True))
    assert cfg.spread.max_depth == 3 and cfg.spread.decay == 0.5 and cfg.priming is True
    json.dumps(cfg.settings())
    assert mem.configure_reconsolidation(history=np.int64(3)).history == 3


def test_shown_renders_numpy_values_plainly():
    assert [errors.shown(v) for v in (np.int64(5), np.float64(1.5), np.float32(0.1), np.str_("x"), np.bool_(True),
                                       np.arange(2), [np.int64(1)], (np.int8(2),), {"a": np.float64(2.0)})] == \
        ["5", "1.5", "0.1", "'x'", "True", "[0, 1]", "[1]", "(2,)", "{'a': 2.0}"]
    assert errors.shown("x") == "'x'" and errors.shown(None) == "None"
