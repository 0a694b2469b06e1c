"""backend=ray on a local Ray instance (2 CPUs): the same training, checkpoints and faults.

Each run starts its own Ray (token auth off: a private local instance), so these tests
take a minute or two.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from a3c.checkpoint import load_checkpoint
from tests.test_training_run import alive, child_pids, progress, wait_for

pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parent.parent
RAY = ["--config", "configs/smoke.yaml", "backend=ray", "eval_interval=0"]
ENV = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONWARNINGS="ignore")


def start(run_dir: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    """``python -m a3c.train ARGS run_dir=RUN_DIR``, its output in RUN_DIR.log; ``env`` adds variables."""
    log = run_dir.parent / f"{run_dir.name}.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen([sys.executable, "-m", "a3c.train", *args, f"run_dir={run_dir}"], cwd=ROOT,
                                stdout=handle, stderr=subprocess.STDOUT, env={**ENV, **(env or {})})
    return proc, log


def sitecustomize_from(folder: Path) -> dict:
    """The environment that makes every Python process of a run import FOLDER/sitecustomize.py."""
    return {"PYTHONPATH": os.pathsep.join([str(folder), str(ROOT)])}


def server_pid(log: Path) -> int | None:
    match = re.search(r"parameter server pid (\d+)", log.read_text())
    return int(match.group(1)) if match else None


def test_a_ray_run_survives_a_killed_worker_applies_every_gradient_and_resumes_locally(tmp_path):
    run_dir = tmp_path / "ray"
    proc, log = start(run_dir, *RAY, "total_steps=3000")
    try:
        wait_for(lambda: progress(log) > 0, 240, "training progress")
        os.kill(child_pids(log)["worker 0"], signal.SIGKILL)
        assert proc.wait(timeout=400) == 0, log.read_text()
    finally:
        proc.kill()
    text = log.read_text()
    assert "worker 0 died (exit code 1); restarting it (1/10)" in text, text
    pushed, applied = map(int, re.search(r"gradients pushed (\d+), applied (\d+)", text).groups())
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert pushed == applied == checkpoint["optimizer"]["updates"] > 0
    # every applied gradient came with one 20-step rollout; a killed worker's unsent one is lost
    assert checkpoint["global_step"] == 20 * applied >= 3000
    assert (checkpoint["obs_norm"][:, 2] > 0).all()

    resumed, log = start(run_dir, "--config", "configs/smoke.yaml", "eval_interval=0", "total_steps=4000",
                         f"resume={run_dir / 'checkpoints' / 'latest.pt'}")
    assert resumed.wait(timeout=240) == 0, log.read_text()
    after = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert after["global_step"] >= 4000 and after["optimizer"]["updates"] > applied


def test_a_local_checkpoint_resumes_on_ray_and_a_lost_server_stops_the_run_cleanly(smoke_run, tmp_path):
    start_checkpoint = smoke_run / "checkpoints" / "latest.pt"
    start_step = load_checkpoint(start_checkpoint)["global_step"]
    run_dir = tmp_path / "ray"
    proc, log = start(run_dir, *RAY, f"resume={start_checkpoint}", "total_steps=10000000",
                      "checkpoint_interval=2")
    try:
        wait_for(lambda: progress(log) > start_step and (run_dir / "checkpoints" / "latest.pt").exists(),
                 240, "progress and a first checkpoint")
        wait_for(lambda: load_checkpoint(run_dir / "checkpoints" / "latest.pt")["global_step"] > start_step,
                 60, "a checkpoint past the resumed step")
        workers = [pid for name, pid in child_pids(log).items() if name.startswith("worker")]
        os.kill(server_pid(log), signal.SIGKILL)
        code = proc.wait(timeout=120)
    finally:
        proc.kill()
    text = log.read_text()
    assert code == 1, text
    assert "parameter server lost" in text and "the last checkpoint is kept" in text, text
    kept = load_checkpoint(run_dir / "checkpoints" / "latest.pt")  # intact and loadable
    assert start_step < kept["global_step"] < 10000000
    wait_for(lambda: not any(alive(pid) for pid in workers), 30, "worker actors to exit")


def test_without_ray_installed_backend_ray_exits_2_with_the_install_command(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; from a3c.train import main; "
            f"sys.exit(main(['backend=ray', 'run_dir={tmp_path / 'run'}']))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert 'error: backend=ray needs Ray: pip install -e ".[ray]"' in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_on_a_ray_run_stops_the_actors_writes_the_final_checkpoint_and_exits_130(tmp_path):
    run_dir = tmp_path / "ray"
    proc, log = start(run_dir, *RAY, "total_steps=10000000")
    try:
        wait_for(lambda: progress(log) > 0 and child_pids(log), 240, "training progress")
        actors = [*child_pids(log).values(), server_pid(log)]
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    text = log.read_text()
    assert code == 130, text
    assert "SIGINT received" in text and "Traceback" not in text, text
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert 0 < checkpoint["global_step"] < 10000000
    pushed, applied = map(int, re.search(r"gradients pushed (\d+), applied (\d+)", text).groups())
    assert pushed == applied == checkpoint["optimizer"]["updates"]  # the final checkpoint holds every update
    wait_for(lambda: not any(alive(pid) for pid in actors), 30, "the worker actors and the server to exit")


def test_without_ray_address_a_run_starts_its_own_ray_even_where_ray_address_names_another(tmp_path):
    # RAY_ADDRESS (or the last `ray start` here) would make ray.init() join that cluster, and
    # fail: it takes no CPU count for a cluster it joins. Here it names nothing at all.
    run_dir = tmp_path / "ray"
    proc, log = start(run_dir, *RAY, "total_steps=400", env={"RAY_ADDRESS": "127.0.0.1:9"})
    try:
        code = proc.wait(timeout=300)
    finally:
        proc.kill()
    text = log.read_text()
    assert code == 0 and "error:" not in text, text
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")["global_step"] >= 400


@pytest.fixture
def two_node_cluster(monkeypatch):
    """A Ray cluster on this machine: a head node (2 CPUs) and a worker node (2 CPUs), each
    with its own raylet, as two machines would run them. ``ray`` in this process is a
    client of it (to place and free a CPU blocker on the head)."""
    import ray
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    worker_node = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster, worker_node, ray
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_a_two_node_cluster_trains_and_survives_losing_its_worker_node(two_node_cluster, tmp_path):
    cluster, worker_node, ray = two_node_cluster

    @ray.remote(num_cpus=2)
    class Blocker:  # holds the head's CPUs, so that the run's workers land on the worker node
        def node(self):
            return ray.get_runtime_context().get_node_id()

    blocker = Blocker.remote()
    assert ray.get(blocker.node.remote()) != worker_node.node_id
    run_dir = tmp_path / "cluster"
    proc, log = start(run_dir, *RAY, f"ray_address={cluster.address}", "total_steps=6000")
    try:
        wait_for(lambda: progress(log) > 0, 240, "training progress on the worker node")
        before = load_checkpoint(run_dir / "checkpoints" / "latest.pt")["global_step"] \
            if (run_dir / "checkpoints" / "latest.pt").exists() else 0
        ray.kill(blocker)  # the head's CPUs free for the replacements
        cluster.remove_node(worker_node)  # the worker machine is gone, with both workers on it
        assert proc.wait(timeout=400) == 0, log.read_text()
    finally:
        proc.kill()
    text = log.read_text()
    for rank in (0, 1):  # both died with the node and came back on the head (the only CPUs left)
        assert re.search(rf"worker {rank} died \(exit code 1\); restarting it \([12]/10\)", text), text
    pushed, applied = map(int, re.search(r"gradients pushed (\d+), applied (\d+)", text).groups())
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "latest.pt")
    assert pushed == applied == checkpoint["optimizer"]["updates"]
    # only the rollouts in flight when the node went were lost: every applied update is in the count
    assert checkpoint["global_step"] == 20 * applied >= 6000 > before


def test_a_worker_actor_that_raises_reports_its_traceback_and_is_restarted(tmp_path):
    # the first update of the first Ray worker process to get there raises (once: a marker file)
    (tmp_path / "patch").mkdir()
    (tmp_path / "patch" / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if sys.argv and sys.argv[0].endswith('default_worker.py'):  # Ray's worker processes only\n"
        "    import a3c.worker\n"
        f"    marker, real = {str(tmp_path / 'raised')!r}, a3c.worker.Worker.learn\n"
        "    def learn(self, bootstrap):\n"
        "        try:\n"
        "            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))\n"
        "        except FileExistsError:\n"
        "            return real(self, bootstrap)\n"
        "        raise RuntimeError('injected fault')\n"
        "    a3c.worker.Worker.learn = learn\n")
    run_dir = tmp_path / "ray"
    proc, log = start(run_dir, *RAY, "total_steps=3000", env=sitecustomize_from(tmp_path / "patch"))
    try:
        assert proc.wait(timeout=400) == 0, log.read_text()
    finally:
        proc.kill()
    text = log.read_text()
    assert (tmp_path / "raised").exists()
    failed = re.search(r"worker (\d) failed:\nTraceback \(most recent call last\):\n(.*?)RuntimeError: injected fault",
                       text, re.DOTALL)
    assert failed, text
    assert f"worker {failed.group(1)} died (exit code 1); restarting it (1/10)" in text, text
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")["global_step"] >= 3000


def test_worker_actors_that_cannot_start_stop_the_run_with_exit_1_and_no_actor_left(tmp_path):
    # every Ray worker actor hangs in its constructor, as one that never gets a CPU on a busy
    # cluster never starts; the driver waits START_TIMEOUT for it, cut here to 20 s (time
    # enough for the actor to reach its constructor on a loaded machine)
    pid_file = tmp_path / "hung.pid"
    (tmp_path / "patch").mkdir()
    (tmp_path / "patch" / "sitecustomize.py").write_text(
        "import os, sys\n"
        "if sys.argv and sys.argv[0].endswith('default_worker.py'):  # Ray's worker processes\n"
        "    import time, a3c.backends.ray\n"
        "    def hang(self, *args, **kwargs):\n"
        f"        open({str(pid_file)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        "        time.sleep(3600)\n"
        "    a3c.backends.ray.RayWorker.__init__ = hang\n"
        "elif sys.argv[:1] == ['-m'] and any(arg.startswith('run_dir=') for arg in sys.argv):  # the driver\n"
        "    import a3c.backends.ray\n"
        "    a3c.backends.ray.START_TIMEOUT = 20.0\n")
    run_dir = tmp_path / "ray"
    proc, log = start(run_dir, *RAY, "total_steps=3000", env=sitecustomize_from(tmp_path / "patch"))
    try:
        code = proc.wait(timeout=180)
    finally:
        proc.kill()
    text = log.read_text()
    assert code == 1, text
    # both started side by side and waited for together: one timeout, one line
    assert "workers 0, 1 could not start on Ray (GetTimeoutError); stopping" in text, text
    assert "(a worker could not start)" in text and "Traceback" not in text, text
    assert load_checkpoint(run_dir / "checkpoints" / "latest.pt")["global_step"] == 0
    hung = [int(line) for line in pid_file.read_text().split()]
    assert hung  # the premise: a worker actor's constructor did run and hang
    wait_for(lambda: not any(alive(pid) for pid in hung), 30, "the hung worker actor to be killed")
