"""`engram --version`, `engram cleanup`, the units `engram inspect` shows, and the one
spelling of `engram trace collect`: what a user meets in the first hour."""
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import engram
from engram import cli
from engram.observe.attach import units
from engram.store.shm import EngineName, segments_of, semaphores_of


def engram_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "engram.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_version():
    p = engram_cli("--version")
    assert p.returncode == 0 and p.stdout.startswith(f"engram {engram.__version__} (python "), p.stdout + p.stderr


OWNER = textwrap.dedent("""
    import numpy as np, engram
    eng = engram.Engine(dim=8, workers=1)
    eng.space("left-behind").remember(np.eye(8))
    eng.start_workers()                  # the board, the pool and their semaphores exist now
    print(eng.name, flush=True)
    input()
""")


def test_cleanup_removes_a_dead_engines_segments_and_refuses_a_running_one(capsys):
    p = subprocess.Popen([sys.executable, "-c", OWNER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    name = p.stdout.readline().strip()
    eng = EngineName.parse(name)
    try:
        segs, sems = segments_of(eng), semaphores_of(eng)
        assert segs and sems
        refused = engram_cli("cleanup", name)                  # its owner runs: nothing is touched
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert f"engine {name} is running (pid {eng.pid})" in refused.stderr
        assert segments_of(eng) == segs
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    # dead now (and reaped). Any Engine() starting anywhere also removes it, so look at once:
    assert cli.main(["cleanup", "--dry-run", name]) == 0
    dry = capsys.readouterr().out
    assert cli.main(["cleanup", "-v", name]) == 0
    out = capsys.readouterr().out
    assert not segments_of(eng) and not semaphores_of(eng)
    if "nothing to clean" in dry:
        pytest.skip("another process's Engine() start cleaned the dead engine first")
    if re.search(rf"^removed {name} \(pid {eng.pid}, exited\): 0 segments, 0 semaphores$", out, re.M):
        # the dry run saw them; an Engine() starting in another test process took them in between
        pytest.skip("another process's Engine() start cleaned the dead engine between the dry run and the cleanup")
    assert re.search(rf"^would remove {name} \(pid {eng.pid}, exited\): {len(segs)} segments, "
                     rf"{len(sems)} semaphores$", dry, re.M), dry
    assert re.search(rf"^removed {name} \(pid {eng.pid}, exited\): \d+ segments?, \d+ semaphores?$", out, re.M), out
    assert segs[0] in out                                       # -v names them


def test_cleanup_without_arguments_skips_running_engines():
    with engram.Engine(dim=4, workers=0) as eng:
        eng.space("still-here").remember(np.eye(4))
        before = segments_of(EngineName.parse(eng.name))
        p = engram_cli("cleanup")
        assert p.returncode == 0, p.stderr
        assert f"skipped {eng.name} (pid {EngineName.parse(eng.name).pid}, running)" in p.stdout
        assert segments_of(EngineName.parse(eng.name)) == before
        assert engram_cli("cleanup", "--dry-run").returncode == 0


def test_inspect_shows_sizes_times_and_counts_as_people_read_them():
    with engram.Engine(dim=16, workers=0) as eng:
        mem = eng.space("readable")
        mem.remember(np.random.default_rng(0).standard_normal((1500, 16)), content=[f"m{i}" for i in range(1500)])
        mem.recall(mem.get(1234).vectors[0], k=1)
        p = engram_cli("inspect", eng.name, "--space", "readable", "--node", "1234")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    nodes = next(line for line in out.splitlines() if ".readable.nodes." in line)
    assert re.search(r"count 1,500 / capacity [\d,]+, \d+(\.\d)? KiB, created \d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
                     r"\(\d+ s ago\), layout 0x[0-9a-f]{16} ok$", nodes), nodes
    assert " bytes" not in out
    assert "node 1,234 in readable:" in out
    assert re.search(r"^  created_ns +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+ s ago\)$", out, re.M), out
    assert re.search(r"^  last_access_ns +\d{4}-\d\d-\d\d", out, re.M) and "primed_s        never" in out
    assert "tier            0 (hot: f32)" in out and "flags           1 (live)" in out
    assert "access_count    1" in out and "id              1,234" in out


def test_units():
    assert [units.size(n) for n in (0, 1023, 1024, 1536, 5 << 20, 300 << 20, 3 << 30)] == \
        ["0 B", "1023 B", "1.0 KiB", "1.5 KiB", "5.0 MiB", "300 MiB", "3.0 GiB"]
    assert [units.age(s) for s in (4, 125, 5400, 3 * 86400)] == ["4 s", "2 min", "1.5 h", "3.0 days"]
    assert units.when_ns(0) == "never"
    now = 1_800_000_000 * 10**9
    assert units.when_ns(now - 90 * 10**9, now).endswith("(2 min ago)")
    assert units.count(1234567) == "1,234,567" and units.count(0.5) == "0.5" and units.count(True) == "True"


def test_trace_has_one_spelling_for_collecting():
    p = engram_cli("trace", "12345", "--out", "traces")
    assert p.returncode == 2 and "--out goes with `engram trace collect 12345 --out DIR`" in p.stderr, p.stderr
    p = engram_cli("trace", "collect", "12345")
    assert p.returncode == 2 and "collect needs the engine and --out DIR" in p.stderr, p.stderr
    assert "\n       engram trace collect <engine|pid> --out DIR" in p.stderr        # the usage shows both forms
    p = engram_cli("trace", "collect", "12345", "--out", "traces", "--kind", "recall")
    assert p.returncode == 2 and "--kind filters the live tail" in p.stderr, p.stderr
    # one spelling: the old `--collect DIR` and `--formats` are gone (argparse refuses them)
    p = engram_cli("trace", "eg.0.1.0000000000000000", "--collect", "traces")
    assert p.returncode == 2 and "unrecognized arguments: --collect" in p.stderr, p.stderr
    p = engram_cli("trace", "collect", "12345", "--out", "traces", "--formats", "jsonl")
    assert p.returncode == 2 and "unrecognized arguments: --formats" in p.stderr, p.stderr
    p = engram_cli("trace", "12345", "--perfetto")
    assert p.returncode == 2 and "--perfetto goes with `engram trace collect 12345 --out DIR`" in p.stderr, p.stderr
