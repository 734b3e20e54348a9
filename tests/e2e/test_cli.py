"""The `engram` command, run as a user runs it."""
import subprocess
import sys

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


def test_demo_builds_a_memory_and_answers():
    p = engram("demo", "--limit", "800", "--query", "compress data with zlib", "-k", "3")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "memories" in out and "associations" in out
    assert "? compress data with zlib" in out
    answer = out.split("? compress data with zlib", 1)[1].splitlines()[1:4]
    assert len(answer) == 3 and all(line.strip()[0].isdigit() for line in answer), answer
    assert "recall latency over" in out and "P95" in out
    assert "parsing modules" in p.stderr          # progress goes to stderr


def test_no_command_prints_help():
    p = engram()
    assert p.returncode == 2 and "demo" in p.stdout
