"""The `engram` command, run as a user runs it."""
import re
import subprocess
import sys

import pytest

from engram.layout import LAYOUT_HASH


def engram(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "engram.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


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
    p = engram("demo", "--limit", "800", "--query", "compress data with zlib", "-k", "3")
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
    p = engram("demo", "--limit", "800", "--query", "compress data with zlib", "-k", "5")
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
    p = engram("demo", "--limit", "50", "--query", "zlib", "-k", "1")
    assert p.returncode == 0, p.stderr
    head = p.stdout.split("memories (", 1)[0]
    assert "HashingEmbedder (engram/demo/embed.py)" in head and "hashed TF-IDF" in head
    assert "not meaning" in head and '"remove a directory tree" and "rmtree"' in head


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
