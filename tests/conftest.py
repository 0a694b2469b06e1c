"""Shared fixtures: one real smoke training run (2 workers + evaluator) for the tests
that need a trained run's files; the hypothesis profiles of the property tests."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# property tests: a few dozen examples per test in every run of the suite; ten times as
# many with `pytest tests/test_properties.py --hypothesis-profile=thorough` (each test
# scales its count from the profile's). Both CI failures of 2026-11-30 were rare examples.
settings.register_profile("ci", max_examples=60, deadline=None)
settings.register_profile("thorough", max_examples=600, deadline=None)


def pytest_configure(config):
    settings.load_profile(config.getoption("hypothesis_profile", None) or "ci")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("smoke") / "run"
    result = subprocess.run(
        [sys.executable, "-m", "a3c.train", "--config", "configs/smoke.yaml", f"run_dir={run_dir}",
         "total_steps=4000"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir
