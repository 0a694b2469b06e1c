"""The report scripts run on a real smoke run's files."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def run_script(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_plot_curves_writes_a_png(smoke_run, tmp_path):
    out = tmp_path / "curve.png"
    result = run_script("scripts/plot_curves.py", str(smoke_run), "--out", str(out), "--window", "10")
    assert result.returncode == 0, result.stderr
    image = Image.open(out)
    assert image.format == "PNG" and image.size[0] > 500


def test_learning_curve_reads_an_existing_run(smoke_run):
    result = run_script("scripts/learning_curve.py", "--read", str(smoke_run), "--every", "1000")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert rows and all(len(row) == 3 for row in rows)
    assert float(rows[-1][1]) > 1.0  # a mean raw score
