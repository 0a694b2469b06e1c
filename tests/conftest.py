"""Shared fixtures: one real smoke training run (2 workers + evaluator) for the tests
that need a trained run's files; `python -m` run inside the test process for commands
that only read, write files or refuse their input; the hypothesis profiles of the
property tests."""
from __future__ import annotations

import runpy
import subprocess
import sys
import warnings
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
    (run_dir.parent / "run.log").write_text(result.stdout + result.stderr)  # what the trainer printed
    return run_dir


@pytest.fixture
def run_module(capsys, monkeypatch):
    """``run_module("scripts.NAME", *args)``: ``python -m scripts.NAME ARGS`` run inside the
    test's process as runpy runs it (``__main__``, the repository as working directory),
    returned as a CompletedProcess (exit code, stdout, stderr).

    A subprocess costs 2-4 s on 2 cores, nearly all of it importing torch again; dozens of
    help, refusal and report calls made that a minute of the suite. Only for commands that
    start no processes and change no process-wide setting (threads, signal handlers):
    trainings, benchmarks and timings keep their own interpreter. An uncaught exception
    fails the test, as a traceback would."""
    monkeypatch.chdir(ROOT)

    def run(module: str, *args) -> subprocess.CompletedProcess:
        argv = [module, *map(str, args)]
        monkeypatch.setattr(sys, "argv", list(argv))
        capsys.readouterr()  # what the test printed before is not the command's
        code = 0
        try:
            with warnings.catch_warnings():
                # the test module imported the script already: runpy runs a fresh copy, as intended
                warnings.filterwarnings("ignore", message=".*found in sys.modules", category=RuntimeWarning)
                runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exit:
            code = exit.code
        out, err = capsys.readouterr()
        if isinstance(code, str):  # sys.exit("message"): Python prints it and exits 1
            err, code = err + code + "\n", 1
        return subprocess.CompletedProcess(argv, 0 if code is None else code, out, err)

    return run
