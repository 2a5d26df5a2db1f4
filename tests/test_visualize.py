"""`pc-transformers visualize`: the PNG shows generated vs expert maps with differences marked, the GIF every level
and every step."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pc_transformers import PCConfig, PCForProcedureCloning, PCTokenizer
from pc_transformers.cli import main
from pc_transformers.envs import MazeEnv
from pc_transformers.policy import PCPolicy
from pc_transformers.procedures import bfs_maps
from pc_transformers.visualize import WRONG, Episode, render


def _episode(model_maps) -> Episode:
    env = MazeEnv(size=8, maze_seed=1_000_001)
    env.reset(seed=0)
    expert = bfs_maps(env.walls, env.goal, env.agent).maps
    path = [tuple(env.agent), tuple(env.goal)]
    return Episode(np.asarray(env.walls), tuple(env.goal), path, True, model_maps(expert), expert)


def _has_colour(image: Image.Image, rgb) -> bool:
    return bool((np.asarray(image.convert("RGB")) == np.array(rgb, dtype=np.uint8)).all(-1).any())


def test_differences_from_the_expert_are_outlined():
    same, _ = render(_episode(lambda e: e.copy()), "PC")
    assert not _has_colour(same, WRONG)

    def one_wrong_cell(expert):
        maps = expert.copy()
        free = np.argwhere(maps[-1] == 4)  # an unreached cell of the last map, now labelled "down"
        maps[-1][tuple(free[0])] = 0
        return maps

    wrong, frames = render(_episode(one_wrong_cell), "PC")
    assert _has_colour(wrong, WRONG)
    episode = _episode(one_wrong_cell)
    assert len(frames) == len(episode.expert_maps) + len(episode.path)  # one frame per level, then per step
    assert _has_colour(frames[len(episode.expert_maps) - 1], WRONG) and not _has_colour(frames[0], WRONG)


def test_bc_episode_has_no_maps_panel():
    summary, frames = render(_episode(lambda e: None), "BC")
    assert len(frames) == 2 and summary.width < render(_episode(lambda e: e), "PC")[0].width


def test_visualize_command_writes_png_and_gif(tmp_path, capsys):
    torch.manual_seed(0)
    tokenizer = PCTokenizer.for_maze()
    config = PCConfig.from_tokenizer(tokenizer, grid_size=6, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32)
    PCPolicy(PCForProcedureCloning(config), tokenizer).save_pretrained(tmp_path / "pc")
    assert main(["visualize", str(tmp_path / "pc"), "--maze-seed", "1000000", "--max-steps", "5",
                 "--out", str(tmp_path / "fig")]) == 0
    png, gif = tmp_path / "fig" / "maze1000000.png", tmp_path / "fig" / "maze1000000.gif"
    assert str(png) in capsys.readouterr().out
    assert Image.open(png).format == "PNG"
    animation = Image.open(gif)
    assert animation.format == "GIF" and animation.n_frames >= 2
    assert main(["visualize", str(tmp_path / "missing"), "--maze-seed", "1"]) == 2
