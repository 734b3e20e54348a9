"""Test options shared by the whole suite.

Slow tests (``@pytest.mark.slow``: long soak and stress runs) are opt-in on a
developer's machine:

    python3 -m pytest -n auto              # skips them
    python3 -m pytest -n auto --runslow    # runs them in full

CI (CI set in the environment, as .ci/run has it) always runs them, in the bounded
version each slow test picks when CI is set: the worker soak in
tests/e2e/test_workers.py makes 3,000 recalls there instead of 20,000.
"""
import os

import pytest

from engram.store.wal import format as wal_format

#: log segments in tests: preallocated 64 MiB segments of every engine with a path (and of
#: every materialised crash state) filled the disk with 24 GB a run; small ones also roll often
TEST_SEGMENT_BYTES = 1 << 20


@pytest.fixture(autouse=True)
def small_log_segments(monkeypatch):
    monkeypatch.setattr(wal_format, "SEGMENT_BYTES", TEST_SEGMENT_BYTES)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="run the tests marked slow in full (CI runs their bounded versions anyway)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow (CI runs a bounded version)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
