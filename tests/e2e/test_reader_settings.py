"""A reader in another process (attach, connect) recalls with the settings the owner gave
the space, published in its directory segment, until it configures its own; damaged
settings cells are a clear error, not a recall with made-up settings."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import engram
from engram.errors import SegmentError

DIM = 16


@pytest.fixture
def chain():
    rng = np.random.default_rng(0)
    with engram.Engine(dim=DIM, workers=0) as eng:
        s = eng.space("settings")
        ids = s.remember(rng.standard_normal((60, DIM)).astype(np.float32))
        s.link(ids[:-1], ids[1:], 0.9)
        yield eng, s


def recall_elsewhere(name: str) -> dict:
    code = textwrap.dedent("""
        import json, sys, engram
        s = engram.attach(sys.argv[1]).space("settings")
        r = s.recall(s.get([0]).vectors[0], k=8, budget_ms=None)
        print(json.dumps({"ids": r.ids.tolist(), "scores": r.scores.tolist(),
                          "spread_weight": s.configure_recall().spread_weight}))
    """)
    out = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("weight", [0.2, 0.95])
def test_another_process_recalls_as_the_owner_configured(chain, weight):
    eng, s = chain
    s.configure_recall(spread_weight=weight)
    mine = s.recall(s.get([0]).vectors[0], k=8, budget_ms=None)
    theirs = recall_elsewhere(eng.name)
    assert theirs["spread_weight"] == weight
    assert theirs["ids"] == mine.ids.tolist()
    assert np.allclose(theirs["scores"], mine.scores)
    # the control: with the default settings this chain answers otherwise, so the reader's
    # answer is the configured one's, not the default's
    s.configure_recall(spread_weight=engram.config.RecallConfig().spread_weight)
    default = s.recall(s.get([0]).vectors[0], k=8, budget_ms=None)
    assert not np.allclose(default.scores, mine.scores)


def test_a_reader_follows_later_changes_until_it_configures_its_own(chain):
    eng, s = chain
    with engram.attach(eng.name) as a:
        r = a.space("settings")
        s.configure_recall(spread_weight=0.3)
        assert r.configure_recall().spread_weight == 0.3
        s.configure_recall(spread_weight=0.6, seed_factor=3)
        r.recall(s.get([0]).vectors[0], k=3)
        assert (r.configure_recall().spread_weight, r.configure_recall().seed_factor) == (0.6, 3)
        r.configure_recall(spread_weight=0.1)              # its own from now on
        s.configure_recall(spread_weight=0.9)
        r.recall(s.get([0]).vectors[0], k=3)
        assert r.configure_recall().spread_weight == 0.1
        assert s.configure_recall().spread_weight == 0.9


@pytest.mark.parametrize("damage", ["count", "value"])
def test_damaged_settings_cells_are_a_clear_error(chain, damage):
    eng, s = chain
    s.configure_recall(spread_weight=0.4)
    d = s._store.dir[0]
    d["recall_seq"][0] += 1
    if damage == "count":
        d["recall_seq"][1] = 10_000
    else:
        d["recall"][0] = np.nan                            # the fan: an index into its choices
    d["recall_seq"][0] += 1
    with engram.attach(eng.name) as a, pytest.raises(SegmentError, match="'settings'.*recall settings"):
        a.space("settings").recall(s.get([0]).vectors[0], k=3)
