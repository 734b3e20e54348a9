"""The native build runs once: after `pip install -e .` built everything in place, building
again compiles nothing (each output keeps the hash of its inputs beside it), and the
generated files are current."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_second_build_compiles_nothing():
    p = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "native build: everything is up to date" in p.stdout, p.stdout[-3000:]
    assert " $ " not in p.stdout, "something was compiled again:\n" + p.stdout[-3000:]
