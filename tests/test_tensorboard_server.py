"""The real TensorBoard server serves a smoke run's scalars over HTTP."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from scripts.readme_figures import stop

DEADLINE = 90.0  # seconds for any one wait


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def poll(url: str, ready, what: str):
    deadline = time.monotonic() + DEADLINE
    last = None
    while time.monotonic() < deadline:
        try:
            last = get_json(url)
            if ready(last):
                return last
        except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out after {DEADLINE:.0f}s waiting for {what}; last answer: {last}")


@pytest.fixture
def tensorboard_server(smoke_run):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(smoke_run / "tensorboard"),
         "--host", "127.0.0.1", "--port", str(port), "--samples_per_plugin", "scalars=100000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_scalars_of_a_smoke_run_are_served(tensorboard_server):
    base = tensorboard_server
    wanted = {"train/episode_return", "eval/mean_return", "loss/policy", "train/steps_per_second"}
    tags = poll(f"{base}/data/plugin/scalars/tags",
                lambda answer: any(wanted <= set(run_tags) for run_tags in answer.values()), "scalar tags")
    run = next(name for name, run_tags in tags.items() if wanted <= set(run_tags))
    for tag in ("train/episode_return", "eval/mean_return"):
        query = urllib.parse.urlencode({"run": run, "tag": tag})
        points = poll(f"{base}/data/plugin/scalars/scalars?{query}", lambda answer: len(answer) > 0, tag)
        for wall_time, step, value in points:
            assert wall_time > 0 and step >= 0 and value == value  # a real number, not NaN
    returns = get_json(f"{base}/data/plugin/scalars/scalars?" + urllib.parse.urlencode(
        {"run": run, "tag": "train/episode_return"}))
    assert max(value for _, _, value in returns) > 1.0  # raw game scores
