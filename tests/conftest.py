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
