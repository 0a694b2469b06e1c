"""The network's sizes are settings: what it builds is what ``parameter_shapes`` (used to
check checkpoints without building anything) says."""
from __future__ import annotations

import pytest

from a3c.model import ActorCritic, conv_sides, parameter_shapes


@pytest.mark.parametrize("sizes", [{}, {"frame_size": 84, "conv_channels": 16, "hidden_size": 64},
                                   {"frame_size": 50, "conv_channels": 8, "hidden_size": 24},
                                   {"frame_stack": 4, "conv_channels": 8, "hidden_size": 24},
                                   {"frame_stack": 4, "conv_channels": 8, "hidden_size": 24, "core": "feedforward"},
                                   {"frame_size": 84, "core": "feedforward"},
                                   {"frame_size": 84, "hidden_size": 24, "core": "layernorm_lstm"},
                                   {"frame_size": 84, "conv_stack": "nature"},
                                   {"frame_size": 36, "frame_stack": 4, "conv_channels": 8, "conv_stack": "nature"},
                                   {"frame_size": 61, "hidden_size": 24, "core": "feedforward", "conv_stack": "nature"},
                                   {"frame_size": 84, "hidden_size": 24, "pixel_control": True},
                                   {"frame_size": 20, "frame_stack": 2, "core": "feedforward", "pixel_control": True}])
def test_parameter_shapes_are_those_of_the_network_built(sizes):
    model = ActorCritic(9, seed=0, **sizes)
    assert parameter_shapes(9, **sizes) == {name: tuple(p.shape) for name, p in model.named_parameters()}
    conv_stack = sizes.get("conv_stack", "a3c")
    last_width = sizes.get("conv_channels", 32) * (2 if conv_stack == "nature" else 1)
    assert conv_sides(sizes.get("frame_size", 42), conv_stack)[-1] ** 2 * last_width == model.feature_size


def test_the_default_runs_network_reads_1152_features_from_84x84_and_one_built_without_sizes_288_from_42x42():
    from a3c.config import Config
    from a3c.model import network_settings

    assert conv_sides(84) == [42, 21, 11, 6]
    # the default run's LSTM of 512: four gates of 512
    assert parameter_shapes(18, **network_settings(Config()))["lstm.weight_ih"] == (2048, 1152)
    # without sizes (and in checkpoints that record none): the first runs' 42x42 and LSTM of 256
    assert conv_sides(42) == [21, 11, 6, 3]
    assert parameter_shapes(18)["lstm.weight_ih"] == (1024, 288)


def test_the_nature_stack_reads_7x7_positions_from_84x84_and_needs_frames_of_36():
    from a3c.config import SMALLEST_NATURE_FRAME
    from a3c.model import smallest_frame_size

    assert conv_sides(84, "nature") == [20, 9, 7]
    assert conv_sides(36, "nature") == [8, 3, 1] and conv_sides(35, "nature")[-1] == 0
    assert smallest_frame_size("nature") == SMALLEST_NATURE_FRAME == 36  # config checks it without the model
    assert parameter_shapes(18, frame_size=84, conv_stack="nature")["lstm.weight_ih"] == (1024, 3136)
    with pytest.raises(ValueError, match="frame_size must be at least 36 for conv_stack=nature, got 35"):
        parameter_shapes(18, frame_size=35, conv_stack="nature")  # not a 64-feature network from a side of 0
