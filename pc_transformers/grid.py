"""Grid conventions shared by the maze environment, the BFS experts and the tokenizer.

Coordinates are ``(x, y) = (row, column)``, as in the paper's code (REFERENCE.md). Actions follow the paper:

====== ========== ============ =====
action  move       direction    arrow
====== ========== ============ =====
0       x + 1      down         ``v``
1       y + 1      right        ``>``
2       x - 1      up           ``^``
3       y - 1      left         ``<``
====== ========== ============ =====

Cells outside the grid count as walls, so a layout needs no border of its own.
"""

from __future__ import annotations

import numpy as np

NUM_ACTIONS = 4
ACTION_DELTAS = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=np.int64)  # (NUM_ACTIONS, 2) as (dx, dy)
ACTION_NAMES = ("down", "right", "up", "left")


def shift(grid: np.ndarray, action: int, fill) -> np.ndarray:
    """Return ``out`` with ``out[x, y] = grid[(x, y) + ACTION_DELTAS[action]]`` (``fill`` outside the grid).

    ``shift(reached, a)[cell]`` answers "is the neighbour of ``cell`` in direction ``a`` reached?", which is the
    vectorized form of every local grid rule in this package.
    """
    out = np.full_like(grid, fill)
    if action == 0:
        out[:-1, :] = grid[1:, :]
    elif action == 1:
        out[:, :-1] = grid[:, 1:]
    elif action == 2:
        out[1:, :] = grid[:-1, :]
    elif action == 3:
        out[:, 1:] = grid[:, :-1]
    else:
        raise ValueError(f"action must be an integer in [0, {NUM_ACTIONS}), got {action!r}")
    return out


def distance_map(walls: np.ndarray, source: tuple[int, int]) -> np.ndarray:
    """Shortest-path distance (4-connected, unit steps) from ``source`` to every cell; -1 where unreachable.

    Args:
        walls: ``(height, width)`` bool array, True for walls.
        source: ``(x, y)`` free cell.

    Returns:
        ``(height, width)`` int32 array. Walls are always -1.
    """
    walls = np.asarray(walls, dtype=bool)
    x, y = source
    if not (0 <= x < walls.shape[0] and 0 <= y < walls.shape[1]):
        raise ValueError(f"source {source} lies outside the {walls.shape[0]}x{walls.shape[1]} grid")
    if walls[x, y]:
        raise ValueError(f"source {source} is a wall")
    dist = np.full(walls.shape, -1, dtype=np.int32)
    free = ~walls
    frontier = np.zeros(walls.shape, dtype=bool)
    frontier[x, y] = True
    reached = frontier.copy()
    level = 0
    while frontier.any():
        dist[frontier] = level
        grown = np.zeros_like(frontier)
        for a in range(NUM_ACTIONS):
            grown |= shift(frontier, a, False)
        frontier = grown & free & ~reached
        reached |= frontier
        level += 1
    return dist
