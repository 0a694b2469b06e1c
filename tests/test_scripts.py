"""The report scripts run on a real smoke run's files."""
from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def run_script(*args, timeout: float = 120):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_plot_curves_writes_a_png(smoke_run, tmp_path, run_module):
    out = tmp_path / "curve.png"
    result = run_module("scripts.plot_curves", str(smoke_run), "--out", str(out), "--window", "10",
                        "--labels", "smoke")
    assert result.returncode == 0, result.stderr
    image = Image.open(out)
    assert image.format == "PNG" and image.size[0] > 500


def test_plot_curves_wants_one_label_per_run(smoke_run, tmp_path, run_module):
    result = run_module("scripts.plot_curves", str(smoke_run), str(smoke_run), "--labels", "only-one",
                        "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2 and "--labels needs one name per run (2), got 1" in result.stderr


def table_rows(stdout: str) -> list[list[str]]:
    return [line.split() for line in stdout.splitlines() if line.strip()[:1].isdigit()]


def kept_run(folder: Path, returns: list[tuple[int, float]], steps: int) -> Path:
    """A run as scripts.keep_runs keeps it: its episodes (step, worker, env, return, length)
    and the steps it trained."""
    from a3c.metrics import EPISODE_COLUMNS, EPISODES_CSV
    from scripts.run_logs import STEPS_TRAINED

    folder.mkdir(parents=True)
    rows = [",".join(EPISODE_COLUMNS)] + [f"{step},0,0,{value},100" for step, value in returns]
    (folder / EPISODES_CSV).write_text("\n".join(rows) + "\n")
    (folder / STEPS_TRAINED).write_text(f"{steps}\n")
    return folder


def test_learning_curve_gives_each_marks_last_100_episode_mean_per_run_and_their_mean_and_spread(tmp_path,
                                                                                                 run_module):
    # run 1 scores 1,000 until step 1,000 and 2,000 after; run 2 scores 3,000 throughout
    first = kept_run(tmp_path / "seed-1", [(10 * k, 1000.0 if k <= 100 else 2000.0) for k in range(1, 201)], 2000)
    second = kept_run(tmp_path / "seed-2", [(10 * k, 3000.0) for k in range(1, 151)], 1500)
    result = run_module("scripts.learning_curve", "--read", str(first), str(second), "--every", "500")
    assert result.returncode == 0, result.stderr
    # marks both runs reached: 500, 1000, 1500 (run 2 stopped there); at 1,500 run 1's last
    # 100 episodes are 50 of 1,000 and 50 of 2,000
    assert table_rows(result.stdout) == [["500", "1000", "3000", "2000", "1414", "1000"],
                                         ["1,000", "1000", "3000", "2000", "1414", "1000"],
                                         ["1,500", "1500", "3000", "2250", "1061", "1500"]]


def test_learning_curve_compares_runs_with_a_baseline_mark_by_mark(tmp_path, run_module):
    """The difference of the means, and whether each run clears every baseline run: at 500
    one run is above both baseline runs and one inside them; at 1,000 both are below both."""
    ours = [kept_run(tmp_path / "lever" / f"seed-{k}", [(10 * j, value if j <= 50 else 900.0) for j in range(1, 101)],
                     1000) for k, value in [(1, 2500.0), (2, 2100.0)]]
    baseline = [kept_run(tmp_path / "default" / f"seed-{k}", [(10 * j, value) for j in range(1, 101)], 1000)
                for k, value in [(1, 2000.0), (2, 2200.0)]]
    result = run_module("scripts.learning_curve", "--read", *map(str, ours), "--every", "500",
                        "--baseline", *map(str, baseline))
    assert result.returncode == 0, result.stderr
    comparison = result.stdout.split("against the baseline: ")[1]
    assert comparison.splitlines()[0] == ", ".join(map(str, baseline))
    # at 1,000 each run's last 100 episodes are 50 of its score and 50 of 900
    assert table_rows(comparison) == [["500", "2300", "2100", "+200", "1", "of", "2", "0", "of", "2"],
                                      ["1,000", "1600", "2100", "-500", "0", "of", "2", "2", "of", "2"]]
    assert_one_error_line(run_module("scripts.learning_curve", "--read", str(ours[0]), "--baseline",
                                     str(tmp_path / "default")), "default")


def test_learning_curve_reports_a_training_scalars_median_between_marks(tmp_path, run_module):
    from scripts.run_logs import SCALARS_CSV

    first = kept_run(tmp_path / "seed-1", [(100 * k, 1000.0) for k in range(1, 11)], 1000)
    second = kept_run(tmp_path / "seed-2", [(100 * k, 2000.0) for k in range(1, 11)], 1000)
    # seed 1's gradient norm: 10, 20, 90 up to step 500 (median 20), then 40, 41 (median 40.5);
    # seed 2's: 5 throughout; the losses beside them are not the tag asked for
    (first / SCALARS_CSV).write_text("step,tag,value\n100,grad/norm,10\n300,grad/norm,90\n500,grad/norm,20\n"
                                     "700,grad/norm,40\n1000,grad/norm,41\n500,loss/value,7\n")
    (second / SCALARS_CSV).write_text("step,tag,value\n" + "".join(f"{100 * k},grad/norm,5\n" for k in range(1, 11)))
    result = run_module("scripts.learning_curve", "--read", str(first), str(second), "--every", "500",
                        "--scalar", "grad/norm")
    assert result.returncode == 0, result.stderr
    scalar_table = result.stdout.split("grad/norm: median")[1]
    assert table_rows(scalar_table) == [["500", "20", "5"], ["1,000", "40.5", "5"]]


def test_learning_curve_names_a_run_without_the_scalar_asked_for(tmp_path, run_module):
    old = kept_run(tmp_path / "old", [(100 * k, 1000.0) for k in range(1, 11)], 1000)  # kept with its episodes only
    assert_one_error_line(run_module("scripts.learning_curve", "--read", str(old), "--scalar", "grad/norm"),
                          str(old), "has no grad/norm points")
    result = run_module("scripts.learning_curve", "--read", str(old), "--scalar", "grad/nrom")
    assert result.returncode == 2 and "invalid choice: 'grad/nrom'" in result.stderr


def test_learning_curve_reads_a_real_runs_event_files(smoke_run, run_module):
    result = run_module("scripts.learning_curve", "--read", str(smoke_run), "--every", "1000")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout)
    assert rows and all(len(row) == 5 for row in rows)  # step, the run, mean, std, min
    for _, score, mean, std, low in rows:
        assert score == mean == low and std == "0"  # one run: its own score, no spread
    assert float(rows[-1][1]) > 1.0  # a mean raw score


def assert_one_error_line(result, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_report_scripts_name_a_folder_that_is_not_a_run_in_one_line(smoke_run, tmp_path, run_module):
    typo = tmp_path / "runs" / "no-such-run"
    parent = smoke_run.parent  # the folder above a run, as when seed-K is forgotten
    for folder in (typo, parent):
        assert_one_error_line(run_module("scripts.learning_curve", "--read", str(smoke_run), str(folder)),
                              str(folder), "is not a run folder")
        out = tmp_path / "curve.png"
        assert_one_error_line(run_module("scripts.plot_curves", "--group", "seeds", str(smoke_run),
                                         str(folder), "--out", str(out)), str(folder), "is not a run folder")
        assert not out.exists()


def test_report_scripts_refuse_a_run_that_has_logged_no_episode_yet(smoke_run, tmp_path, run_module):
    fresh = tmp_path / "fresh"
    (fresh / "tensorboard").mkdir(parents=True)  # what a run holds before its first episode ends
    assert_one_error_line(run_module("scripts.learning_curve", "--read", str(fresh)),
                          f"no episodes logged in {fresh} yet")
    # in a group, a seed without episodes would silently narrow the band: refused too
    assert_one_error_line(run_module("scripts.plot_curves", "--group", "seeds", str(smoke_run), str(fresh),
                                     "--out", str(tmp_path / "curve.png")), f"no episodes logged in {fresh} yet")
    assert_one_error_line(run_module("scripts.plot_curves", str(fresh), "--out", str(tmp_path / "one.png")),
                          f"no episode scores logged in {fresh} yet")


def tensorboard_returns(run_dir: Path) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    return sorted((event.step, event.value) for event in events.Scalars("train/episode_return"))


def test_a_kept_run_reports_and_plots_as_its_run_folder_does(smoke_run, tmp_path, run_module):
    from a3c.checkpoint import load_checkpoint
    from a3c.metrics import TRAINING_TAGS
    from scripts.run_logs import episode_returns, read_scalars

    result = run_module("scripts.keep_runs", str(smoke_run), "--to", str(tmp_path / "kept"))
    assert result.returncode == 0, result.stderr
    kept = tmp_path / "kept" / smoke_run.name
    assert sorted(path.name for path in kept.iterdir()) == ["config.yaml", "episodes.csv", "scalars.csv",
                                                            "steps_trained"]
    checkpoint = load_checkpoint(smoke_run / "checkpoints" / "latest.pt")
    assert int((kept / "steps_trained").read_text()) == checkpoint["global_step"]
    assert episode_returns(kept) == tensorboard_returns(smoke_run)  # the CSV holds what TensorBoard holds
    for tag in TRAINING_TAGS:  # and so do the kept training scalars
        assert read_scalars(kept, tag) == read_scalars(smoke_run, tag) != [], tag
    table = run_module("scripts.learning_curve", "--read", str(smoke_run), str(kept), "--every", "1000")
    assert table.returncode == 0, table.stderr
    rows = table_rows(table.stdout)
    assert rows and all(run == kept_run and std == "0" for _, run, kept_run, _, std, _ in rows)
    out = tmp_path / "kept.png"
    result = run_module("scripts.plot_curves", "--group", "kept and not", str(kept), str(smoke_run),
                        "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert Image.open(out).format == "PNG"


def test_a_run_kept_with_its_checkpoint_resumes_on_another_machine_and_reports_as_one_run(smoke_run, tmp_path,
                                                                                          run_module):
    import shutil

    from a3c.checkpoint import load_checkpoint
    from a3c.metrics import GRAD_NORM_TAG
    from scripts.run_logs import episode_returns, read_scalars, steps_trained

    kept_to = tmp_path / "kept"
    result = run_module("scripts.keep_runs", str(smoke_run), "--to", str(kept_to), "--checkpoint")
    assert result.returncode == 0, result.stderr
    kept = kept_to / smoke_run.name
    latest = Path("checkpoints") / "latest.pt"
    assert (kept / latest).read_bytes() == (smoke_run / latest).read_bytes()
    before = episode_returns(smoke_run)
    norms_before = read_scalars(smoke_run, GRAD_NORM_TAG)
    kept_steps = load_checkpoint(kept / latest)["global_step"]
    assert int((kept / "steps_trained").read_text()) == kept_steps

    # the next machine: the kept folder copied to its runs/, and resumed there
    moved = tmp_path / "next-machine" / "runs" / smoke_run.name
    shutil.copytree(kept, moved)
    resumed = subprocess.run([sys.executable, "-m", "a3c.train", f"resume={moved / latest}",
                              f"total_steps={kept_steps + 1500}", "workers=1", "eval_interval=0"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    after = episode_returns(moved)
    assert after[:len(before)] == before and len(after) > len(before)  # one table: the run's start, then more
    assert after[-1][0] > kept_steps
    # its steps come from the new checkpoint, not from the stale steps_trained copied along
    assert steps_trained(moved, after) == load_checkpoint(moved / latest)["global_step"] >= kept_steps + 1500
    # reported beside the run before it moved: the same marks up to the move
    table = run_module("scripts.learning_curve", "--read", str(smoke_run), str(moved), "--every", "1000")
    assert table.returncode == 0, table.stderr
    rows = table_rows(table.stdout)
    assert rows and all(run == moved_run and std == "0" for _, run, moved_run, _, std, _ in rows)

    # kept again once finished, without --checkpoint: the stale kept checkpoint goes
    result = run_module("scripts.keep_runs", str(moved), "--to", str(kept_to))
    assert result.returncode == 0, result.stderr
    assert not (kept / latest).exists()
    assert int((kept / "steps_trained").read_text()) == steps_trained(moved, after)
    assert episode_returns(kept) == after
    # its gradient norms too: those kept before the move, then those logged after it
    norms = read_scalars(kept, GRAD_NORM_TAG)
    assert norms[:len(norms_before)] == norms_before and norms[-1][0] > kept_steps


def test_keep_runs_with_checkpoint_refuses_a_run_without_one_and_keeps_nothing(smoke_run, tmp_path, run_module):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(smoke_run, bare, ignore=shutil.ignore_patterns("checkpoints"))
    kept = tmp_path / "kept"
    assert_one_error_line(run_module("scripts.keep_runs", str(smoke_run), str(bare), "--to", str(kept),
                                     "--checkpoint"), str(bare), "has no checkpoints/latest.pt to keep")
    assert not kept.exists()


def test_a_running_runs_half_flushed_last_episode_row_is_not_read(tmp_path):
    from scripts.run_logs import episode_returns

    run = tmp_path / "running"
    run.mkdir()
    (run / "episodes.csv").write_text("step,worker,env,return,length\r\n"
                                      "1200,0,0,1530.0,600\r\n2400,1,0,2110.0,640\r\n3100,0,1,18")
    assert episode_returns(run) == [(1200, 1530.0), (2400, 2110.0)]


def test_keep_runs_refuses_a_folder_that_is_not_a_run_and_keeps_none_of_the_others(smoke_run, tmp_path, run_module):
    kept = tmp_path / "kept"
    parent = smoke_run.parent  # the folder above a run
    assert_one_error_line(run_module("scripts.keep_runs", str(smoke_run), str(parent), "--to", str(kept)),
                          str(parent), "is not a run folder")
    assert not kept.exists()


def test_report_scripts_refuse_intervals_that_are_not_positive(smoke_run, tmp_path, run_module):
    assert_one_error_line(run_module("scripts.learning_curve", "--read", str(smoke_run), "--every", "0"),
                          "--every must be a positive number of agent steps, got 0")
    assert_one_error_line(run_module("scripts.plot_curves", str(smoke_run), "--window", "-5",
                                     "--out", str(tmp_path / "x.png")),
                          "--window must be a positive number of episodes, got -5")


def test_learning_curve_trains_several_seeds_side_by_side_with_a_tiny_budget(tmp_path):
    # one game, 4000 steps: a few whole episodes per seed; two seeds at the same time
    result = run_script("-m", "scripts.learning_curve", "--steps", "4000", "--every", "2000", "--seeds", "3", "4",
                        "--jobs", "2", "--run-dir", str(tmp_path / "curve"), "--config", "configs/smoke.yaml",
                        "workers=1", "eval_interval=0", timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "seed=3" in result.stdout and "seed=4" in result.stdout
    for seed in (3, 4):
        assert (tmp_path / "curve" / f"seed-{seed}" / "checkpoints" / "latest.pt").exists()
        assert "reached total_steps" in (tmp_path / "curve" / f"seed-{seed}.log").read_text()
    rows = table_rows(result.stdout)
    assert [row[0] for row in rows] == ["2,000", "4,000"]
    for _, *cells in rows:  # each seed's score, then their mean, sample deviation and minimum
        first, second, mean, std, low = map(float, cells)
        assert first > 0 and second > 0  # raw scores of whole episodes
        assert abs(mean - (first + second) / 2) <= 1 and low == min(first, second)
        assert abs(std - abs(first - second) / math.sqrt(2)) <= 1


def test_learning_curve_starts_no_further_seed_after_one_fails(tmp_path):
    result = run_script("-m", "scripts.learning_curve", "--steps", "4000", "--seeds", "1", "2",
                        "--run-dir", str(tmp_path / "curve"), "--config", "configs/smoke.yaml", "lr=fast")
    assert result.returncode == 2 and "training seed 1 exited with code 2" in result.stderr
    assert "seed=2" not in result.stdout and not (tmp_path / "curve" / "seed-2").exists()


def test_learning_curve_names_a_run_dir_it_cannot_write_the_seeds_logs_in(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert_one_error_line(run_script("-m", "scripts.learning_curve", "--seeds", "1", "2", "--jobs", "2",
                                     "--run-dir", str(blocker / "curve")),
                          f"cannot write {blocker / 'curve'}: Not a directory")


def test_interrupting_learning_curve_stops_every_running_seed_with_its_checkpoint(tmp_path):
    base = tmp_path / "curve"
    process = subprocess.Popen(
        [sys.executable, "-m", "scripts.learning_curve", "--steps", "10000000", "--seeds", "1", "2", "3",
         "--jobs", "2", "--run-dir", str(base), "--config", "configs/smoke.yaml", "workers=1", "eval_interval=0",
         "log_interval=1"],  # the script asks its trainers for a line a minute: the test waits for the first
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # as a shell script's background job starts it: SIGINT ignored, which Python would keep
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    logs = [base / "seed-1.log", base / "seed-2.log"]
    deadline = time.monotonic() + 200
    while not all(log.exists() and "step " in log.read_text() for log in logs):  # both training
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)  # to the script alone, as `kill -INT` does
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in stderr, stderr
    for seed in (1, 2):
        assert "(SIGINT received)" in (base / f"seed-{seed}.log").read_text()
        assert (base / f"seed-{seed}" / "checkpoints" / "latest.pt").exists()
    assert "seed=3" not in stdout and not (base / "seed-3").exists()  # never started


def test_benchmark_script_measures_every_kind_of_run(tmp_path):
    """A smoke test of scripts/benchmark.py with a tiny duration: not a timing assertion."""
    out = tmp_path / "bench.json"
    result = run_script("-m", "scripts.benchmark", "--duration", "1", "--warmup", "0.5", "--rounds", "1",
                        "--workers", "1", "--envs-per-worker", "2", "--num-steps", "5", "10", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert set(report["runs"]) == {"env-B2", "ours-B2-T5", "ours-B2-T10", "autograd-B1"}
    for name, (run,) in report["runs"].items():
        assert run["steps_per_s"] > 0, name
        assert set(run["split_ms"]) == {"env", "forward", "backward", "optimizer"}
        assert run["split_ms"]["env"] > 0, name
    for name in ("ours-B2-T5", "ours-B2-T10", "autograd-B1"):  # the trainers spent time in every phase
        assert min(report["runs"][name][0]["split_ms"].values()) > 0, name
    # an update of 10 steps plays twice the games' steps of an update of 5
    assert report["runs"]["ours-B2-T10"][0]["split_ms"]["env"] > report["runs"]["ours-B2-T5"][0]["split_ms"]["env"]
    assert set(report["ratios"]) == {"ours-B2-T5/autograd", "ours-B2-T5/env", "ours-B2-T10/autograd",
                                     "ours-B2-T10/env", "ours-B2-T10/ours-B2-T5"}
    assert "ours-B2-T10/ours-B2-T5" in result.stdout and "steps/s" in result.stdout


def test_benchmark_compares_sets_of_settings_with_the_first_one(tmp_path):
    """Each --settings value is a run of our trainer with those settings; a rollout twice as
    long shows they reach the workers: twice the games' steps per update."""
    out = tmp_path / "bench.json"
    result = run_script("-m", "scripts.benchmark", "--duration", "1", "--warmup", "0.5", "--rounds", "1",
                        "--workers", "1", "--envs-per-worker", "2", "--settings", "num_steps=5",
                        "num_steps=10,frame_stack=2", "--json", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    short, long = "ours-B2-num_steps=5", "ours-B2-num_steps=10,frame_stack=2"
    assert set(report["runs"]) == {"env-B2", short, long, "autograd-B1"}
    assert report["runs"][long][0]["split_ms"]["env"] > report["runs"][short][0]["split_ms"]["env"]
    assert f"{long}/{short}" in report["ratios"] and f"{long}/{short}" in result.stdout


def test_benchmark_refuses_an_unknown_setting_before_measuring():
    result = run_script("-m", "scripts.benchmark", "--settings", "frame_stack=2", "no_such_setting=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error:") and "no_such_setting" in result.stderr
    assert "round 1" not in result.stdout


@pytest.mark.parametrize("arguments, refused", [
    (["--settings", "frame_stack=2", "workers=4"], "workers"),
    (["--settings", "envs_per_worker=16"], "envs_per_worker"),
    (["--settings", "lr=1e-3,eval_interval=60"], "eval_interval"),
    (["--num-steps", "5", "10", "--settings", "num_steps=20"], "num_steps"),
])
def test_benchmark_refuses_a_setting_it_sets_itself(arguments, refused):
    """Games, workers, rollout length (with --num-steps) and the evaluator are the benchmark's
    own; a --settings value for one would be overridden without a word, so it is refused."""
    result = run_script("-m", "scripts.benchmark", *arguments)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and f"sets {refused} itself" in last
    assert "round 1" not in result.stdout


def test_roofline_counts_the_networks_arithmetic_by_hand():
    """Multiply-adds of one agent step, written out layer by layer (x2 for FLOPs)."""
    from a3c.model import ActorCritic
    from scripts.roofline import network_flops

    convs = [21 * 21 * 32 * 1 * 9, 11 * 11 * 32 * 32 * 9, 6 * 6 * 32 * 32 * 9, 3 * 3 * 32 * 32 * 9]
    lstm, heads = 4 * 256 * (288 + 256), 256 * (1 + 18)
    forward = 2 * (sum(convs) + lstm + heads)
    # weight gradients everywhere, input gradients everywhere but into the frames
    backward = 2 * (convs[0] + 2 * sum(convs[1:]) + 2 * lstm + 2 * heads)
    assert network_flops(ActorCritic(18)) == {"forward": forward, "backward": backward}


def test_roofline_sets_the_bound_beside_a_benchmark_report(tmp_path):
    from a3c.config import load_config
    from a3c.model import ActorCritic, network_settings
    from scripts.roofline import network_flops

    report = {"args": {"workers": 2}, "runs": {
        "env-B8": [{"steps_per_s": 2000.0, "split_ms": {"env": 160.0, "forward": 0.0, "backward": 0.0,
                                                       "optimizer": 0.0}}],
        "ours-B8": [{"steps_per_s": 1000.0, "split_ms": {"env": 160.0, "forward": 80.0, "backward": 48.0,
                                                        "optimizer": 3.2}}]}}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    # a given peak, not one timed here: the bound must not depend on how busy the machine is
    result = run_script("-m", "scripts.roofline", "--benchmark", str(path), "--peak-gflops", "20")
    assert result.returncode == 0, result.stderr
    assert "env time per agent step on one core: 1.000 ms" in result.stdout  # 2 cores / 2000 steps/s
    # 160 agent steps per update: (80 + 48 + 3.2) ms / 160 = 0.82 ms
    assert "measured ours-B8: forward 0.500 + backward 0.300 + optimizer 0.020 = 0.820 ms" in result.stdout
    flops = network_flops(ActorCritic(18, **network_settings(load_config(None))))
    least_ms = (flops["forward"] + flops["backward"]) / 20.0 / 1e6  # FLOPs / GFLOPS / 1e6: ms
    assert "float32 matmul, GFLOPS: peak 20.0 (given, not timed)" in result.stdout
    assert f"least network time per agent step: {least_ms:.3f} ms" in result.stdout
    assert f"best possible ours/env: {1.0 / (1.0 + least_ms):.2f}" in result.stdout


def test_roofline_times_the_matmul_peak_when_none_is_given():
    result = run_script("-m", "scripts.roofline", "--env-seconds", "0.2", "--gemm-seconds", "0.02")
    assert result.returncode == 0, result.stderr
    peak = float(result.stdout.split("; peak ")[1].split()[0])
    best = float(result.stdout.split("best possible ours/env: ")[1].split()[0])
    assert peak > 0.0 and 0.0 < best < 1.0


def test_roofline_refuses_a_target_outside_zero_one(tmp_path, run_module):
    result = run_module("scripts.roofline", "--target", "1.5", "--gemm-seconds", "0.05")
    assert result.returncode == 2 and "--target must lie in (0, 1)" in result.stderr
    for peak in ("0", "-5", "inf", "nan"):
        result = run_module("scripts.roofline", "--peak-gflops", peak)
        assert result.returncode == 2 and "--peak-gflops must be a positive number" in result.stderr, peak


def test_readme_figures_help_and_missing_checkpoint(tmp_path, run_module):
    """A smoke test of scripts/readme_figures.py: no browser or evaluation is started."""
    assert run_module("scripts.readme_figures", "--help").returncode == 0
    (tmp_path / "tensorboard").mkdir()
    result = run_module("scripts.readme_figures", "--run-dir", str(tmp_path),
                        "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "figures"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing.pt" in lines[0], result.stderr


def test_lost_lives_shows_the_screens_before_each_lost_life(tmp_path, run_module):
    out = tmp_path / "lives.png"
    # a whole game of the shipped agent (1,909 steps): 200 s on 2 cores busy with four training runs
    result = run_script("-m", "scripts.lost_lives", "--episodes", "1", "--before", "3,1", "--out", str(out),
                        timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    lives = re.findall(r"^episode 0: a life lost at agent step (\d+) \(this life: score (\d+), (\d+) bridges?, "
                       r"fuel (\d+) of 255\)$", result.stdout, re.MULTILINE)
    lost = [int(step) for step, *_ in lives]
    assert len(lost) == 4 and lost == sorted(lost)  # River Raid's four lives, in order
    # the lives' scores add up to the game's: River Raid scores in tens, a bridge 500
    scores = [int(score) for _, score, _, _ in lives]
    game = int(re.search(r"^episode 0: score (\d+)$", result.stdout, re.MULTILINE).group(1))
    assert all(score % 10 == 0 for score in scores) and sum(scores) == game > 0
    assert all(500 * int(bridges) <= int(score) for _, score, bridges, _ in lives)
    fuel = [int(left) for *_, left in lives]
    dry = int(re.search(r"^lives that ran out of fuel: (\d+) of 4$", result.stdout, re.MULTILINE).group(1))
    assert dry == sum(left == 0 for left in fuel)
    assert re.search(r"^actions taken: \w+ \d+%", result.stdout, re.MULTILINE)
    entropy = float(re.search(r"policy entropy per step: mean ([\d.]+)", result.stdout).group(1))
    assert 0 < entropy <= math.log(18) + 1e-6
    image = Image.open(out)
    assert image.size == (2 * 160, 4 * 210)  # a row per lost life, a screen per --before
    bad = run_module("scripts.lost_lives", "--before", "x")
    assert bad.returncode == 2 and bad.stderr.startswith("error:") and bad.stderr.count("\n") == 1


def test_the_fuel_byte_lost_lives_reads_is_full_at_the_start_and_falls_as_the_jet_flies():
    import ale_py
    import gymnasium as gym

    from a3c.envs import FUEL_RAM

    gym.register_envs(ale_py)
    env = gym.make("Riverraid-v0", repeat_action_probability=0.0)
    env.reset(seed=0)
    fuel = [int(env.unwrapped.ale.getRAM()[FUEL_RAM])]
    for _ in range(60):  # fire and fly on: the first stretch of river is straight
        env.step(1)
        fuel.append(int(env.unwrapped.ale.getRAM()[FUEL_RAM]))
    env.close()
    assert fuel[0] == 255 and fuel[-1] < 255
    assert all(later <= earlier for earlier, later in zip(fuel, fuel[1:]))  # no depot in the first 60 steps


SCRIPTS = sorted(path.stem for path in (ROOT / "scripts").glob("*.py") if path.stem != "__init__")


# modules of scripts/ that are not commands: the benchmark's autograd A3C, the report scripts' log reader
LIBRARIES = {"autograd_a3c", "run_logs"}


def test_every_script_runs_as_a_module_answers_help_and_refuses_a_typo_in_one_line(run_module):
    assert "learning_curve" in SCRIPTS and "benchmark" in SCRIPTS
    for name in SCRIPTS:
        if name in LIBRARIES:
            continue
        result = run_module(f"scripts.{name}", "--help")
        assert result.returncode == 0, f"{name}: {result.stderr[-500:]}"
        assert "usage:" in result.stdout, name
        result = run_module(f"scripts.{name}", "--no-such-option")
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1, f"{name}: {result.stderr[-500:]}"
        # the option, or first a required argument it lacks; and how to ask for help
        assert lines[0].startswith("error:") and f"(see python -m scripts.{name} --help)" in lines[0], lines[0]


def test_no_script_edits_sys_path():
    for name in SCRIPTS:
        assert "sys.path" not in (ROOT / "scripts" / f"{name}.py").read_text(), name


def test_every_module_the_readme_runs_answers_help():
    readme = (ROOT / "README.md").read_text()
    modules = sorted(set(re.findall(r"python -m ([a-z0-9_]+(?:\.[a-z0-9_]+)*)", readme)))
    assert {"a3c.train", "a3c.evaluate", "scripts.readme_figures"} <= set(modules)
    for module in modules:
        if "." not in module:  # "python -m scripts.NAME", a placeholder
            continue
        result = run_script("-m", module, "--help")
        assert result.returncode == 0 and "usage:" in result.stdout, f"{module}: {result.stderr[-500:]}"


def test_plot_curves_draws_groups_of_seeds_with_a_band_and_the_peers(smoke_run, tmp_path, run_module):
    from scripts.plot_curves import group_curve

    grid, mean, low, high = group_curve([smoke_run, smoke_run], window=10)
    assert mean == low == high and len(grid) == 200  # two identical runs: no spread
    out = tmp_path / "groups.png"
    result = run_module("scripts.plot_curves", "--group", "smoke", str(smoke_run), str(smoke_run),
                        "--peers", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert Image.open(out).format == "PNG"


def test_a_groups_band_starts_once_every_run_has_a_score_and_holds_the_runs_between_its_edges(tmp_path):
    from scripts.plot_curves import group_curve

    # window 1: each run's curve is the score of its last episode ended by the step
    early = kept_run(tmp_path / "early", [(100 * k, 10.0 * k) for k in range(1, 11)], 1000)
    late = kept_run(tmp_path / "late", [(300, 50.0), (600, 60.0), (1000, 70.0)], 1000)
    grid, mean, low, high = group_curve([early, late], window=1, points=8)
    assert grid == [300, 400, 500, 600, 700, 800, 900, 1000]  # not before the late run's first episode
    first = [30, 40, 50, 60, 70, 80, 90, 100]
    second = [50, 50, 50, 60, 60, 60, 60, 70]
    assert mean == [(a + b) / 2 for a, b in zip(first, second)]
    assert low == list(map(min, first, second)) and high == list(map(max, first, second))


def test_bench_evaluator_compares_runs_with_and_without_the_evaluator_from_a_trained_checkpoint(smoke_run):
    """Both runs resume a checkpoint with a tiny budget: the script's plumbing, not a timing assertion."""
    checkpoint = smoke_run / "checkpoints" / "latest.pt"
    before = checkpoint.read_bytes()
    result = run_script("-m", "scripts.bench_evaluator", "--steps", "1500", "--rounds", "1", "--eval-interval", "1",
                        "--resume", str(checkpoint), "workers=1", "envs_per_worker=1", "eval_max_steps=50",
                        "eval_clip_every=0", timeout=400)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "evaluator off" in result.stdout and "evaluator on" in result.stdout
    assert float(result.stdout.split("with/without evaluator:")[1]) > 0
    assert checkpoint.read_bytes() == before  # each run wrote in a folder of its own
    assert_one_error_line(run_script("-m", "scripts.bench_evaluator", "--resume", str(smoke_run / "missing.pt")),
                          "checkpoint not found")
