"""Tests for pc_transformers.procedures: the BFS experts against an independent shortest-path computation.

Distances come from scipy's csgraph BFS on the grid graph, never from pc_transformers.grid.distance_map, so that
the experts and the reference share no code. The mazes are generated here (not by pc_transformers.envs) in four
kinds: open rooms (many ties between shortest paths), random walls with and without a border (ties, dead ends,
cells cut off from the goal, walls touching the grid edge) and 1-wide corridors (long paths).
"""

from __future__ import annotations

import dataclasses
import doctest
import importlib
from collections import deque
from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse
from scipy.sparse.csgraph import shortest_path

from pc_transformers.grid import ACTION_DELTAS
from pc_transformers.procedures import (
    GOAL,
    UNREACHED,
    BFSMaps,
    BFSMapsRecord,
    BFSTrace,
    BFSTraceRecord,
    Procedure,
    ProcedureRecord,
    all_bfs_maps,
    available_procedures,
    bfs_maps,
    bfs_step,
    bfs_trace,
    get_procedure,
    initial_map,
    record_from_maps,
    register_procedure,
)
from pc_transformers.procedures import base as procedures_base
from pc_transformers.procedures.base import exact_fields_eq, shape_repr

DELTAS = [tuple(int(v) for v in delta) for delta in ACTION_DELTAS]  # [(dx, dy)] per action
KINDS = ("open", "random", "random_noborder", "corridors")
SIZES = (8, 16, 32)
MAZES_PER_CASE = 25
AGENTS_PER_MAZE = 5

# The worked example of the module docstrings.
EXAMPLE_WALLS = np.array([[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
EXAMPLE_GOAL, EXAMPLE_AGENT = (1, 2), (2, 0)


# ---------------------------------------------------------------------------------------------------------------
# Test mazes and the independent reference
# ---------------------------------------------------------------------------------------------------------------


def corridor_walls(size: int, rng: np.random.Generator, loop_prob: float = 0.05) -> np.ndarray:
    """A 1-wide corridor maze: recursive backtracker over the odd cells, plus a few extra openings (loops)."""
    walls = np.ones((size, size), dtype=bool)
    cells = [(x, y) for x in range(1, size - 1, 2) for y in range(1, size - 1, 2)]
    start = cells[rng.integers(len(cells))]
    walls[start] = False
    stack = [start]
    while stack:
        x, y = stack[-1]
        options = []
        for dx, dy in DELTAS:
            nx, ny = x + 2 * dx, y + 2 * dy
            if 1 <= nx < size - 1 and 1 <= ny < size - 1:
                if walls[nx, ny]:
                    options.append((nx, ny))
                elif rng.random() < loop_prob:
                    walls[x + dx, y + dy] = False
        if options:
            nx, ny = options[rng.integers(len(options))]
            walls[(x + nx) // 2, (y + ny) // 2] = False
            walls[nx, ny] = False
            stack.append((nx, ny))
        else:
            stack.pop()
    return walls


def make_walls(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "open":
        walls = np.zeros((size, size), dtype=bool)
    elif kind == "random":
        walls = rng.random((size, size)) < 0.25
    elif kind == "random_noborder":  # walls touch the grid edge: the procedures must treat outside as wall
        return rng.random((size, size)) < 0.25
    elif kind == "corridors":
        return corridor_walls(size, rng)
    else:
        raise ValueError(kind)
    walls[[0, -1], :] = True
    walls[:, [0, -1]] = True
    return walls


def grid_distances(walls: np.ndarray, sources: list[tuple[int, int]]) -> np.ndarray:
    """``(len(sources), H, W)`` float BFS distances (inf if unreachable or a wall) via scipy's csgraph."""
    height, width = walls.shape
    index = np.arange(height * width).reshape(height, width)
    free = ~walls
    right = free[:, :-1] & free[:, 1:]
    down = free[:-1, :] & free[1:, :]
    rows = np.concatenate([index[:, :-1][right], index[:-1, :][down]])
    cols = np.concatenate([index[:, 1:][right], index[1:, :][down]])
    graph = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(height * width,) * 2).tocsr()
    dist = shortest_path(graph, directed=False, unweighted=True, indices=[index[s] for s in sources])
    dist = dist.reshape(len(sources), height, width)
    dist[:, walls] = np.inf
    return dist


def lowest_shortest_action(dist: np.ndarray, cell: tuple[int, int]) -> int:
    """The lowest action index that moves ``cell`` one step closer (in ``dist``) to the source."""
    height, width = dist.shape
    for action, (dx, dy) in enumerate(DELTAS):
        nx, ny = cell[0] + dx, cell[1] + dy
        if 0 <= nx < height and 0 <= ny < width and dist[nx, ny] == dist[cell] - 1:
            return action
    raise AssertionError(f"no shortest-path action at {cell}")


def reference_trace(walls: np.ndarray, goal, agent):
    """The format-B trace written the naive way, straight from its definition, for exact comparison."""
    height, width = walls.shape
    parent = {agent: None}
    order = []
    queue = deque([agent])
    while queue:
        cell = queue.popleft()
        for action, (dx, dy) in enumerate(DELTAS):
            child = (cell[0] + dx, cell[1] + dy)
            inside = 0 <= child[0] < height and 0 <= child[1] < width
            if inside and not walls[child] and child not in parent:
                parent[child] = (cell, action)
                order.append(child)
                if child == goal:
                    path = []
                    while parent[child] is not None:
                        child, action = parent[child]
                        path.append(action)
                    return order, path
                queue.append(child)
    raise AssertionError("not connected")


def random_case(kind: str, size: int, seed: int):
    """(walls, goal, distances from the goal, candidate agent cells) with at least one candidate."""
    rng = np.random.default_rng([seed, size, KINDS.index(kind)])
    while True:
        walls = make_walls(kind, size, rng)
        free = np.argwhere(~walls)
        goal = tuple(int(v) for v in free[rng.integers(len(free))])
        dist = grid_distances(walls, [goal])[0]
        candidates = [tuple(int(v) for v in c) for c in np.argwhere(np.isfinite(dist) & (dist > 0))]
        if candidates:
            return walls, goal, dist, candidates, rng


# ---------------------------------------------------------------------------------------------------------------
# Exactness on random mazes
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("kind", KINDS)
def test_bfs_maps_and_trace_match_independent_shortest_paths(kind, size):
    num_ties = 0
    for seed in range(MAZES_PER_CASE):
        walls, goal, dist, candidates, rng = random_case(kind, size, seed)
        all_maps = all_bfs_maps(walls, goal)  # (num_levels, H, W)
        max_dist = int(dist[np.isfinite(dist)].max())

        # The stack: x_0, then one level per map up to the farthest reachable cell.
        assert all_maps.dtype == np.int8 and all_maps.shape == (max_dist + 1, size, size)
        np.testing.assert_array_equal(all_maps[0], initial_map(walls, goal))
        for level in range(max_dist + 1):
            np.testing.assert_array_equal(all_maps[level] != UNREACHED, dist <= level)  # exactly the BFS ball
            assert (all_maps[level] == GOAL).sum() == 1 and all_maps[level][goal] == GOAL
        for level in range(1, max_dist + 1):
            was_reached = all_maps[level - 1] != UNREACHED
            np.testing.assert_array_equal(all_maps[level][was_reached], all_maps[level - 1][was_reached])  # monotone
            np.testing.assert_array_equal(all_maps[level], bfs_step(all_maps[level - 1], walls))  # the local rule
        np.testing.assert_array_equal(bfs_step(all_maps[-1], walls), all_maps[-1])  # fixed point at the end

        # Labels: the lowest-index shortest-path action at every reached cell.
        final = all_maps[-1]
        for cell in zip(*np.nonzero((final != UNREACHED) & (final != GOAL))):
            cell = (int(cell[0]), int(cell[1]))
            assert final[cell] == lowest_shortest_action(dist, cell), (kind, size, seed, cell)
            num_ties += sum(
                1
                for dx, dy in DELTAS
                if 0 <= cell[0] + dx < size and 0 <= cell[1] + dy < size
                and dist[cell[0] + dx, cell[1] + dy] == dist[cell] - 1
            ) > 1

        picks = rng.choice(len(candidates), size=min(AGENTS_PER_MAZE, len(candidates)), replace=False)
        agents = [candidates[i] for i in picks]
        agent_dists = grid_distances(walls, agents)  # (num_agents, H, W) distances from each agent
        for agent, from_agent in zip(agents, agent_dists):
            d = int(dist[agent])
            assert from_agent[goal] == d

            # Format A, from scratch and from the precomputed stack.
            record = bfs_maps(walls, goal, agent)
            assert record.num_steps == d + 1 and record.path_length == d
            np.testing.assert_array_equal(record.maps, all_maps[: d + 1])
            assert record == bfs_maps(walls, goal, agent, maps=all_maps) == record_from_maps(all_maps, agent)
            assert record.action == lowest_shortest_action(dist, agent)
            dx, dy = DELTAS[record.action]
            assert dist[agent[0] + dx, agent[1] + dy] == d - 1
            assert record.metadata == {"num_steps": d + 1, "path_length": d, "height": size, "width": size}

            # Format B.
            trace = bfs_trace(walls, goal, agent)
            assert trace.path_length == d and trace.action == trace.path[-1]
            dx, dy = DELTAS[trace.action]
            assert dist[agent[0] + dx, agent[1] + dy] == d - 1
            cell = agent
            for action in trace.path[::-1]:  # replay from the agent end
                dx, dy = DELTAS[action]
                cell = (cell[0] + dx, cell[1] + dy)
                assert 0 <= cell[0] < size and 0 <= cell[1] < size and not walls[cell]
            assert cell == goal
            visited = [tuple(v) for v in trace.visited.tolist()]
            assert visited[-1] == goal and agent not in visited and len(set(visited)) == len(visited)
            visited_dists = [from_agent[v] for v in visited]
            assert visited_dists == sorted(visited_dists)  # breadth-first
            closer = np.argwhere((from_agent > 0) & (from_agent < d))  # all discovered before the goal
            assert set(visited) >= {tuple(int(v) for v in c) for c in closer}
            expected_order, expected_path = reference_trace(walls, goal, agent)
            assert visited == expected_order and trace.path.tolist() == expected_path
            assert trace.metadata == {"num_steps": len(visited) + d, "num_visited": len(visited), "path_length": d}
    if kind in ("open", "random"):
        assert num_ties > 0  # the tie rule was exercised


def test_tie_rule_picks_lowest_action():
    walls = np.zeros((3, 3), dtype=bool)
    x1 = bfs_step(initial_map(walls, (0, 0)), walls)
    x2 = bfs_step(x1, walls)
    # (1, 1) can go up (2) to (0, 1) or left (3) to (1, 0): up has the lower index.
    assert x1[0, 1] == 3 and x1[1, 0] == 2 and x2[1, 1] == 2
    # From (1, 1), goal (2, 2): down (0) and right (1) are both shortest; down wins.
    assert bfs_maps(walls, (2, 2), (1, 1)).action == 0


def test_worked_examples():
    record = bfs_maps(EXAMPLE_WALLS, EXAMPLE_GOAL, EXAMPLE_AGENT)
    arrows = "v>^<_*"
    rows = ["".join("#" if EXAMPLE_WALLS[x, y] else arrows[v] for y, v in enumerate(row)) for x, row in
            enumerate(all_bfs_maps(EXAMPLE_WALLS, EXAMPLE_GOAL)[-1])]
    assert rows == [">>v#", "v#*<", ">>^^"]
    assert record.action == 1 and record.num_steps == 4
    trace = bfs_trace(EXAMPLE_WALLS, EXAMPLE_GOAL, EXAMPLE_AGENT)
    assert trace.visited.tolist() == [[2, 1], [1, 0], [2, 2], [0, 0], [2, 3], [1, 2]]
    assert trace.path.tolist() == [2, 1, 1] and trace.action == 1
    assert trace.steps[0] == ("visit", (2, 1)) and trace.steps[-1] == ("edge", 1) and len(trace.steps) == 9


@pytest.mark.parametrize(
    "module", ["pc_transformers.procedures.bfs_maps", "pc_transformers.procedures.bfs_trace"]
)
def test_docstring_examples_run(module):
    results = doctest.testmod(importlib.import_module(module))
    assert results.attempted > 0 and results.failed == 0


# ---------------------------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------------------------


def test_records_equality_repr_and_immutability():
    maps_record = bfs_maps(EXAMPLE_WALLS, EXAMPLE_GOAL, EXAMPLE_AGENT)
    trace_record = bfs_trace(EXAMPLE_WALLS, EXAMPLE_GOAL, EXAMPLE_AGENT)
    assert repr(maps_record) == "BFSMapsRecord(maps=int8(4, 3, 4), action=1)"
    assert repr(trace_record) == "BFSTraceRecord(visited=int16(6, 2), path=int8(3,), action=1)"
    assert isinstance(maps_record, ProcedureRecord) and maps_record.format == "bfs_maps"
    assert trace_record.format == "bfs_trace" and maps_record.steps is maps_record.maps

    # Equal: same values, whatever integer dtype they were given in.
    assert maps_record == BFSMapsRecord(maps=maps_record.maps.astype(np.int64), action=np.int64(1))
    assert trace_record == BFSTraceRecord(visited=trace_record.visited.tolist(), path=[2, 1, 1], action=1)
    # Unequal: other action, other maps, other shape, other type.
    assert maps_record != BFSMapsRecord(maps=maps_record.maps, action=0)
    changed = maps_record.maps.copy()
    changed[0, 0, 0] = 0
    assert maps_record != BFSMapsRecord(maps=changed, action=1)
    assert maps_record != BFSMapsRecord(maps=maps_record.maps[:3], action=1)
    assert maps_record != trace_record and maps_record != "bfs_maps"
    assert trace_record != BFSTraceRecord(visited=trace_record.visited[::-1], path=[2, 1, 1], action=1)

    with pytest.raises(TypeError):
        hash(maps_record)
    with pytest.raises(dataclasses.FrozenInstanceError):
        maps_record.action = 2
    with pytest.raises(ValueError):  # read-only arrays
        maps_record.maps[0, 0, 0] = 0
    source = maps_record.maps.copy()
    copy = BFSMapsRecord(maps=source, action=1)
    source[0, 0, 0] = 0  # the record keeps its own copy
    assert copy == maps_record
    # Slices of a precomputed stack are copies too.
    stack = all_bfs_maps(EXAMPLE_WALLS, EXAMPLE_GOAL)
    sliced = record_from_maps(stack, EXAMPLE_AGENT)
    stack[:] = 0
    assert sliced == maps_record


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(maps=np.zeros((3, 4), np.int8), action=1), "num_steps, height, width"),
        (dict(maps=np.zeros((0, 3, 4), np.int8), action=1), "non-empty"),
        (dict(maps=np.zeros((2, 3, 4), np.float32), action=1), "integer dtype"),
        (dict(maps=np.zeros((2, 3, 4), bool), action=1), "integer dtype"),
        (dict(maps=np.full((2, 3, 4), 6), action=1), r"\[0, 5\]"),
        (dict(maps=np.full((2, 3, 4), -1), action=1), r"\[0, 5\]"),
        (dict(maps=np.zeros((2, 3, 4), np.int8), action=4), "action"),
        (dict(maps=np.zeros((2, 3, 4), np.int8), action=-1), "action"),
        (dict(maps=np.zeros((2, 3, 4), np.int8), action=1.0), "action"),
        (dict(maps=np.zeros((2, 3, 4), np.int8), action=True), "action"),
    ],
)
def test_bfs_maps_record_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BFSMapsRecord(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(visited=np.zeros((3, 3)), path=[0], action=0), r"\(num_visited, 2\)"),
        (dict(visited=np.zeros((0, 2), int), path=[0], action=0), r"\(num_visited, 2\)"),
        (dict(visited=np.zeros((3, 2), int), path=[], action=0), "path"),
        (dict(visited=np.zeros((1, 2), int), path=[0, 0], action=0), "cannot exceed"),
        (dict(visited=np.zeros((3, 2)), path=[0], action=0), "integer dtype"),
        (dict(visited=-np.ones((3, 2), int), path=[0], action=0), "visited values"),
        (dict(visited=np.full((3, 2), 40000), path=[0], action=0), "visited values"),
        (dict(visited=np.zeros((3, 2), int), path=[4], action=0), "path values"),
        (dict(visited=np.zeros((3, 2), int), path=[0, 1], action=0), r"path\[-1\]"),
        (dict(visited=np.zeros((3, 2), int), path=[0], action=5), "action"),
    ],
)
def test_bfs_trace_record_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BFSTraceRecord(**kwargs)


# ---------------------------------------------------------------------------------------------------------------
# Input errors
# ---------------------------------------------------------------------------------------------------------------

# Two rooms with no door: (1, 1) and (1, 4) are free but not connected.
SPLIT_WALLS = np.array(
    [
        [1, 1, 1, 1, 1, 1],
        [1, 0, 1, 0, 0, 1],
        [1, 0, 1, 0, 0, 1],
        [1, 1, 1, 1, 1, 1],
    ],
    dtype=bool,
)

EXPERTS = [bfs_maps, bfs_trace, BFSMaps(), BFSTrace()]


@pytest.mark.parametrize("expert", EXPERTS)
@pytest.mark.parametrize(
    "walls, goal, agent, match",
    [
        (SPLIT_WALLS, (1, 1), (1, 1), r"the agent is already at the goal \(1, 1\)"),
        (SPLIT_WALLS, (1, 1), (0, 0), r"agent cell \(0, 0\) is a wall"),
        (SPLIT_WALLS, (0, 3), (1, 1), r"goal cell \(0, 3\) is a wall"),
        (SPLIT_WALLS, (1, 1), (4, 1), r"agent cell \(4, 1\) lies outside the 4x6 grid"),
        (SPLIT_WALLS, (1, -1), (1, 1), r"goal cell \(1, -1\) lies outside the 4x6 grid"),
        (SPLIT_WALLS, (1, 1), (1, 4), r"agent cell \(1, 4\) is not connected to goal cell \(1, 1\)"),
        (SPLIT_WALLS, (1, 4), (2, 1), r"agent cell \(2, 1\) is not connected to goal cell \(1, 4\)"),
        (SPLIT_WALLS, (1, 1), (1,), "agent must be an"),
        (SPLIT_WALLS, (1.0, 1), (2, 1), "goal must be an"),
        (SPLIT_WALLS[None], (1, 1), (2, 1), "walls must be a"),
        (SPLIT_WALLS.astype(float), (1, 1), (2, 1), "walls must be a bool"),
    ],
)
def test_input_errors(expert, walls, goal, agent, match):
    with pytest.raises(ValueError, match=match):
        expert(walls, goal, agent)


def test_map_helpers_errors():
    stack = all_bfs_maps(SPLIT_WALLS, (1, 1))
    with pytest.raises(ValueError, match=r"agent cell \(1, 4\) is never labelled"):
        record_from_maps(stack, (1, 4))
    with pytest.raises(ValueError, match=r"already at the goal \(1, 1\)"):
        record_from_maps(stack, (1, 1))
    with pytest.raises(ValueError, match="outside the 4x6 grid"):
        record_from_maps(stack, (9, 9))
    with pytest.raises(ValueError, match="num_levels, height, width"):
        record_from_maps(stack[0], (2, 1))
    with pytest.raises(ValueError, match="not connected"):
        bfs_maps(SPLIT_WALLS, (1, 1), (1, 4), maps=stack)
    with pytest.raises(ValueError, match="no GOAL there"):
        bfs_maps(SPLIT_WALLS, (2, 1), (1, 1), maps=stack)
    with pytest.raises(ValueError, match="shape"):
        bfs_maps(SPLIT_WALLS, (1, 1), (2, 1), maps=stack[:, :3])
    with pytest.raises(ValueError, match=r"goal cell \(0, 0\) is a wall"):
        all_bfs_maps(SPLIT_WALLS, (0, 0))
    with pytest.raises(ValueError, match="same shape"):
        bfs_step(stack[0], SPLIT_WALLS[:3])
    with pytest.raises(ValueError, match="walls must be a bool"):
        bfs_step(stack[0], SPLIT_WALLS * 2)
    np.testing.assert_array_equal(bfs_step(stack[0], SPLIT_WALLS.astype(np.int64)), stack[1])  # 0/1 walls are fine
    with pytest.raises(ValueError, match="agent must be an"):
        record_from_maps(stack, (1.5, 2))
    assert bfs_maps(SPLIT_WALLS, (1, 1), (2, 1), maps=stack) == bfs_maps(SPLIT_WALLS, (1, 1), (2, 1))


# ---------------------------------------------------------------------------------------------------------------
# Registry and the plug-in interface
# ---------------------------------------------------------------------------------------------------------------


def test_registry():
    assert {"bfs_maps", "bfs_trace"} <= set(available_procedures())
    assert available_procedures() == tuple(sorted(available_procedures()))
    assert isinstance(get_procedure("bfs_maps"), BFSMaps) and isinstance(get_procedure("bfs_trace"), BFSTrace)
    for name in ("bfs_maps", "bfs_trace"):
        procedure = get_procedure(name)
        record = procedure(EXAMPLE_WALLS, EXAMPLE_GOAL, EXAMPLE_AGENT)
        assert isinstance(record, procedure.record_type) and record.format == name
    assert get_procedure("bfs_trace")(EXAMPLE_WALLS, EXAMPLE_GOAL, EXAMPLE_AGENT) == bfs_trace(
        EXAMPLE_WALLS, EXAMPLE_GOAL, EXAMPLE_AGENT
    )
    with pytest.raises(ValueError, match=r"unknown procedure 'bfs'.*'bfs_maps', 'bfs_trace'"):
        get_procedure("bfs")
    assert register_procedure(BFSMaps) is BFSMaps  # the same class again is fine


def test_user_defined_procedure(monkeypatch):
    monkeypatch.setattr(procedures_base, "_REGISTRY", dict(procedures_base._REGISTRY))

    @dataclasses.dataclass(frozen=True, eq=False)
    class FirstMoveRecord(ProcedureRecord):
        format: ClassVar[str] = "first_move"
        moves: np.ndarray
        action: int
        __eq__ = exact_fields_eq
        __hash__ = None
        __repr__ = shape_repr

        @property
        def steps(self):
            return self.moves

        @property
        def metadata(self):
            return {"num_steps": len(self.moves)}

    @register_procedure
    class FirstMove(Procedure):
        name = "first_move"
        record_type = FirstMoveRecord

        def __call__(self, walls, goal, agent):
            action = bfs_maps(walls, goal, agent).action
            return FirstMoveRecord(moves=np.array([action], dtype=np.int8), action=action)

    record = get_procedure("first_move")(EXAMPLE_WALLS, EXAMPLE_GOAL, EXAMPLE_AGENT)
    assert repr(record) == "FirstMoveRecord(moves=int8(1,), action=1)"
    assert record == FirstMoveRecord(moves=np.array([1], dtype=np.int8), action=1)
    assert record != FirstMoveRecord(moves=np.array([1], dtype=np.int16), action=1)  # dtypes must match
    assert "first_move" in available_procedures()

    class Impostor(FirstMove):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register_procedure(Impostor)

    class Nameless(Procedure):
        record_type = FirstMoveRecord

        def __call__(self, walls, goal, agent):
            raise NotImplementedError

    with pytest.raises(ValueError, match="non-empty str"):
        register_procedure(Nameless)
    with pytest.raises(ValueError, match="Procedure subclass"):
        register_procedure(object)
    with pytest.raises(TypeError):
        Procedure()  # abstract
