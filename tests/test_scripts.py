"""The report scripts run on a real smoke run's files."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def run_script(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_plot_curves_writes_a_png(smoke_run, tmp_path):
    out = tmp_path / "curve.png"
    result = run_script("scripts/plot_curves.py", str(smoke_run), "--out", str(out), "--window", "10",
                        "--labels", "smoke")
    assert result.returncode == 0, result.stderr
    image = Image.open(out)
    assert image.format == "PNG" and image.size[0] > 500


def test_plot_curves_wants_one_label_per_run(smoke_run, tmp_path):
    result = run_script("scripts/plot_curves.py", str(smoke_run), str(smoke_run), "--labels", "only-one",
                        "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2 and "--labels needs one name per run (2), got 1" in result.stderr


def test_learning_curve_reads_an_existing_run(smoke_run):
    result = run_script("scripts/learning_curve.py", "--read", str(smoke_run), "--every", "1000")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert rows and all(len(row) == 3 for row in rows)
    assert float(rows[-1][1]) > 1.0  # a mean raw score


def test_benchmark_script_measures_every_kind_of_run(tmp_path):
    """A smoke test of scripts/benchmark.py with a tiny duration: not a timing assertion."""
    out = tmp_path / "bench.json"
    result = run_script("scripts/benchmark.py", "--duration", "1", "--warmup", "0.5", "--rounds", "1",
                        "--workers", "1", "--envs-per-worker", "2", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {"env-B2", "ours-B2", "autograd-B1"}
    for name, (run,) in report["runs"].items():
        assert run["steps_per_s"] > 0, name
        assert set(run["split_ms"]) == {"env", "forward", "backward", "optimizer"}
        assert run["split_ms"]["env"] > 0, name
    for name in ("ours-B2", "autograd-B1"):  # the trainers spent time in every phase
        assert min(report["runs"][name][0]["split_ms"].values()) > 0, name
    assert set(report["ratios"]) == {"ours-B2/autograd", "ours-B2/env"}
    assert "ours-B2/autograd" in result.stdout and "steps/s" in result.stdout
