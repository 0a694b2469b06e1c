"""What the main process shows and records: TensorBoard scalars and a progress display."""
from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections import deque
from pathlib import Path


EPISODES_CSV = "episodes.csv"  # in the run folder: a row per training episode, EPISODE_COLUMNS
EPISODE_COLUMNS = ("step", "worker", "env", "return", "length")
EPISODE_RETURN_TAG = "train/episode_return"  # raw game score, at each episode's end against the global step
EPISODE_LENGTH_TAG = "train/episode_length"
# the scalars logged every log_interval: losses and gradient norm averaged over the updates since
LOSS_TAGS = {"policy": "loss/policy", "value": "loss/value", "entropy": "loss/entropy"}
GRAD_NORM_TAG = "grad/norm"  # before clipping (max_grad_norm)
LR_TAG = "optim/lr"
# with sil_batch: the self-imitation loss's policy term and the share of each batch it imitated
IMITATION_TAGS = {"imitation_loss": "self_imitation/policy_loss", "imitated": "self_imitation/imitated"}
# with replay_ratio: the V-trace replays' gradient norm (kept apart from grad/norm, the rollouts'
# own updates') and the share of their steps whose importance weight was cut
REPLAY_TAGS = {"grad_norm": "replay/grad_norm", "cut": "replay/cut"}
PIXEL_CONTROL_TAG = "loss/pixel_control"  # with pixel_control: its loss, weighted, on the rollouts' own updates
STEPS_PER_SECOND_TAG = "train/steps_per_second"
TRAINING_TAGS = (*LOSS_TAGS.values(), GRAD_NORM_TAG, LR_TAG, STEPS_PER_SECOND_TAG)
# what the report scripts read and keep: every run's, and self-imitation's and the replays' where a run had them
REPORTED_TAGS = (*TRAINING_TAGS, *IMITATION_TAGS.values(), *REPLAY_TAGS.values(), PIXEL_CONTROL_TAG)


class RunMetrics:
    """Turns worker messages into TensorBoard scalars and a progress line.

    On a terminal: a tqdm progress bar. Otherwise (CI, a log file): one summary line
    every ``log_interval`` seconds, never a line per update.
    """

    def __init__(self, log_dir, total_steps: int, start_step: int, log_interval: float, stream=None,
                 episodes_csv: Path | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # here, so the report scripts read the names above without torch

        self.writer = SummaryWriter(str(log_dir))
        self._episodes_file = None
        if episodes_csv is not None:  # appended to on resume, so one run keeps one table
            new = not Path(episodes_csv).exists()
            self._episodes_file = open(episodes_csv, "a", newline="")
            self._episodes_csv = csv.writer(self._episodes_file)
            if new:
                self._episodes_csv.writerow(EPISODE_COLUMNS)
        self.total_steps, self.log_interval = total_steps, log_interval
        self.stream = stream or sys.stdout
        self.recent_returns: deque[float] = deque(maxlen=100)
        self.episodes = self.skipped = 0
        self._start_step = start_step
        self._rate_mark = (time.monotonic(), start_step)
        self._last_line = time.monotonic()
        self._losses = {"policy": 0.0, "value": 0.0, "entropy": 0.0, "grad_norm": 0.0, "n": 0}
        self._imitation = {"imitation_loss": 0.0, "imitated": 0.0, "n": 0}
        self._replay = {"grad_norm": 0.0, "cut": 0.0, "n": 0}
        self._pixel_control = {"loss": 0.0, "n": 0}
        self._lr: float | None = None
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                            file=self.stream, smoothing=0.05)

    def log_config(self, config: dict) -> None:
        table = "\n".join(f"| {key} | {value} |" for key, value in config.items())
        self.writer.add_text("config", "| setting | value |\n|---|---|\n" + table, 0)

    def episode(self, step: int, raw_return: float, length: int, worker: int = 0, env: int = 0) -> None:
        """One finished training game: TensorBoard scalars and a row of episodes.csv."""
        self.episodes += 1
        if self._episodes_file is not None:
            self._episodes_csv.writerow((step, worker, env, raw_return, length))
        self.recent_returns.append(raw_return)
        self.writer.add_scalar(EPISODE_RETURN_TAG, raw_return, step)
        self.writer.add_scalar(EPISODE_LENGTH_TAG, length, step)

    def update(self, step, policy, value, entropy, grad_norm, lr, skipped, imitation_loss=math.nan,
               imitated=math.nan, replay_cut=math.nan, pixel_control_loss=math.nan) -> None:
        """One update's losses, averaged until the next line; the self-imitation ones (nan:
        off, or its memory still filling) and pixel control's (nan: off) over the updates
        that had them. A V-trace replay's update (``replay_cut`` a number) counts under the
        replay tags only."""
        self._lr = lr
        if skipped:
            self.skipped += 1
            self.writer.add_scalar("train/skipped_updates", self.skipped, step)
            return
        if math.isfinite(replay_cut):
            self._replay["grad_norm"] += grad_norm
            self._replay["cut"] += replay_cut
            self._replay["n"] += 1
            return
        losses = self._losses
        losses["policy"] += policy
        losses["value"] += value
        losses["entropy"] += entropy
        losses["grad_norm"] += grad_norm
        losses["n"] += 1
        if math.isfinite(imitated):
            self._imitation["imitation_loss"] += imitation_loss
            self._imitation["imitated"] += imitated
            self._imitation["n"] += 1
        if math.isfinite(pixel_control_loss):
            self._pixel_control["loss"] += pixel_control_loss
            self._pixel_control["n"] += 1

    def evaluation(self, step: int, mean_return: float, mean_length: float, policy: str = "sample") -> None:
        """The sampled policy's scores under eval/mean_return and eval/episode_length, the
        greedy one's under eval/greedy_mean_return and eval/greedy_episode_length."""
        prefix = "eval/greedy_" if policy == "greedy" else "eval/"
        self.writer.add_scalar(f"{prefix}mean_return", mean_return, step)
        self.writer.add_scalar(f"{prefix}episode_length", mean_length, step)

    def clip(self, step: int, gif_path: str, tag: str = "eval/clip") -> None:
        """An animated GIF as an image summary: what ``SummaryWriter.add_video`` writes, built
        here because add_video needs moviepy 1.x (``moviepy.editor``) and silently writes
        nothing with moviepy 2.x."""
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        gif = Path(gif_path).read_bytes()
        width, height = Image.open(io.BytesIO(gif)).size
        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif)
        self.writer.file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def event(self, text: str) -> None:
        """A line worth keeping (a restart, an error), shown without breaking the bar."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    @property
    def mean_return(self) -> float | None:
        return sum(self.recent_returns) / len(self.recent_returns) if self.recent_returns else None

    def tick(self, step: int, force: bool = False) -> None:
        """Called often by the main loop: rates, averaged losses, the progress display;
        ``force`` logs now (the run's last point) whatever the interval."""
        now = time.monotonic()
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            if self.mean_return is not None:
                self.bar.set_postfix(score=f"{self.mean_return:.0f}", refresh=False)
        if now - self._last_line < self.log_interval and not force:
            return
        if self._episodes_file is not None:
            self._episodes_file.flush()
        mark_time, mark_step = self._rate_mark
        rate = (step - mark_step) / max(now - mark_time, 1e-9)
        self._rate_mark, self._last_line = (now, step), now
        self.writer.add_scalar(STEPS_PER_SECOND_TAG, rate, step)
        if self._lr is not None:
            self.writer.add_scalar(LR_TAG, self._lr, step)
        losses = self._losses
        if losses["n"]:
            for key, tag in LOSS_TAGS.items():
                self.writer.add_scalar(tag, losses[key] / losses["n"], step)
            self.writer.add_scalar(GRAD_NORM_TAG, losses["grad_norm"] / losses["n"], step)
            self._losses = {key: 0.0 for key in losses} | {"n": 0}
        if self._imitation["n"]:
            for key, tag in IMITATION_TAGS.items():
                self.writer.add_scalar(tag, self._imitation[key] / self._imitation["n"], step)
            self._imitation = {key: 0.0 for key in self._imitation} | {"n": 0}
        if self._pixel_control["n"]:
            self.writer.add_scalar(PIXEL_CONTROL_TAG, self._pixel_control["loss"] / self._pixel_control["n"], step)
            self._pixel_control = {"loss": 0.0, "n": 0}
        if self._replay["n"]:
            for key, tag in REPLAY_TAGS.items():
                self.writer.add_scalar(tag, self._replay[key] / self._replay["n"], step)
            self._replay = {key: 0.0 for key in self._replay} | {"n": 0}
        if self.bar is None:
            score = f"{self.mean_return:.0f}" if self.mean_return is not None else "-"
            skipped = f"  skipped updates {self.skipped}" if self.skipped else ""
            print(f"step {step}/{self.total_steps}  {rate:.0f} steps/s  episodes {self.episodes}  "
                  f"mean score (last {len(self.recent_returns)}) {score}{skipped}", file=self.stream, flush=True)

    def summary(self, step: int, seconds: float) -> str:
        score = f"{self.mean_return:.0f}" if self.mean_return is not None else "-"
        steps = step - self._start_step
        skipped = f", {self.skipped} updates skipped (non-finite gradients)" if self.skipped else ""
        return (f"{steps} steps in {seconds:.0f} s ({steps / max(seconds, 1e-9):.0f} steps/s), {self.episodes} "
                f"episodes, mean score of the last {len(self.recent_returns)}: {score}{skipped}")

    def close(self) -> None:
        if self._episodes_file is not None:
            self._episodes_file.close()
        if self.bar is not None:
            self.bar.close()
        self.writer.flush()
        self.writer.close()
