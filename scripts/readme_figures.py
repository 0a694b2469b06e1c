"""Make the README's two pictures from a run folder and a checkpoint.

    python -m scripts.readme_figures --run-dir RUN_DIR --checkpoint CHECKPOINT [--out scripts/figures]

dashboard.png: a screenshot, taken with headless Chromium, of TensorBoard's scalars
dashboard showing RUN_DIR/tensorboard (TensorBoard is started on a free local port).
agent_view.png: the middle frame of the "agent view" video that ``a3c.evaluate``
records for one short greedy episode of CHECKPOINT (game | network input | action
probabilities). Needs the Debian package ``chromium``. Bad input: one line on stderr, exit 2.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import imageio_ffmpeg
from PIL import Image

from a3c.cli import ArgumentParser

TAGS = "train/(episode_return|episode_length|steps_per_second)"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--window-size=1400,900", "--virtual-time-budget=15000"]


class FigureError(Exception):
    """A problem worth one line on stderr."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_runs(base: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until TensorBoard answers and has loaded at least one run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise FigureError(f"tensorboard exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/data/runs", timeout=5) as response:
                if json.loads(response.read()):
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    raise FigureError(f"tensorboard did not serve any run within {timeout:.0f}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def dashboard(run_dir: Path, chromium: str, out: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # started beside the run folder with a relative logdir: the page shows no machine path
    run_dir = run_dir.resolve()
    tensorboard = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", f"{run_dir.name}/tensorboard",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=run_dir.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_runs(base, tensorboard)
        url = f"{base}/?darkMode=false#scalars&tagFilter={urllib.parse.quote(TAGS, safe='')}"
        with tempfile.TemporaryDirectory() as profile:
            out.unlink(missing_ok=True)
            browser = subprocess.Popen(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out.resolve()}",
                 url],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                browser.wait(timeout=120)
            except subprocess.TimeoutExpired:
                raise FigureError("chromium took over 120s to take the screenshot") from None
            finally:
                stop(browser)
        if not out.is_file():
            raise FigureError(f"chromium exited with status {browser.returncode} and wrote no screenshot")
    finally:
        stop(tensorboard)


def agent_view(checkpoint: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as videos:
        result = subprocess.run(
            [sys.executable, "-m", "a3c.evaluate", "--checkpoint", str(checkpoint), "--episodes", "1",
             "--max-steps", "300", "--video-dir", videos, "--agent-view"],
            capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise FigureError(f"a3c.evaluate failed (status {result.returncode}): {last}")
        video = Path(videos) / "agent-view-episode-0.mp4"
        if not video.is_file():
            raise FigureError(f"a3c.evaluate wrote no {video.name}")
        reader = imageio_ffmpeg.read_frames(str(video))
        size = next(reader)["size"]
        frames = list(reader)
    if not frames:
        raise FigureError(f"{video.name} has no frames")
    Image.frombytes("RGB", size, frames[len(frames) // 2]).save(out)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m scripts.readme_figures",
                            description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, required=True,
                        help="a run folder with a tensorboard/ subfolder")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint (latest.pt or best.pt)")
    parser.add_argument("--out", type=Path, default=Path("scripts/figures"), help="folder for the PNGs")
    args = parser.parse_args(argv)
    try:
        if not (args.run_dir / "tensorboard").is_dir():
            raise FigureError(f"no tensorboard/ folder in run dir {args.run_dir}")
        if not args.checkpoint.is_file():
            raise FigureError(f"checkpoint {args.checkpoint} is not a file")
        chromium = shutil.which("chromium")
        if chromium is None:
            raise FigureError("chromium not found: install it with `apt-get install -y chromium`")
        args.out.mkdir(parents=True, exist_ok=True)
        for name, make in (("dashboard.png", lambda p: dashboard(args.run_dir, chromium, p)),
                           ("agent_view.png", lambda p: agent_view(args.checkpoint, p))):
            path = args.out / name
            make(path)
            print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    except (FigureError, OSError, subprocess.SubprocessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
