"""schemathesis against the live OpenAPI spec of a real daemon: no server errors, and every
response conforms to the spec (status codes, content types, headers, bodies). Negative
data (what the spec forbids) must be refused. Not checked: that every schema-valid request
is accepted, since the spec cannot say "not all zeros" or "an id that exists"."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def run_schemathesis(url: str, examples: int) -> subprocess.CompletedProcess:
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe is None:
        pytest.fail("schemathesis is not installed: pip install -e '.[dev]'")
    return subprocess.run([exe, "run", f"{url}/api-docs/openapi.json", "--checks", "all",
                           "--exclude-checks", "positive_data_acceptance", "--max-examples", str(examples),
                           "--seed", "15", "--no-color"], capture_output=True, text=True, timeout=1200)


def test_the_api_keeps_its_spec_under_generated_requests(daemon):
    p = run_schemathesis(daemon.url, 25)
    assert p.returncode == 0, p.stdout[-6000:]
    assert " passed" in p.stdout and "generated" in p.stdout


@pytest.mark.slow
def test_the_api_keeps_its_spec_under_many_generated_requests(daemon):
    p = run_schemathesis(daemon.url, 60 if os.environ.get("CI") else 500)
    assert p.returncode == 0, p.stdout[-6000:]
