"""Procedure format "bfs_trace" (format B of REFERENCE.md, the paper's Figure 3): search from the agent, backtrack.

The expert runs breadth-first search from the AGENT, trying neighbours in action order 0, 1, 2, 3
(`pc_transformers.grid`: down, right, up, left). Its procedure has two parts:

1. ``visited``: ``(num_visited, 2)`` int16, one ``(x, y)`` row per newly visited cell, in the order BFS discovers
   them. The agent's own cell is not listed; the search stops as soon as it discovers the goal, so the goal is
   the last row.
2. ``path``: ``(path_length,)`` int8, the backtrack from the goal to the agent along BFS parent pointers, one
   action per edge. An edge's token is the action that moves from the parent (agent side) to the child (goal
   side). Edges are listed from the goal end to the agent end, so the LAST edge is the agent's first move, which
   is the record's ``action``. ``path_length`` is the BFS distance between agent and goal.

``steps`` chains both parts: ``("visit", (x, y))`` for each visited cell, then ``("edge", action)`` for each edge.

Worked example (``#`` wall, ``A`` agent at (2, 0), ``G`` goal at (1, 2); numbers give the discovery order)::

    maze      visited
    . . . #   4 . . #
    . # G .   2 # 6 .
    A . . .   A 1 3 5

Expanding A = (2, 0) tries down (outside the grid), right (2, 1) -> 1, up (1, 0) -> 2, left (outside). Expanding
(2, 1): right (2, 2) -> 3; up is a wall; left is A, already visited. Expanding (1, 0): up (0, 0) -> 4. Expanding
(2, 2): right (2, 3) -> 5, up (1, 2) = G -> 6, and the search stops. Backtracking from G: G was reached from (2, 2)
by "up" (2), (2, 2) from (2, 1) by "right" (1), (2, 1) from A by "right" (1)::

    >>> walls = np.array([[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
    >>> record = bfs_trace(walls, goal=(1, 2), agent=(2, 0))
    >>> record
    BFSTraceRecord(visited=int16(6, 2), path=int8(3,), action=1)
    >>> record.visited.tolist()
    [[2, 1], [1, 0], [2, 2], [0, 0], [2, 3], [1, 2]]
    >>> record.path.tolist()  # goal end first; the last entry is the agent's first move
    [2, 1, 1]

Deviations from the reference implementation (google-research/dice_rl ``environments/gridworld/maze.py``,
``get_bfs_sequence``):

* Neighbour order. The original tries actions 3, 2, 1, 0; we try 0, 1, 2, 3, the order used everywhere else in
  this package (`pc_transformers.grid.ACTION_DELTAS`, the tie rule of "bfs_maps").
* Stopping. The original notices the goal only after finishing the BFS level on which it discovered it, so cells
  discovered after the goal on that level are listed too. We stop at the goal, which makes it the last visited
  cell (a fixed end marker for the search part) and the trace no longer than the search needs.
* Tokens. The original emits one tabular index per step encoding a (cell, action) pair: the visited cell with the
  action that reached it, and while backtracking the parent cell with the edge's action. We keep the two parts
  minimal, cells for the search and actions for the path, and leave serialization to the tokenizer
  (``pc_transformers/tokenization_pc.py``).
* The original indexes its visited table before checking bounds (Python's negative indices wrap around); cells
  outside the grid are simply walls here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pc_transformers.grid import ACTION_DELTAS, NUM_ACTIONS
from pc_transformers.procedures.base import (
    Procedure,
    ProcedureRecord,
    _as_action,
    _as_int_array,
    exact_fields_eq,
    not_connected_error,
    register_procedure,
    shape_repr,
    validate_maze_inputs,
)

__all__ = ["BFSTraceRecord", "BFSTrace", "bfs_trace"]

_INT16_MAX = int(np.iinfo(np.int16).max)


@dataclass(frozen=True, eq=False)
class BFSTraceRecord(ProcedureRecord):
    """A BFS from the agent (cells in discovery order) and the backtracked path (actions, goal end first).

    Attributes:
        visited: ``(num_visited, 2)`` int16 ``(x, y)`` cells in discovery order, goal last; read-only.
        path: ``(path_length,)`` int8 actions, goal end first; read-only.
        action: the agent's first move, equal to ``path[-1]``.
    """

    format: ClassVar[str] = "bfs_trace"

    visited: np.ndarray
    path: np.ndarray
    action: int

    __eq__ = exact_fields_eq
    __hash__ = None
    __repr__ = shape_repr

    def __post_init__(self):
        visited, path = np.asarray(self.visited), np.asarray(self.path)
        if visited.ndim != 2 or visited.shape[1] != 2 or visited.shape[0] == 0:
            raise ValueError(f"visited must be a non-empty (num_visited, 2) array, got shape {visited.shape}")
        if path.ndim != 1 or path.shape[0] == 0:
            raise ValueError(f"path must be a non-empty (path_length,) array, got shape {path.shape}")
        if path.shape[0] > visited.shape[0]:
            raise ValueError(
                f"path_length ({path.shape[0]}) cannot exceed num_visited ({visited.shape[0]}): every path edge "
                "ends in a visited cell"
            )
        object.__setattr__(self, "visited", _as_int_array(visited, "visited", np.int16, 0, _INT16_MAX))
        object.__setattr__(self, "path", _as_int_array(path, "path", np.int8, 0, NUM_ACTIONS - 1))
        action = _as_action(self.action, NUM_ACTIONS)
        if action != self.path[-1]:
            raise ValueError(f"action must equal path[-1] (the agent's first move), got {action} and {self.path[-1]}")
        object.__setattr__(self, "action", action)

    @property
    def num_visited(self) -> int:
        return self.visited.shape[0]

    @property
    def path_length(self) -> int:
        return self.path.shape[0]

    @property
    def steps(self) -> tuple:
        """``(("visit", (x, y)), ..., ("edge", action), ...)``: the search, then the backtrack (goal end first)."""
        visits = tuple(("visit", (x, y)) for x, y in self.visited.tolist())
        return visits + tuple(("edge", action) for action in self.path.tolist())

    @property
    def metadata(self) -> dict:
        return {
            "num_steps": self.num_visited + self.path_length,
            "num_visited": self.num_visited,
            "path_length": self.path_length,
        }


def bfs_trace(walls: np.ndarray, goal: tuple[int, int], agent: tuple[int, int]) -> BFSTraceRecord:
    """Run the "bfs_trace" expert: BFS from ``agent`` until it discovers ``goal``, then backtrack.

    Args:
        walls: ``(height, width)`` bool, True = wall.
        goal: ``(x, y)`` free cell, different from ``agent``.
        agent: ``(x, y)`` free cell connected to ``goal``.

    Returns:
        `BFSTraceRecord`; ``path_length`` is the BFS distance between agent and goal.
    """
    walls, goal, agent = validate_maze_inputs(walls, goal, agent)
    height, width = walls.shape
    # A plain Python BFS over the flattened grid, padded with a ring of walls so that neighbour indices never leave
    # the array and "outside the grid" needs no bounds check. Python lists beat numpy for per-cell work.
    stride = width + 2
    padded = np.ones((height + 2, width + 2), dtype=bool)  # (H + 2, W + 2)
    padded[1:-1, 1:-1] = walls
    is_open = (~padded).ravel().tolist()  # open = free and not yet discovered
    offsets = [int(dx) * stride + int(dy) for dx, dy in ACTION_DELTAS]  # flat index step of each action
    start = (agent[0] + 1) * stride + agent[1] + 1
    target = (goal[0] + 1) * stride + goal[1] + 1
    reached_by = {}  # flat cell -> action from its parent; the parent is cell - offsets[action]
    queue = [start]  # the discovery order: queue[1:] is `visited`
    is_open[start] = False
    head = 0
    found = False
    while head < len(queue) and not found:
        cell = queue[head]
        head += 1
        for action in range(NUM_ACTIONS):
            child = cell + offsets[action]
            if is_open[child]:
                is_open[child] = False
                reached_by[child] = action
                queue.append(child)
                if child == target:
                    found = True
                    break
    if not found:
        raise not_connected_error(goal, agent)

    path = []
    cell = target
    while cell != start:
        action = reached_by[cell]
        path.append(action)
        cell -= offsets[action]

    flat = np.array(queue[1:], dtype=np.int64)  # (num_visited,)
    visited = np.stack([flat // stride - 1, flat % stride - 1], axis=1)  # (num_visited, 2)
    return BFSTraceRecord(visited=visited, path=np.array(path, dtype=np.int8), action=path[-1])


@register_procedure
class BFSTrace(Procedure):
    """The "bfs_trace" expert as a `Procedure`: ``BFSTrace()(walls, goal, agent)`` equals `bfs_trace`."""

    name = "bfs_trace"
    record_type = BFSTraceRecord

    def __call__(self, walls: np.ndarray, goal: tuple[int, int], agent: tuple[int, int]) -> BFSTraceRecord:
        return bfs_trace(walls, goal, agent)
