"""`engram list | inspect | top` against a live engine in another process: what
they show, that they refuse a segment of another layout, and that they never
write to what they read."""
import hashlib
import os
import pty
import select
import subprocess
import sys
import textwrap
import time

import pytest

from engram.store.shm.names import EngineName, segments_of
from engram.store.shm.segment import Segment

LIVE = textwrap.dedent("""
    import sys, numpy as np, engram
    rng = np.random.default_rng(0)
    eng = engram.Engine(dim=16, workers=2)
    mem = eng.space("live-space")
    v = rng.standard_normal((300, 16))
    ids = mem.remember(v, content=[f"memory {i}" for i in range(300)])
    mem.link(ids[:-1], ids[1:], 0.5)
    eng.start_workers()
    for i in range(50):
        mem.recall(v[i], k=5)
    print(eng.name, flush=True)
    for line in sys.stdin:              # "recall N": N more recalls; EOF: exit
        for i in range(int(line.split()[1])):
            mem.recall(v[i % 300], k=5)
        print("done", flush=True)
    eng.close()
""")


@pytest.fixture
def live():
    p = subprocess.Popen([sys.executable, "-c", LIVE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    name = p.stdout.readline().strip()
    assert name.startswith("eg."), name
    yield p, name
    p.stdin.close()
    p.wait(30)


def engram_cli(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "engram.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def digest(name: str) -> str:
    h = hashlib.sha256()
    for seg in segments_of(EngineName.parse(name)):
        with open("/dev/shm" + seg, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def test_list_and_inspect_show_the_engine_and_never_write(live):
    p, name = live
    before = digest(name)
    out = engram_cli("list")
    assert out.returncode == 0 and name in out.stdout
    assert "live-space: 300 memories (hot 300, warm 0, cold 0), 299 links, dim 16" in out.stdout and "2 workers" in out.stdout
    out = engram_cli("inspect", name, "--space", "live-space", "--node", "7", "--pool")
    assert out.returncode == 0, out.stderr
    assert "layout" in out.stdout and "REFUSED" not in out.stdout
    assert "content         memory 7" in out.stdout and "edges           [(8, 0.5)]" in out.stdout
    assert "pool: capacity" in out.stdout
    out = engram_cli("inspect", str(EngineName.parse(name).pid))      # by owner pid
    assert out.returncode == 0 and ".live-space.nodes.g" in out.stdout
    assert digest(name) == before, "an attach tool changed the engine's memory"


def test_inspect_refuses_a_segment_of_another_layout(live):
    p, name = live
    eng = EngineName.parse(name)
    odd = Segment.create(eng.engine_object("stranger"), kind=99, data_bytes=64, capacity=1)
    try:
        odd.set("layout_hash", 0x1234)
        out = engram_cli("inspect", name)
        assert out.returncode == 3
        assert "REFUSED" in out.stdout and "layout 0x0000000000001234" in out.stdout
        assert "attach with the same engram version" in out.stdout
    finally:
        Segment.unlink(odd.name)


def test_bad_engine_names_are_clear_errors():
    out = engram_cli("inspect", "not-an-engine")
    assert out.returncode != 0 and "not an engine name" in out.stderr
    out = engram_cli("top", "eg.0.1.0000000000000000")
    assert out.returncode != 0 and "not in shared memory" in out.stderr


def test_top_in_a_terminal_shows_recalls_per_second(live):
    p, name = live
    master, slave = pty.openpty()
    top = subprocess.Popen([sys.executable, "-m", "engram.cli", "top", name, "--interval", "0.5",
                            "--iterations", "4"], stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    buf = b""
    sent = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r, _, _ = select.select([master], [], [], 1)
        if r:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
            if not sent and b"engram top" in buf:     # the first screen is up: now recall
                p.stdin.write("recall 3000\n")
                p.stdin.flush()
                sent = True
        elif top.poll() is not None:
            break
    top.wait(30)
    os.close(master)
    text = buf.decode(errors="replace")
    assert top.returncode == 0, text
    assert "\x1b[2J" in text                       # a live screen, redrawn
    assert "recalls/s" in text and "live-space" in text and "workers   #0" in text
    rates = [float(line.split()[2].replace(",", "")) for line in text.splitlines()
             if line.startswith("live-space")]
    assert any(r > 0 for r in rates), text
