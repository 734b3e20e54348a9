"""Space.path: the associations that brought a spread result, fewest hops first and
then the strongest product of weights; nothing within reach gives []."""
import numpy as np
import pytest

import engram
from engram import errors


@pytest.fixture
def mem():
    with engram.Engine(dim=4, workers=0) as eng:
        m = eng.space("paths")
        m.remember(np.eye(4, dtype=np.float32)[np.arange(8) % 4] + 0.01)
        m.link([0, 0, 1, 2, 3, 6], [1, 2, 3, 3, 5, 5], [0.9, 0.5, 0.4, 0.9, 1.0, 0.2])
        yield m


def test_fewest_hops_then_strongest(mem):
    assert mem.path([0], 3) == [0, 2, 3]            # 0.5 x 0.9 beats 0.9 x 0.4
    assert mem.path([0], 5) == [0, 2, 3, 5]
    assert mem.path([0, 6], 5) == [6, 5]            # one hop beats three, however strong
    assert mem.path([0, 6], 0) == [0]               # a source is its own path
    assert mem.path([0], 5, max_hops=2) == []       # out of reach
    assert mem.path([4], 5) == []                   # no links at all


def test_paths_explain_spread_results(mem):
    res = mem.recall(np.array([1, 0, 0, 0.01], np.float32), k=6, budget_ms=None)
    seeds = res.ids[res.hops == 0]
    for i, h in zip(res.ids.tolist(), res.hops.tolist()):
        if h > 0:
            p = mem.path(seeds, i, max_hops=4)
            assert p and p[-1] == i and len(p) - 1 <= h


def test_bad_arguments_are_refused(mem):
    with pytest.raises(errors.UnknownIdError):
        mem.path([0], 99)
    with pytest.raises(errors.InvalidInputError, match="max_hops"):
        mem.path([0], 3, max_hops=0)
