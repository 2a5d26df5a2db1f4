"""Tests for pc_transformers.envs: maze generators, layouts, MazeEnv and seed splits.

Connectivity and distances are checked against independent computations (scipy.ndimage.label, networkx), not
against pc_transformers.grid.
"""

import importlib
import warnings

import gymnasium as gym
import networkx as nx
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy import ndimage

import pc_transformers.envs
from pc_transformers.envs import MazeEnv, MazeSplits, format_layout, make_maze, maze_splits, parse_layout

SIZES = (5, 8, 16, 32, 64)
WALL_TYPES = ("tunnel", "blocks", "empty")

SMALL = """
#######
#S..#.#
#.#...#
#...#G#
#######
"""


def num_free_components(walls: np.ndarray) -> int:
    """Number of 4-connected components of free cells (scipy's default structure is 4-connectivity)."""
    return ndimage.label(~walls)[1]


def shortest_path_length(walls: np.ndarray, source, target) -> int:
    graph = nx.grid_2d_graph(*walls.shape)
    graph.remove_nodes_from(map(tuple, np.argwhere(walls)))
    return nx.shortest_path_length(graph, tuple(source), tuple(target))


# ------------------------------------------------------------------------------------------------- make_maze


@pytest.mark.parametrize("wall_type", WALL_TYPES)
def test_make_maze_is_deterministic_per_seed_and_varies_across_seeds(wall_type):
    walls, goal = make_maze(16, wall_type, seed=7)
    walls_again, goal_again = make_maze(16, wall_type, seed=7)
    np.testing.assert_array_equal(walls, walls_again)
    assert goal == goal_again
    others = [make_maze(16, wall_type, seed=s) for s in range(8)]
    if wall_type == "empty":  # only the goal depends on the seed
        assert len({g for _, g in others}) > 1
    else:
        assert len({w.tobytes() for w, _ in others}) == len(others)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("wall_type", WALL_TYPES)
def test_every_size_gives_a_bordered_connected_maze_with_a_free_goal(size, wall_type):
    walls, goal = make_maze(size, wall_type, seed=1)
    assert walls.shape == (size, size) and walls.dtype == bool
    assert walls[[0, -1], :].all() and walls[:, [0, -1]].all()
    assert not walls[goal]
    assert all(isinstance(v, int) for v in goal)
    assert num_free_components(walls) == 1


def test_tunnel_geometry_matches_the_paper():
    counts = []
    for seed in range(20):
        walls, _ = make_maze(16, "tunnel", seed)
        counts.append(int((~walls).sum()))
        assert num_free_components(walls) == 1
        anchors = np.arange(1, 14, 3)  # 1, 4, 7, 10, 13
        rooms = np.add.outer(anchors, [0, 1]).ravel()
        # Every 2x2 room is carved, and the 1-thick wall lines meet at never-carved crossings.
        assert not walls[np.ix_(rooms, rooms)].any()
        assert walls[np.ix_([3, 6, 9, 12], [3, 6, 9, 12])].all()
        # Corridors are 2 wide: an opening in a wall line always spans both cells beside a room.
        for line in (3, 6, 9, 12):
            for a in anchors:
                assert walls[line, a] == walls[line, a + 1]
                assert walls[a, line] == walls[a + 1, line]
    # 25 rooms x 4 cells + 24 tree corridors x 2 cells = 148, plus a few loop corridors ("about 150").
    assert min(counts) >= 148
    assert 148 <= np.mean(counts) <= 165


def test_tunnel_is_a_tree_plus_a_few_loops():
    # The backtracker's spanning tree opens 24 of the 40 possible corridors of a 5x5 room grid; loops add a few.
    opened = []
    for seed in range(50):
        walls, _ = make_maze(16, "tunnel", seed)
        opened.append(int(np.sum(~walls[[3, 6, 9, 12]][:, 1:14:3])) + int(np.sum(~walls[1:14:3][:, [3, 6, 9, 12]])))
    assert min(opened) >= 24
    assert 24 < np.mean(opened) < 30


@pytest.mark.parametrize("size", (8, 16, 32, 64))
def test_blocks_are_always_solvable(size):
    interior = (size - 2) ** 2
    for seed in range(10 if size < 64 else 3):
        walls, goal = make_maze(size, "blocks", seed)
        assert num_free_components(walls) == 1
        assert walls[1:-1, 1:-1].sum() == round(0.2 * interior)


def test_blocks_with_an_explicit_count():
    walls, _ = make_maze(16, "blocks:30", seed=0)
    assert walls[1:-1, 1:-1].sum() == 30
    assert num_free_components(walls) == 1
    assert not make_maze(16, "blocks:0", seed=0)[0][1:-1, 1:-1].any()


def test_empty_and_its_alias_none_are_border_only():
    walls, _ = make_maze(8, "empty", seed=0)
    assert not walls[1:-1, 1:-1].any()
    np.testing.assert_array_equal(walls, make_maze(8, "none", seed=0)[0])


@pytest.mark.parametrize("size", (4, 0, -3))
def test_make_maze_rejects_small_sizes(size):
    with pytest.raises(ValueError, match=rf"size must be at least 5.*got {size}"):
        make_maze(size)


@pytest.mark.parametrize("size", ("16", 16.0, True))
def test_make_maze_rejects_non_int_sizes(size):
    with pytest.raises(TypeError, match="size must be an int"):
        make_maze(size)


def test_make_maze_rejects_unknown_wall_types():
    with pytest.raises(ValueError, match=r"unknown wall_type 'rooms'.*tunnel.*blocks.*empty"):
        make_maze(16, "rooms")
    with pytest.raises(ValueError, match=r"non-negative integer N, got 'blocks:many'"):
        make_maze(16, "blocks:many")
    with pytest.raises(ValueError, match=r"'blocks:500' asks for 500 blocks.*at most 194"):
        make_maze(16, "blocks:500")
    with pytest.raises(ValueError, match=r"could place only \d+ of 190 blocks"):
        make_maze(16, "blocks:190")


# ----------------------------------------------------------------------------------------------------- layouts


def test_parse_layout_reads_text():
    walls, goal, start = parse_layout(SMALL)
    assert walls.shape == (5, 7)
    assert goal == (3, 5) and start == (1, 1)
    assert walls[0].all() and walls[2, 2] and not walls[1, 2]


def test_parse_layout_reads_char_and_int_arrays():
    chars = np.array([list(line) for line in SMALL.split()])
    codes = np.where(chars == "#", 1, 0)
    codes[chars == "G"], codes[chars == "S"] = 2, 3
    for layout in (chars, codes, SMALL.split()):
        walls, goal, start = parse_layout(layout)
        np.testing.assert_array_equal(walls, parse_layout(SMALL)[0])
        assert (goal, start) == ((3, 5), (1, 1))


def test_parse_layout_without_start_or_border():
    walls, goal, start = parse_layout("..\n.G\n")  # outside the grid counts as wall
    assert not walls.any() and goal == (1, 1) and start is None


def test_parse_layout_takes_explicit_goal_and_start():
    walls = np.array([[0, 0, 0], [1, 1, 0], [0, 0, 0]])
    _, goal, start = parse_layout(walls, goal=(2, 0), start=(0, 0))
    assert (goal, start) == ((2, 0), (0, 0))
    # goal= overrides the layout's G.
    assert parse_layout(SMALL, goal=(1, 3))[1] == (1, 3)


@pytest.mark.parametrize(
    ("layout", "kwargs", "match"),
    [
        ("###\n#G.#\n##", {}, r"same length.*line 1: 3, line 2: 4, line 3: 2"),
        ("####\n#Gx#\n####", {}, r"unknown layout character 'x' at line 2, column 3 \(cell \(1, 2\)\)"),
        (np.array([["#", "G"], ["?", "."]]), {}, r"unknown layout character '\?' at cell \(1, 0\)"),
        (np.array([[0, 2], [7, 0]]), {}, r"unknown layout code 7 at cell \(1, 0\)"),
        ("#S.\n...", {}, r"no goal.*'G'"),
        (np.array([[0, 1], [0, 0]]), {}, r"no goal.*goal=\(x, y\)"),
        ("G.G", {}, r"at most one goal.*\[\(0, 0\), \(0, 2\)\]"),
        ("SGS", {}, r"at most one start.*\[\(0, 0\), \(0, 2\)\]"),
        (np.array([[0, 1], [0, 0]]), {"goal": (0, 1)}, r"goal \(0, 1\) is a wall"),
        ("G.#", {"start": (0, 2)}, r"start \(0, 2\) is a wall"),
        ("G..", {"goal": (5, 0)}, r"goal \(5, 0\) lies outside the 1x3 grid"),
        ("G..", {"goal": (0.5, 1)}, r"goal must be an \(x, y\) pair of ints"),
        ("S#G", {}, r"no path between start \(0, 0\) and goal \(0, 2\)"),
        ("G..", {"start": (0, 0)}, r"start \(0, 0\) is the goal"),
    ],
)
def test_parse_layout_errors_name_the_bad_value(layout, kwargs, match):
    with pytest.raises(ValueError, match=match):
        parse_layout(layout, **kwargs)


def test_format_layout_round_trips():
    walls, goal, start = parse_layout(SMALL)
    text = format_layout(walls, goal, agent=start)
    assert text == SMALL.strip().replace("S", "A")
    walls_again, goal_again, start_again = parse_layout(text)
    np.testing.assert_array_equal(walls, walls_again)
    assert (goal_again, start_again) == (goal, start)
    # An agent on the goal keeps the text a valid layout.
    assert format_layout(walls, goal, agent=goal) == format_layout(walls, goal)


# -------------------------------------------------------------------------------------------------------- MazeEnv


def test_env_exposes_the_generated_maze():
    env = MazeEnv(size=16, wall_type="tunnel", maze_seed=3)
    walls, goal = make_maze(16, "tunnel", 3)
    np.testing.assert_array_equal(env.walls, walls)
    assert env.goal == goal and env.shape == (16, 16)
    assert (env.maze_seed, env.wall_type) == (3, "tunnel")
    assert env.observation_space == gym.spaces.Box(0, 1, shape=(3, 16, 16), dtype=np.uint8)
    assert env.action_space == gym.spaces.Discrete(4)


def test_reset_draws_free_reproducible_starts_with_correct_distance():
    env = MazeEnv(size=16, maze_seed=0)
    starts = set()
    for seed in range(40):
        obs, info = env.reset(seed=seed)
        assert not env.walls[env.agent] and env.agent != env.goal
        assert info == {"distance": shortest_path_length(env.walls, env.agent, env.goal), "maze_seed": 0}
        assert env.distance_to_goal == info["distance"]
        np.testing.assert_array_equal(obs[0], env.walls)
        assert obs[1].sum() == 1 and obs[1][env.goal] == 1
        assert obs[2].sum() == 1 and obs[2][env.agent] == 1
        starts.add(env.agent)
        first = env.agent
        env.reset(seed=seed)
        assert env.agent == first
    assert len(starts) > 20  # uniform over ~150 cells, not a fixed start


def test_reset_start_from_options_and_layout():
    env = MazeEnv(layout=SMALL)
    assert (env.maze_seed, env.wall_type) == (None, "layout")
    assert env.reset(seed=0)[1]["distance"] == 6
    assert env.agent == (1, 1)
    env.reset(options={"start": (3, 3)})
    assert env.agent == (3, 3) and env.distance_to_goal == 4
    for start, match in [
        ((2, 2), r"start \(2, 2\) is a wall"),
        ((3, 5), r"start \(3, 5\) is the goal"),
        ((9, 9), r"outside the 5x7 grid"),
    ]:
        with pytest.raises(ValueError, match=match):
            env.reset(options={"start": start})
    with pytest.raises(ValueError, match=r"unknown reset options \['begin'\]"):
        env.reset(options={"begin": (1, 1)})


def test_random_starts_avoid_cells_cut_off_from_the_goal():
    # The right column is free but walled off from the goal.
    env = MazeEnv(layout="G.#.\n..#.")
    for seed in range(20):
        env.reset(seed=seed)
        assert env.agent[1] < 2
    with pytest.raises(ValueError, match=r"no path between start \(0, 3\) and goal \(0, 0\)"):
        env.reset(options={"start": (0, 3)})


def test_goal_argument_for_a_layout_without_goal():
    walls = np.array([[0, 0, 1], [1, 0, 0]])
    env = MazeEnv(layout=walls, goal=(1, 2))
    assert env.goal == (1, 2) and env.shape == (2, 3)
    assert env.observation_space.shape == (3, 2, 3)
    with pytest.raises(ValueError, match=r"goal \(0, 2\) is a wall"):
        MazeEnv(layout=walls, goal=(0, 2))
    with pytest.raises(ValueError, match=r"goal \(0, 0\) is a wall"):
        MazeEnv(size=8, wall_type="tunnel", goal=(0, 0))


def test_step_moves_stays_at_walls_and_terminates_at_the_goal():
    env = MazeEnv(layout=SMALL)
    env.reset()
    obs, reward, terminated, truncated, info = env.step(2)  # up into the border
    assert env.agent == (1, 1) and (reward, terminated, truncated) == (0.0, False, False)
    env.step(1)  # right
    assert env.agent == (1, 2) and env.step(0)[0][2][1, 2] == 1  # down into the wall at (2, 2): stays
    assert env.agent == (1, 2)
    path = [1, 0, 1, 1, 0]  # (1,3) (2,3) (2,4) (2,5) (3,5)=goal
    for k, action in enumerate(path):
        obs, reward, terminated, truncated, info = env.step(np.int64(action))
        assert info["distance"] == len(path) - k - 1
        assert obs[2][env.agent] == 1
    assert env.agent == env.goal
    assert (reward, terminated, truncated) == (1.0, True, False)


def test_moving_off_a_borderless_grid_stays_in_place():
    env = MazeEnv(layout="S.G")
    env.reset()
    for action in (0, 2, 3):  # down, up, left all leave the grid
        env.step(action)
        assert env.agent == (0, 0)


@pytest.mark.parametrize("action", (4, -1, 1.5, "up", None))
def test_step_rejects_invalid_actions(action):
    env = MazeEnv(size=8)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an integer in \[0, 4\), got"):
        env.step(action)


def test_gym_make_truncates_after_max_episode_steps():
    env = gym.make("pc_transformers/Maze-v0", layout="S.G")
    env.reset(seed=0)
    for step in range(1, 101):
        _, reward, terminated, truncated, _ = env.step(2)  # bump into the top edge forever
        assert not terminated and reward == 0.0
        assert truncated == (step == 100)


def test_gym_make_passes_maze_arguments():
    env = gym.make("pc_transformers/Maze-v0", size=16, wall_type="tunnel", maze_seed=3)
    np.testing.assert_array_equal(env.unwrapped.walls, make_maze(16, "tunnel", 3)[0])
    assert env.reset(seed=1)[1]["maze_seed"] == 3


@pytest.mark.parametrize("render_mode", (None, "ansi", "rgb_array"))
@pytest.mark.parametrize("kwargs", ({"size": 16}, {"size": 8, "wall_type": "blocks"}, {"layout": SMALL}))
def test_check_env_passes_without_warnings(render_mode, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make("pc_transformers/Maze-v0", render_mode=render_mode, **kwargs).unwrapped)


def test_render_ansi_round_trips_through_parse_layout():
    env = MazeEnv(size=16, maze_seed=2, render_mode="ansi")
    env.reset(seed=5)
    walls, goal, start = parse_layout(env.render())
    np.testing.assert_array_equal(walls, env.walls)
    assert (goal, start) == (env.goal, env.agent)


def test_render_rgb_array():
    env = MazeEnv(layout=SMALL, render_mode="rgb_array")
    env.reset()
    image = env.render()
    assert image.shape == (5 * 8, 7 * 8, 3) and image.dtype == np.uint8

    def cell_colour(x, y):
        block = image[8 * x : 8 * x + 8, 8 * y : 8 * y + 8].reshape(-1, 3)
        assert (block == block[0]).all()
        return tuple(int(v) for v in block[0])

    agent, goal, wall, free = cell_colour(1, 1), cell_colour(3, 5), cell_colour(0, 0), cell_colour(1, 2)
    assert agent[0] > agent[1] and goal[1] > goal[0]  # red agent, green goal
    assert sum(wall) < sum(free)  # dark walls, light floor


def test_render_mode_is_validated():
    with pytest.raises(ValueError, match=r"render_mode must be one of.*got 'human'"):
        MazeEnv(render_mode="human")


def test_registration_is_idempotent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(pc_transformers.envs)
    assert gym.spec("pc_transformers/Maze-v0").max_episode_steps == 100


# ----------------------------------------------------------------------------------------------------- seed splits


def test_paper_default_split():
    splits = maze_splits(num_train=5, num_test=1)
    assert splits.train == (0, 1, 2, 3, 4)
    assert len(splits.test) == 1 and splits.validation == ()


@pytest.mark.parametrize(("num_train", "num_test", "seed_offset"), [(5, 1, 0), (200, 50, 0), (1000, 10, 7)])
def test_maze_splits_never_overlap(num_train, num_test, seed_offset):
    splits = maze_splits(num_train, num_test, seed_offset=seed_offset, num_validation=3)
    assert splits.train == tuple(range(seed_offset, seed_offset + num_train))
    assert len(set(splits.test)) == num_test and len(splits.validation) == 3
    assert not set(splits.train) & set(splits.test)
    assert not set(splits.validation) & (set(splits.train) | set(splits.test))
    # Test mazes do not depend on how many training mazes there are.
    assert maze_splits(num_train + 100, num_test, seed_offset=seed_offset).test == splits.test


def test_maze_splits_rejects_overlap_and_bad_counts():
    with pytest.raises(ValueError, match=r"maze seeds \[3, 4\] appear in both train and test"):
        MazeSplits(train=(1, 2, 3, 4), test=(4, 3, 9))
    with pytest.raises(ValueError, match=r"num_train must be non-negative, got -1"):
        maze_splits(-1, 1)
    with pytest.raises(TypeError, match=r"num_test must be an int, got 1.5"):
        maze_splits(5, 1.5)
    with pytest.raises(ValueError, match=r"num_train must be at most 1000000"):
        maze_splits(1_000_001, 1)
