"""Evaluation: scores, JSON summary and videos from a checkpoint; the evaluator during training."""
from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from a3c.checkpoint import load_checkpoint
from a3c.evaluate import evaluate, main


def frame_count(path) -> int:
    capture = cv2.VideoCapture(str(path))
    count = 0
    while capture.read()[0]:
        count += 1
    return count


def test_training_with_the_evaluator_logs_scores_keeps_best_and_a_clip(smoke_run):
    events = EventAccumulator(str(smoke_run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    assert events.Scalars("eval/mean_return") and events.Scalars("eval/episode_length")
    best = load_checkpoint(smoke_run / "checkpoints" / "best.pt")
    assert best["eval_mean_return"] == max(e.value for e in events.Scalars("eval/mean_return"))
    clip = events.Images("eval/clip")[0]
    gif = Image.open(io.BytesIO(clip.encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames > 10 and (clip.width, clip.height) == gif.size


def test_one_episode_with_video_and_json_summary(smoke_run, tmp_path, capsys):
    videos, summary_path = tmp_path / "videos", tmp_path / "summary.json"
    code = main(["--checkpoint", str(smoke_run / "checkpoints" / "latest.pt"), "--episodes", "1", "--max-steps", "400",
                 "--video-dir", str(videos), "--json", str(summary_path), "--agent-view"])
    assert code == 0
    summary = json.loads(summary_path.read_text())
    (row,) = summary["episodes"]
    assert set(row) >= {"episode", "score", "length", "seconds", "video"}
    assert summary["mean"] == summary["min"] == summary["max"] == row["score"] and summary["std"] == 0
    assert abs(frame_count(row["video"]) - row["length"]) <= 2
    assert frame_count(row["agent_view"]) == row["length"]
    printed = capsys.readouterr().out
    assert f"{row['score']:.0f}" in printed and "mean" in printed


@pytest.mark.parametrize("policy", ["greedy", "sample"])
def test_a_fixed_seed_repeats_the_same_games(smoke_run, policy):
    checkpoint = smoke_run / "checkpoints" / "latest.pt"
    runs = [evaluate(checkpoint, episodes=2, policy=policy, seed=7, max_steps=400, stream=io.StringIO())
            for _ in range(2)]
    assert [(e["score"], e["length"]) for e in runs[0]["episodes"]] == \
        [(e["score"], e["length"]) for e in runs[1]["episodes"]]


def test_bad_inputs_exit_2_with_one_line(smoke_run, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((smoke_run / "checkpoints" / "latest.pt").read_bytes()[:1000])
    checkpoint = str(smoke_run / "checkpoints" / "latest.pt")
    cases = [
        (["--checkpoint", str(tmp_path / "missing.pt")], "error: checkpoint not found"),
        (["--checkpoint", str(corrupt)], "error: cannot read checkpoint"),
        (["--checkpoint", checkpoint, "--env-id", "Pong-v0"], "error: .*trained with 18 actions, this environment has 6"),
        (["--checkpoint", checkpoint, "--video-dir", "/proc/videos"], "error: video dir '/proc/videos' is not writable"),
        (["--checkpoint", checkpoint, "--video-episodes", "one"], "error: --video-episodes takes comma-separated"),
    ]
    for args, message in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and __import__("re").match(message, err[0]), (args, err)


def test_the_pretrained_agent_ships_with_the_package_and_plays():
    from a3c.policy import PRETRAINED

    assert PRETRAINED.is_file() and PRETRAINED.stat().st_size < 8_000_000  # a few MB: weights and normalisation
    payload = load_checkpoint(PRETRAINED)
    assert payload["optimizer"] == {} and payload["source"].startswith("runs/")
    summary = evaluate("pretrained", episodes=1, seed=3, max_steps=100, stream=io.StringIO())
    assert summary["episodes"][0]["length"] == 100 and summary["global_step"] >= 1_000_000


def export(checkpoint, out, *extra):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "scripts.export_pretrained", "--checkpoint", str(checkpoint),
                           "--source", "runs/smoke: a test", "--out", str(out), *extra],
                          cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True, timeout=120)


def test_export_pretrained_keeps_what_playing_needs(smoke_run, tmp_path):
    out = tmp_path / "agent.pt"
    result = export(smoke_run / "checkpoints" / "latest.pt", out)
    assert result.returncode == 0, result.stderr
    exported, original = load_checkpoint(out), load_checkpoint(smoke_run / "checkpoints" / "latest.pt")
    assert exported["optimizer"] == {} and exported["source"] == "runs/smoke: a test"
    # the pixel-control head trains the core but no action reads it: it stays behind, and the
    # settings name the network the file holds
    assert original["config"]["pixel_control"] and not exported["config"]["pixel_control"]
    acting = {k for k in original["model"] if not k.startswith("pixel_")}
    assert acting < original["model"].keys() and exported["model"].keys() == acting
    assert all(torch.equal(exported["model"][k], original["model"][k]) for k in acting)
    assert torch.equal(exported["obs_norm"], original["obs_norm"])
    assert original["config"]["run_dir"] == str(smoke_run)  # a folder of the machine that trained it ...
    assert exported["config"]["run_dir"] is None and exported["config"]["resume"] is None  # ... not shipped
    rewritten = ("run_dir", "resume", "pixel_control")
    assert {k: v for k, v in exported["config"].items() if k not in rewritten} == \
        {k: v for k, v in original["config"].items() if k not in rewritten}
    assert evaluate(out, episodes=1, max_steps=20, stream=io.StringIO())["episodes"][0]["length"] == 20


def test_export_in_float16_halves_the_weights_and_plays_as_the_float32_agent(smoke_run, tmp_path):
    from a3c.policy import load_agent

    full, half = tmp_path / "full.pt", tmp_path / "half.pt"
    assert export(smoke_run / "checkpoints" / "latest.pt", full).returncode == 0
    result = export(smoke_run / "checkpoints" / "latest.pt", half, "--dtype", "float16")
    assert result.returncode == 0, result.stderr
    stored = load_checkpoint(half)["model"]
    assert all(weight.dtype == torch.float16 for weight in stored.values())
    weights = sum(weight.numel() for weight in stored.values())
    assert full.stat().st_size - half.stat().st_size > 0.9 * 2 * weights  # 2 bytes fewer per weight
    (model32, *_), (model16, *_) = load_agent(full), load_agent(half)
    assert model16.actor.weight.dtype == torch.float32  # loaded back for playing
    shape = (16, model32.convs[0].in_channels, model32.frame_size, model32.frame_size)
    frames = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    probs = [torch.softmax(model.step(frames, model.initial_state(16))[0], 1) for model in (model32, model16)]
    assert 0 < (probs[0] - probs[1]).abs().max() < 1e-2  # rounded weights, the same policy to within a percent
    assert evaluate(half, episodes=1, max_steps=20, stream=io.StringIO())["episodes"][0]["length"] == 20


def test_export_refuses_a_bad_checkpoint_storage_type_or_weight_beyond_float16_in_one_line(tmp_path):
    from a3c.checkpoint import save_checkpoint
    from a3c.model import ActorCritic

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    model = ActorCritic(18, seed=0, frame_size=42, hidden_size=16)
    model.actor.weight[0, 0] = 1e6  # finite in float32, inf in float16 (largest 65,504)
    large = tmp_path / "large.pt"
    save_checkpoint(large, {"model": model.state_dict(), "optimizer": {}, "global_step": 10, "n_actions": 18,
                            "obs_norm": torch.tensor([[0.5, 0.2, 100.0]], dtype=torch.float64),
                            "config": {"env_id": "Riverraid-v0", "frame_size": 42, "hidden_size": 16}})
    results = [export(bad, tmp_path / "out.pt"), export(large, tmp_path / "out.pt", "--dtype", "int8"),
               export(large, tmp_path / "out.pt", "--dtype", "float16")]
    assert "beyond float16's range" in results[-1].stderr
    for result in results:
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize("core, conv_stack, action_reward_input, pixel_control",
                         [("lstm", "a3c", False, False), ("feedforward", "a3c", False, False),
                          ("lstm", "nature", False, False), ("lstm", "a3c", True, False),
                          ("feedforward", "a3c", True, False), ("layernorm_lstm", "a3c", False, False),
                          ("lstm", "a3c", False, True)])
def test_a_checkpoint_plays_with_the_network_sizes_and_stacked_views_it_was_trained_with(tmp_path, core, conv_stack,
                                                                                         action_reward_input,
                                                                                         pixel_control):
    from a3c.checkpoint import save_checkpoint
    from a3c.model import ActorCritic

    model = ActorCritic(18, seed=0, frame_stack=3, conv_channels=8, hidden_size=16, core=core, conv_stack=conv_stack,
                        action_reward_input=action_reward_input, pixel_control=pixel_control)
    path = tmp_path / "small.pt"
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": {}, "global_step": 10,
                           "obs_norm": torch.tensor([[0.5, 0.2, 100.0]], dtype=torch.float64), "n_actions": 18,
                           "config": {"env_id": "Riverraid-v0", "frame_stack": 3, "conv_channels": 8,
                                      "hidden_size": 16, "core": core, "conv_stack": conv_stack,
                                      "action_reward_input": action_reward_input, "pixel_control": pixel_control}})
    summary = evaluate(path, episodes=1, seed=0, max_steps=20, stream=io.StringIO())
    assert summary["episodes"][0]["length"] == 20


def test_a_checkpoint_older_than_the_recorded_view_plays_with_the_view_it_was_trained_on(tmp_path):
    # the input changed (jet-centred view, 84x84) without a new format version: each checkpoint
    # names its view, and one that names none was trained on the first, the original at 42x42
    from a3c.checkpoint import save_checkpoint
    from a3c.evaluate import EvalError
    from a3c.model import ActorCritic
    from a3c.policy import frame_settings

    older = {"env_id": "Riverraid-v0"}
    assert frame_settings(older) == {"frame": "original", "frame_size": 42, "frame_stack": 1}
    fields = {"model": ActorCritic(18, seed=0, frame_size=42).state_dict(), "optimizer": {}, "global_step": 10,
              "obs_norm": torch.tensor([[0.5, 0.2, 100.0]], dtype=torch.float64), "n_actions": 18}
    path = tmp_path / "older.pt"
    save_checkpoint(path, {**fields, "config": older})
    assert evaluate(path, episodes=1, seed=0, max_steps=20, stream=io.StringIO())["episodes"][0]["length"] == 20
    # the same weights said to see 84x84 frames do not fit it: refused before any game starts
    save_checkpoint(path, {**fields, "config": {**older, "frame": "jet_centred", "frame_size": 84}})
    with pytest.raises(EvalError, match=r"has a bad model: .*frame_size=84"):
        evaluate(path, episodes=1, max_steps=20, stream=io.StringIO())
