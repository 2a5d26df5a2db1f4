"""Gymnasium environments of pc_transformers; importing this package registers their ids.

- ``pc_transformers/Maze-v0``: the discrete maze of procedure cloning (:class:`MazeEnv`), 100 steps per episode.
"""

import gymnasium

from pc_transformers.envs.maze import MazeEnv, MazeSplits, format_layout, make_maze, maze_splits, parse_layout
from pc_transformers.envs.minatar import (  # imports minatar only when called
    MINATAR_GAMES,
    RandomStart,
    make_minatar_env,
)

__all__ = ["MazeEnv", "MazeSplits", "format_layout", "make_maze", "maze_splits", "parse_layout"]
__all__ += ["MINATAR_GAMES", "RandomStart", "make_minatar_env"]

# Guarded so that re-importing (e.g. importlib.reload in notebooks) does not trigger gymnasium's re-registration
# warning.
if "pc_transformers/Maze-v0" not in gymnasium.registry:
    gymnasium.register(
        id="pc_transformers/Maze-v0",
        entry_point="pc_transformers.envs.maze:MazeEnv",
        max_episode_steps=100,
    )
