"""Space.path: the associations that brought a spread result, fewest hops first and
then the strongest product of weights; nothing within reach gives []."""
import numpy as np
import pytest

import engram
from engram import errors


@pytest.fixture
def mem():
    """Memory 0 matches the query [1, 0, 0, 0]; 4, 6 and 7 match it weakly and 1, 2, 3
    and 5 not at all, so with 4 seeds (0, 4, 6, 7) the linked 1, 2, 3 and 5 are reached
    only by spreading from 0."""
    with engram.Engine(dim=4, workers=0) as eng:
        m = eng.space("paths")
        v = np.zeros((8, 4), np.float32)
        v[:, 0] = [1, -0.5, -0.5, -0.5, 0.2, -0.5, 0.2, 0.2]
        v[[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 1, 1, 2, 3]] = 1
        m.remember(v)
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
    mem.configure_recall(seed_factor=1)             # 4 seeds for k=4: 0, 4, 6, 7
    res = mem.recall(np.array([1, 0, 0, 0], np.float32), k=4, budget_ms=None)
    seeds = res.ids[res.hops == 0]
    assert seeds.tolist() == [0]
    spread = {i: h for i, h in zip(res.ids.tolist(), res.hops.tolist()) if h > 0}
    # what only spreading from 0 reached: 1 and 2 at hop 1, 3 at hop 2 (5, at hop 3, ranks below)
    assert set(spread) <= {1, 2, 3, 5} and len(spread) >= 2 and max(spread.values()) >= 2
    links = {(0, 1), (0, 2), (1, 3), (2, 3), (3, 5), (6, 5)}     # the fixture's
    for i, h in spread.items():
        p = mem.path(seeds, i, max_hops=4)
        assert p and p[0] == 0 and p[-1] == i and len(p) - 1 <= h
        assert all(step in links for step in zip(p, p[1:]))


def test_bad_arguments_are_refused(mem):
    with pytest.raises(errors.UnknownIdError):
        mem.path([0], 99)
    with pytest.raises(errors.InvalidInputError, match="max_hops"):
        mem.path([0], 3, max_hops=0)
