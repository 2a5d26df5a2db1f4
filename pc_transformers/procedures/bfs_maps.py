"""Procedure format "bfs_maps" (format A of REFERENCE.md): breadth-first search from the goal, one map per level.

The expert grows a BFS tree from the GOAL. Its procedure is the sequence of cumulative maps ``x_0, x_1, ..., x_d``
where ``d`` is the BFS distance from the agent to the goal. Each map is ``(height, width)`` int8 with values

====== =============================================================================
value  meaning
====== =============================================================================
0-3    reached; the action (`pc_transformers.grid`) moving the cell one step to the goal
4      `UNREACHED` (not reached yet, a wall, or cut off from the goal)
5      `GOAL`, the root of the search
====== =============================================================================

``x_0`` = `initial_map` holds only the goal. ``x_l = bfs_step(x_{l-1}, walls)`` labels every free unreached cell
that has a reached neighbour, so ``x_l`` covers exactly the cells at distance <= l. The sequence stops at the first
map that labels the agent's cell, and the action is that label: ``action = x_d[agent]``. It always starts a
shortest path, because every label points to a cell one step closer to the goal.

Worked example (``#`` wall, ``G`` goal, ``A`` agent; in the maps ``*`` goal, ``_`` unreached, arrows ``v > ^ <``
for actions 0 1 2 3)::

    maze      x_0       x_1       x_2       x_3       x_4
    . . . #   _ _ _ #   _ _ v #   _ > v #   > > v #   > > v #
    . # G .   _ # * _   _ # * <   _ # * <   _ # * <   v # * <
    A . . .   _ _ _ _   _ _ ^ _   _ > ^ ^   > > ^ ^   > > ^ ^

    >>> walls = np.array([[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    >>> record = bfs_maps(walls, goal=(1, 2), agent=(2, 0))
    >>> record
    BFSMapsRecord(maps=int8(4, 3, 4), action=1)
    >>> record.path_length, int(record.maps[-1][2, 0])
    (3, 1)

The agent at (2, 0) is 3 steps away, so its record holds ``x_0 .. x_3`` and its action is 1 (right), read off
``x_3``. `all_bfs_maps` continues to ``x_4``, which labels the last reachable cell, (1, 0). That cell shows the
tie rule: down (0) and up (2) both lead to level-3 cells, and the lowest action index wins.

Because the search is rooted at the goal, the maps do not depend on the agent: every start in one maze reads a
prefix of the same stack. Data generation computes `all_bfs_maps` once per maze and slices it with
`record_from_maps` (or ``bfs_maps(..., maps=stack)``), which gives exactly what `bfs_maps` computes from scratch.

Deviations from the reference implementation (google-research ``procedure_cloning/utils.py``, ``get_vi_sequence``):

* Tie-breaking. The original labels a cell with the action from whichever parent dequeues it first, i.e. by queue
  order, which depends on the order in which the whole previous level was discovered: it is not a function of
  ``x_{l-1}`` alone. Here a newly reached cell takes the LOWEST action index ``a`` whose neighbour
  ``cell + ACTION_DELTAS[a]`` is reached in ``x_{l-1}`` (any such neighbour is on level ``l - 1``, so this is
  still BFS with ties broken in a fixed order). Each step is then a local, translation-equivariant rule of the
  previous map (a 3x3 neighbourhood), which a convnet or local-attention model can learn from a few mazes and apply
  to unseen ones (REFERENCE.md, format A).
* The goal. The original never labels the target (it stays 4; its model gets the target as a separate input
  channel) and its first map is already level 1, so it has ``d`` maps. We add ``x_0`` with the goal marked `GOAL`
  = 5, giving ``d + 1`` maps: every map then shows the root of the search, and each step ``x_{l-1} -> x_l``,
  the first one included, is a function of the previous map and the walls alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pc_transformers.grid import NUM_ACTIONS, shift
from pc_transformers.procedures.base import (
    Procedure,
    ProcedureRecord,
    _as_action,
    _as_cell,
    _as_int_array,
    exact_fields_eq,
    not_connected_error,
    register_procedure,
    shape_repr,
    validate_cell,
    validate_maze_inputs,
    validate_walls,
)

__all__ = [
    "UNREACHED",
    "GOAL",
    "BFSMapsRecord",
    "BFSMaps",
    "bfs_step",
    "initial_map",
    "all_bfs_maps",
    "record_from_maps",
    "bfs_maps",
]

UNREACHED = 4  # as the original: value n_action = "no action recorded yet"
GOAL = 5  # ours: the root of the search (the original leaves the target at 4)


@dataclass(frozen=True, eq=False)
class BFSMapsRecord(ProcedureRecord):
    """Cumulative BFS maps from the goal up to the agent's level, and the action read at the agent's cell.

    Attributes:
        maps: ``(num_steps, height, width)`` int8, ``maps[l]`` = the map after level ``l`` (values 0-5, see the
            module docstring); read-only.
        action: ``maps[-1]`` at the agent's cell, an int in [0, 4).
    """

    format: ClassVar[str] = "bfs_maps"

    maps: np.ndarray
    action: int

    __eq__ = exact_fields_eq
    __hash__ = None
    __repr__ = shape_repr

    def __post_init__(self):
        maps = np.asarray(self.maps)
        if maps.ndim != 3 or 0 in maps.shape:
            raise ValueError(f"maps must be a non-empty (num_steps, height, width) array, got shape {maps.shape}")
        object.__setattr__(self, "maps", _as_int_array(maps, "maps", np.int8, 0, GOAL))
        object.__setattr__(self, "action", _as_action(self.action, NUM_ACTIONS))

    @property
    def num_steps(self) -> int:
        """Number of maps, ``x_0`` included: the BFS distance from the agent to the goal plus one."""
        return self.maps.shape[0]

    @property
    def path_length(self) -> int:
        return self.maps.shape[0] - 1

    @property
    def steps(self) -> np.ndarray:
        """The maps, ``(num_steps, height, width)`` int8."""
        return self.maps

    @property
    def metadata(self) -> dict:
        height, width = self.maps.shape[1:]
        return {"num_steps": self.num_steps, "path_length": self.path_length, "height": height, "width": width}


def bfs_step(prev_map: np.ndarray, walls: np.ndarray) -> np.ndarray:
    """One BFS level: the local rule mapping ``x_{l-1}`` to ``x_l``.

    A cell keeps its value if it is reached (not `UNREACHED`). A free unreached cell with a reached neighbour gets
    the lowest action ``a`` whose neighbour ``cell + ACTION_DELTAS[a]`` is reached; any other cell stays
    `UNREACHED`. This is a deliberate deviation from the original's queue-order labels (module docstring).

    Args:
        prev_map: ``(height, width)`` int map, values as in the module docstring.
        walls: ``(height, width)`` bool, True = wall (cells outside the grid count as walls).

    Returns:
        ``(height, width)`` map of ``prev_map``'s dtype; a new array.
    """
    prev_map, walls = np.asarray(prev_map), np.asarray(walls)
    if walls.dtype != bool:  # `~` below must be logical, not bitwise on integers
        walls = validate_walls(walls)
    if prev_map.shape != walls.shape:
        raise ValueError(f"prev_map and walls must have the same shape, got {prev_map.shape} and {walls.shape}")
    reached = prev_map != UNREACHED  # (H, W)
    next_map = prev_map.copy()
    todo = ~(reached | walls)  # (H, W) free cells not labelled yet
    # Write the labels from the highest action down, so that where several neighbours are reached the lowest
    # index is written last and wins (25% faster than removing labelled cells from `todo` after each action).
    for action in reversed(range(NUM_ACTIONS)):
        hit = todo & shift(reached, action, False)  # (H, W): the neighbour in direction `action` is reached
        next_map[hit] = action
    return next_map


def initial_map(walls: np.ndarray, goal: tuple[int, int]) -> np.ndarray:
    """``x_0``: ``(height, width)`` int8, `UNREACHED` everywhere except `GOAL` at ``goal``."""
    x0 = np.full(np.shape(walls), UNREACHED, dtype=np.int8)
    x0[goal] = GOAL
    return x0


def _search(walls: np.ndarray, goal: tuple[int, int], agent: tuple[int, int] | None) -> list[np.ndarray]:
    """Iterate `bfs_step` from `initial_map` until ``agent`` is labelled (or, with ``agent=None``, nothing changes).

    Returns the maps as a list; when the search stops changing before reaching ``agent`` the list ends there and
    the caller decides what that means. Each level costs about 11 us on a 16x16 grid, all in numpy.
    """
    maps = [initial_map(walls, goal)]
    while agent is None or maps[-1][agent] == UNREACHED:
        next_map = bfs_step(maps[-1], walls)
        if np.array_equal(next_map, maps[-1]):  # the goal's component is fully labelled
            break
        maps.append(next_map)
    return maps


def all_bfs_maps(walls: np.ndarray, goal: tuple[int, int]) -> np.ndarray:
    """Every BFS level from ``goal``: ``(num_levels, height, width)`` int8, ``x_0`` to the first map that labels
    every cell reachable from the goal (so ``num_levels`` = the largest distance to the goal plus one).

    Goal-rooted maps do not depend on the agent, so one stack serves all starts of a maze; slice it with
    `record_from_maps` or pass it to ``bfs_maps(..., maps=...)``.
    """
    walls = validate_walls(walls)
    goal = validate_cell(walls, goal, "goal")
    return np.stack(_search(walls, goal, agent=None))


def record_from_maps(all_maps: np.ndarray, agent: tuple[int, int]) -> BFSMapsRecord:
    """The record for ``agent`` from a precomputed `all_bfs_maps` stack: ``all_maps[:d + 1]`` and its action.

    ``d`` is the first level whose map labels the agent's cell. The maps are copied, so the record stays valid
    if the stack is reused or modified.
    """
    all_maps = np.asarray(all_maps)
    if all_maps.ndim != 3:
        raise ValueError(f"all_maps must be (num_levels, height, width), got shape {all_maps.shape}")
    height, width = all_maps.shape[1:]
    x, y = _as_cell(agent, "agent")
    if not (0 <= x < height and 0 <= y < width):
        raise ValueError(f"agent cell {(x, y)} lies outside the {height}x{width} grid")
    labelled = np.flatnonzero(all_maps[:, x, y] != UNREACHED)  # levels at which the agent's cell is labelled
    if labelled.size == 0:
        raise ValueError(
            f"agent cell {(x, y)} is never labelled in these maps: it is a wall or not connected to the goal"
        )
    level = int(labelled[0])
    if all_maps[level, x, y] == GOAL:
        raise ValueError(f"the agent is already at the goal {(x, y)}; a procedure needs at least one step to it")
    return BFSMapsRecord(maps=all_maps[: level + 1], action=int(all_maps[level, x, y]))


def bfs_maps(
    walls: np.ndarray, goal: tuple[int, int], agent: tuple[int, int], maps: np.ndarray | None = None
) -> BFSMapsRecord:
    """Run the "bfs_maps" expert from ``agent`` to ``goal``.

    Args:
        walls: ``(height, width)`` bool, True = wall.
        goal: ``(x, y)`` free cell, the root of the search.
        agent: ``(x, y)`` free cell connected to ``goal``, different from it.
        maps: optional ``all_bfs_maps(walls, goal)`` computed beforehand; the result is then sliced from it
            instead of recomputed (identical records, much faster when many starts share a maze).

    Returns:
        `BFSMapsRecord` with ``d + 1`` maps, ``d`` the BFS distance between agent and goal.
    """
    walls, goal, agent = validate_maze_inputs(walls, goal, agent)
    if maps is None:
        searched = _search(walls, goal, agent)
        if searched[-1][agent] == UNREACHED:
            raise not_connected_error(goal, agent)
        return BFSMapsRecord(maps=np.stack(searched), action=int(searched[-1][agent]))
    maps = np.asarray(maps)
    if maps.ndim != 3 or maps.shape[1:] != walls.shape:
        raise ValueError(f"maps must be all_bfs_maps(walls, goal) of shape (num_levels, {walls.shape[0]}, "
                         f"{walls.shape[1]}), got shape {maps.shape}")
    if maps[0][goal] != GOAL:
        raise ValueError(f"maps must be all_bfs_maps(walls, goal) for goal {goal}, but maps[0] has no GOAL there")
    if maps[-1][agent] == UNREACHED:
        raise not_connected_error(goal, agent)
    return record_from_maps(maps, agent)


@register_procedure
class BFSMaps(Procedure):
    """The "bfs_maps" expert as a `Procedure`: ``BFSMaps()(walls, goal, agent)`` equals `bfs_maps`."""

    name = "bfs_maps"
    record_type = BFSMapsRecord

    def __call__(self, walls: np.ndarray, goal: tuple[int, int], agent: tuple[int, int]) -> BFSMapsRecord:
        return bfs_maps(walls, goal, agent)
