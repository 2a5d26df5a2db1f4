"""The discrete maze of procedure cloning (REFERENCE.md, "Discrete maze"), as a Gymnasium environment.

Three pieces live here:

* ``make_maze`` builds a seeded ``(walls, goal)`` pair; the ``"tunnel"`` generator follows the paper's
  rooms-and-corridors recursive backtracker.
* ``parse_layout`` / ``format_layout`` read and write mazes as text, for hand-made layouts and ``ansi`` rendering::

      #######
      #S..#.#
      #.#...#
      #...#G#
      #######

* ``MazeEnv`` is the environment and ``maze_splits`` names which maze seeds are for training and which for testing.

Coordinates and actions follow :mod:`pc_transformers.grid`: ``(x, y) = (row, column)``; text line ``x`` is row ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from pc_transformers.grid import ACTION_DELTAS, NUM_ACTIONS, distance_map, shift

MIN_SIZE = 5
WALL_TYPES = ("tunnel", "blocks", "blocks:N", "empty", "none")

# Tunnel geometry (paper): 2x2 rooms whose top-left corners ("anchors") sit every 3 cells from (1, 1), so rooms
# are separated by 1-thick walls; a corridor opens such a wall over the rooms' full 2-cell width.
_ROOM = 2
_ANCHOR_STEP = 3
_LOOP_PROB = 0.1
_BLOCKS_DENSITY = 0.2

# Layout cell codes, shared by integer arrays and text.
FREE, WALL, GOAL, START = 0, 1, 2, 3
# "A" (the agent, written by format_layout) reads as the start, so an ``ansi`` frame parses back into the same state.
_CHAR_CODES = {".": FREE, "#": WALL, "G": GOAL, "S": START, "A": START}
_ALPHABET = ", ".join(repr(char) for char in _CHAR_CODES)

# Render colours (RGB).
_CELL_PIXELS = 8
_WALL_RGB = (40, 40, 40)
_FREE_RGB = (230, 230, 230)
_GOAL_RGB = (0, 170, 0)
_AGENT_RGB = (220, 0, 0)


# ------------------------------------------------------------------------------------------------- maze generators


def make_maze(size: int, wall_type: str = "tunnel", seed: int = 0) -> tuple[np.ndarray, tuple[int, int]]:
    """Build a seeded square maze and its goal.

    Args:
        size: side length in cells, at least 5 (the outer border is 1 cell thick).
        wall_type: ``"tunnel"`` (the paper's rooms and 2-wide corridors with occasional loops), ``"blocks"``
            (border plus single wall cells on ~20% of the interior), ``"blocks:N"`` (exactly ``N`` such cells) or
            ``"empty"`` (border only; ``"none"`` is the original code's name for it and an alias).
        seed: seed of the ``np.random.default_rng`` that draws the walls and then the goal.

    Returns:
        ``walls``, a ``(size, size)`` bool array (True = wall) whose free cells are all connected, and ``goal``,
        a free cell ``(x, y)``.

    Raises:
        TypeError: if ``size`` is not an int.
        ValueError: if ``size`` is below 5, ``wall_type`` is unknown, or ``"blocks:N"`` asks for more blocks than
            fit while keeping the maze connected.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(f"size must be an int, got {size!r} of type {type(size).__name__}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be at least {MIN_SIZE} (a 1-cell border around a 3x3 interior), got {size}")
    size = int(size)
    rng = np.random.default_rng(seed)
    if wall_type == "tunnel":
        walls = _tunnel_walls(size, rng)
    elif wall_type in ("empty", "none"):
        walls = _border_walls(size)
    elif isinstance(wall_type, str) and (wall_type == "blocks" or wall_type.startswith("blocks:")):
        walls = _blocks_walls(size, _num_blocks(wall_type, size), rng)
    else:
        raise ValueError(f"unknown wall_type {wall_type!r}; expected one of {', '.join(WALL_TYPES)}")
    free = np.flatnonzero(~walls)
    goal = divmod(int(free[rng.integers(len(free))]), size)
    return walls, goal


def _border_walls(size: int) -> np.ndarray:
    walls = np.zeros((size, size), dtype=bool)
    walls[[0, -1], :] = True
    walls[:, [0, -1]] = True
    return walls


def _tunnel_walls(size: int, rng: np.random.Generator) -> np.ndarray:
    """Rooms-and-corridors maze: a depth-first backtracker over room anchors, with loops (REFERENCE.md)."""
    # Room i spans cells anchor_i, anchor_i + 1 and must stay inside the border: anchor_i + 1 <= size - 2.
    num_rooms = (size - 2 - _ROOM) // _ANCHOR_STEP + 1
    anchors = 1 + _ANCHOR_STEP * np.arange(num_rooms)
    walls = np.ones((size, size), dtype=bool)

    def carve(room_a: tuple[int, int], room_b: tuple[int, int]) -> None:
        # The bounding box of two adjacent rooms is both rooms plus the 2-wide stretch of wall between them.
        (xa, ya), (xb, yb) = sorted((room_a, room_b))
        walls[anchors[xa] : anchors[xb] + _ROOM, anchors[ya] : anchors[yb] + _ROOM] = False

    def shuffled_neighbours(room: tuple[int, int]):
        for action in rng.permutation(NUM_ACTIONS):
            nx, ny = room[0] + ACTION_DELTAS[action, 0], room[1] + ACTION_DELTAS[action, 1]
            if 0 <= nx < num_rooms and 0 <= ny < num_rooms:
                yield int(nx), int(ny)

    # Iterative form of the recursive backtracker: each stack entry keeps its own half-consumed neighbour iterator,
    # so returning to a room resumes its shuffled order exactly where the recursion would (and no recursion limit
    # is hit for size 64+).
    visited = np.zeros((num_rooms, num_rooms), dtype=bool)
    visited[0, 0] = True
    carve((0, 0), (0, 0))
    stack = [((0, 0), shuffled_neighbours((0, 0)))]
    while stack:
        room, neighbours = stack[-1]
        for neighbour in neighbours:
            if not visited[neighbour]:
                visited[neighbour] = True
                carve(room, neighbour)
                stack.append((neighbour, shuffled_neighbours(neighbour)))
                break
            # Already carved: still open the passage now and then, which turns the spanning tree into a maze with
            # loops (the paper's 0.1). Re-opening the passage we came through is a harmless no-op.
            if rng.random() < _LOOP_PROB:
                carve(room, neighbour)
        else:
            stack.pop()
    return walls


def _num_blocks(wall_type: str, size: int) -> int:
    interior = (size - 2) ** 2
    if wall_type == "blocks":
        return round(_BLOCKS_DENSITY * interior)
    count = wall_type.removeprefix("blocks:")
    if not count.isdigit():
        raise ValueError(f"wall_type 'blocks:N' needs a non-negative integer N, got {wall_type!r}")
    # Two free cells must remain: the goal and at least one start.
    if int(count) > interior - 2:
        raise ValueError(
            f"wall_type {wall_type!r} asks for {count} blocks but a {size}x{size} maze fits at most {interior - 2}"
        )
    return int(count)


def _blocks_walls(size: int, num_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """Border plus ``num_blocks`` single wall cells, each accepted only if all free cells stay connected."""
    walls = _border_walls(size)
    interior = np.flatnonzero(~walls)
    placed = 0
    for index in rng.permutation(interior):
        if placed == num_blocks:
            break
        x, y = divmod(int(index), size)
        walls[x, y] = True
        if _still_connected(walls, x, y):
            placed += 1
        else:
            walls[x, y] = False
    if placed < num_blocks:
        raise ValueError(
            f"could place only {placed} of {num_blocks} blocks in a {size}x{size} maze without disconnecting it"
        )
    return walls


# The 8 cells around (x, y) in circular order; consecutive entries are 4-adjacent to each other.
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


def _still_connected(walls: np.ndarray, x: int, y: int) -> bool:
    """Whether the free cells stay connected after walling the (previously free, interior) cell ``(x, y)``.

    The region stays connected exactly when the free 4-neighbours of ``(x, y)`` can still reach each other. Fast
    path: neighbours in one run of free cells around the 8-ring reach each other through the ring. Only at a pinch
    point (neighbours in different runs, possibly joined by a loop further away) is a flood fill needed, and it
    stops as soon as every neighbour is reached.
    """
    ring_free = [not walls[x + dx, y + dy] for dx, dy in _RING]
    # Label the circular runs of free ring cells; a run that wraps past index 0 continues the last run.
    run_ids, run = [], -1
    for k, free in enumerate(ring_free):
        if free and (k == 0 or not ring_free[k - 1]):
            run += 1
        run_ids.append(run if free else None)
    if ring_free[0] and ring_free[-1]:
        run_ids = [0 if r == run else r for r in run_ids]
    neighbours = [((x + dx, y + dy), r) for (dx, dy), r in zip(_RING, run_ids) if r is not None and 0 in (dx, dy)]
    if len({r for _, r in neighbours}) <= 1:
        return True

    targets = np.zeros_like(walls)
    for cell, _ in neighbours:
        targets[cell] = True
    reached = np.zeros_like(walls)
    reached[neighbours[0][0]] = True
    free = ~walls
    while True:
        if (targets <= reached).all():
            return True
        grown = reached.copy()
        for action in range(NUM_ACTIONS):
            grown |= shift(reached, action, False)
        grown &= free
        if (grown == reached).all():
            return False
        reached = grown


# ------------------------------------------------------------------------------------------------------- layouts


def parse_layout(
    layout, goal: tuple[int, int] | None = None, start: tuple[int, int] | None = None
) -> tuple[np.ndarray, tuple[int, int], tuple[int, int] | None]:
    """Read a maze from text or an array, and validate its goal and start.

    Args:
        layout: one of

            * text with one line per row: ``#`` wall, ``.`` free, ``G`` goal, ``S`` start (``A``, the agent in
              :func:`format_layout`'s output, also reads as the start). Whitespace around lines and blank lines
              are ignored; all lines must have the same length (the maze may be rectangular);
            * a list of such lines, or a 2-D numpy array of single characters from the same alphabet;
            * a 2-D integer (or bool) numpy array with codes 0 free, 1 wall, 2 goal, 3 start.

            Cells outside the layout count as walls, so no border is needed.
        goal: ``(x, y)`` goal cell; overrides the layout's ``G`` or provides one when the layout has none.
        start: ``(x, y)`` start cell; overrides the layout's ``S``.

    Returns:
        ``(walls, goal, start)``: ``(height, width)`` bool walls, the goal cell and the start cell (None if the
        layout has none and none was given).

    Raises:
        ValueError: for ragged lines, unknown characters or codes, a missing or repeated goal, more than one start,
            a goal or start on a wall or off the grid, a start on the goal, or no path between start and goal.
    """
    codes = _layout_codes(layout)
    walls = codes == WALL
    goal = _single_cell(codes, GOAL, "goal 'G' (code 2)") if goal is None else goal
    if goal is None:
        raise ValueError("layout has no goal: mark exactly one cell 'G' (code 2) or pass goal=(x, y)")
    goal = _free_cell(goal, walls, "goal")
    start = _single_cell(codes, START, "start 'S' (code 3)") if start is None else start
    if start is not None:
        start = _free_cell(start, walls, "start")
        if start == goal:
            raise ValueError(f"start {start} is the goal cell")
        if distance_map(walls, goal)[start] < 0:
            raise ValueError(f"no path between start {start} and goal {goal}")
    return walls, goal, start


def format_layout(walls: np.ndarray, goal: tuple[int, int], agent: tuple[int, int] | None = None) -> str:
    """Write a maze as text (the inverse of :func:`parse_layout`): ``#`` wall, ``.`` free, ``G`` goal, ``A`` agent.

    An agent standing on the goal (the episode has just ended) is drawn as ``G``, so the text stays a valid layout.
    """
    chars = np.where(np.asarray(walls, dtype=bool), "#", ".")
    if agent is not None:
        chars[tuple(agent)] = "A"
    chars[tuple(goal)] = "G"
    return "\n".join("".join(row) for row in chars)


def _layout_codes(layout) -> np.ndarray:
    """Turn any accepted layout form into a ``(height, width)`` int8 array of cell codes."""
    if isinstance(layout, (list, tuple)) and all(isinstance(line, str) for line in layout):
        layout = "\n".join(layout)
    if isinstance(layout, str):
        return _text_codes(layout)
    if not isinstance(layout, np.ndarray):
        raise TypeError(f"layout must be text, a list of lines or a numpy array, got {type(layout).__name__}")
    if layout.ndim != 2 or layout.size == 0:
        raise ValueError(f"layout array must be 2-D and non-empty, got shape {layout.shape}")
    if layout.dtype.kind in "US":
        text = layout.astype(str)
        lookup = np.vectorize(lambda c: _CHAR_CODES.get(c, -1), otypes=[np.int8])
        codes = lookup(text)
        if (codes < 0).any():
            x, y = np.argwhere(codes < 0)[0]
            raise ValueError(
                f"unknown layout character {str(text[x, y])!r} at cell ({x}, {y}); expected one of {_ALPHABET}"
            )
        return codes
    if layout.dtype.kind in "biu":
        bad = (layout < FREE) | (layout > START)
        if bad.any():
            x, y = np.argwhere(bad)[0]
            raise ValueError(
                f"unknown layout code {layout[x, y]} at cell ({x}, {y}); expected 0 free, 1 wall, 2 goal, 3 start"
            )
        return layout.astype(np.int8)
    raise TypeError(f"layout array must hold characters or integer codes, got dtype {layout.dtype}")


def _text_codes(text: str) -> np.ndarray:
    numbered = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not numbered:
        raise ValueError("layout text has no rows")
    lengths = {number: len(line) for number, line in numbered}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"line {number}: {length}" for number, length in lengths.items())
        raise ValueError(f"layout lines must all have the same length, got {described}")
    codes = np.empty((len(numbered), len(numbered[0][1])), dtype=np.int8)
    for x, (number, line) in enumerate(numbered):
        for y, char in enumerate(line):
            if char not in _CHAR_CODES:
                raise ValueError(
                    f"unknown layout character {char!r} at line {number}, column {y + 1} (cell ({x}, {y})); "
                    f"expected one of {_ALPHABET}"
                )
            codes[x, y] = _CHAR_CODES[char]
    return codes


def _single_cell(codes: np.ndarray, code: int, name: str) -> tuple[int, int] | None:
    cells = [tuple(int(v) for v in cell) for cell in np.argwhere(codes == code)]
    if len(cells) > 1:
        raise ValueError(f"layout must have at most one {name}, got {len(cells)} at {cells}")
    return cells[0] if cells else None


def _free_cell(cell, walls: np.ndarray, name: str) -> tuple[int, int]:
    """Validate that ``cell`` is an ``(x, y)`` pair of ints naming a free cell of ``walls``."""
    if (
        not isinstance(cell, (tuple, list, np.ndarray))
        or np.ndim(cell) != 1
        or len(cell) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in cell)
    ):
        raise ValueError(f"{name} must be an (x, y) pair of ints, got {cell!r}")
    cell = (int(cell[0]), int(cell[1]))
    height, width = walls.shape
    if not (0 <= cell[0] < height and 0 <= cell[1] < width):
        raise ValueError(f"{name} {cell} lies outside the {height}x{width} grid")
    if walls[cell]:
        raise ValueError(f"{name} {cell} is a wall")
    return cell


# ----------------------------------------------------------------------------------------------------- environment


class MazeEnv(gym.Env):
    """
    ## Description
    The discrete maze of procedure cloning (Yang et al., NeurIPS 2022): reach a fixed goal cell of a grid maze from
    a random start. The maze and its goal are fixed by ``maze_seed`` (or given as a ``layout``); only the start
    changes between episodes, so generalization is measured across maze seeds (see :func:`maze_splits`).

    ## Action Space
    ``Discrete(4)``, coordinates ``(x, y) = (row, column)`` as in :mod:`pc_transformers.grid`:

    - 0: x + 1 (down)
    - 1: y + 1 (right)
    - 2: x - 1 (up)
    - 3: y - 1 (left)

    Moving into a wall or off the grid leaves the agent in place.

    ## Observation Space
    ``Box(0, 1, shape=(3, height, width), dtype=np.uint8)``, channel-first one-hot planes: 0 walls, 1 goal,
    2 agent.

    ## Starting State
    ``options={"start": (x, y)}`` if given to ``reset``; otherwise the layout's ``S`` if it has one; otherwise a
    uniformly random free cell, other than the goal, from which the goal is reachable (drawn from ``np_random``).

    ## Rewards
    1.0 on the step that reaches the goal, 0.0 otherwise, so the return is the success indicator.

    ## Episode End
    - Termination: the agent reaches the goal.
    - Truncation: the registered ``pc_transformers/Maze-v0`` stops episodes after 100 steps (the paper caps
      evaluation episodes at 50-100); the bare env never truncates.

    ## Information
    ``reset`` and ``step`` return ``info["distance"]``, the shortest number of steps from the agent to the goal;
    ``reset`` also returns ``info["maze_seed"]``.

    ## Arguments
    ```python
    import gymnasium as gym
    import pc_transformers.envs

    env = gym.make("pc_transformers/Maze-v0", size=16, wall_type="tunnel", maze_seed=3)
    ```
    - ``size``: side of a generated maze in cells (>= 5), default 16.
    - ``wall_type``: ``"tunnel"`` (default, the paper's), ``"blocks"``, ``"blocks:N"`` or ``"empty"`` (alias
      ``"none"``); see :func:`make_maze`.
    - ``maze_seed``: seed that fixes the generated walls and goal, default 0.
    - ``layout``: a hand-made maze instead (text or array, see :func:`parse_layout`; may be rectangular); then
      ``size``, ``wall_type`` and ``maze_seed`` are ignored, and ``maze_seed`` / ``wall_type`` read ``None`` /
      ``"layout"``.
    - ``goal``: ``(x, y)`` that replaces the generated or layout goal (required for a layout without ``G``).
    - ``render_mode``: ``"ansi"`` (the layout text with ``A`` for the agent) or ``"rgb_array"`` (8 pixels per
      cell: walls dark, free light, goal green, agent red).

    ## Version History
    - v0: Initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        size: int = 16,
        wall_type: str = "tunnel",
        maze_seed: int = 0,
        layout=None,
        goal: tuple[int, int] | None = None,
        render_mode: str | None = None,
    ):
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode
        if layout is None:
            walls, maze_goal = make_maze(size, wall_type, maze_seed)
            # Route the generated maze through parse_layout too, so a goal= override is validated the same way.
            self.walls, self.goal, self._layout_start = parse_layout(
                walls.astype(np.int8), goal=maze_goal if goal is None else goal
            )
            self.maze_seed, self.wall_type = maze_seed, wall_type
        else:
            self.walls, self.goal, self._layout_start = parse_layout(layout, goal=goal)
            self.maze_seed, self.wall_type = None, "layout"
        self.shape = self.walls.shape

        # The goal never moves, so one BFS from it gives every cell's distance for the env's lifetime.
        self._goal_distances = distance_map(self.walls, self.goal)  # (H, W), -1 where unreachable
        self._start_cells = np.flatnonzero(self._goal_distances > 0)  # free, reachable, not the goal
        if len(self._start_cells) == 0:
            raise ValueError(f"the maze has no free cell other than the goal {self.goal} that can reach it")

        self._static_obs = np.zeros((3, *self.shape), dtype=np.uint8)  # (C, H, W): wall, goal, agent
        self._static_obs[0] = self.walls
        self._static_obs[1][self.goal] = 1
        self.observation_space = spaces.Box(0, 1, shape=(3, *self.shape), dtype=np.uint8)
        self.action_space = spaces.Discrete(NUM_ACTIONS)
        self.agent: tuple[int, int] | None = None

    @property
    def distance_to_goal(self) -> int:
        """Shortest number of steps from the agent to the goal."""
        if self.agent is None:
            raise RuntimeError("call reset() before reading distance_to_goal")
        return int(self._goal_distances[self.agent])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - {"start"}
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; the only option is 'start'")
        if "start" in options:
            start = _free_cell(options["start"], self.walls, "start")
            if start == self.goal:
                raise ValueError(f"start {start} is the goal cell")
            if self._goal_distances[start] < 0:
                raise ValueError(f"no path between start {start} and goal {self.goal}")
        elif self._layout_start is not None:
            start = self._layout_start
        else:
            index = self._start_cells[self.np_random.integers(len(self._start_cells))]
            start = divmod(int(index), self.shape[1])
        self.agent = start
        return self._get_obs(), {"distance": self.distance_to_goal, "maze_seed": self.maze_seed}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in [0, {NUM_ACTIONS}), got {action!r}")
        if self.agent is None:
            raise RuntimeError("call reset() before step()")
        x, y = self.agent[0] + int(ACTION_DELTAS[action, 0]), self.agent[1] + int(ACTION_DELTAS[action, 1])
        if 0 <= x < self.shape[0] and 0 <= y < self.shape[1] and not self.walls[x, y]:
            self.agent = (x, y)
        terminated = self.agent == self.goal
        return self._get_obs(), float(terminated), terminated, False, {"distance": self.distance_to_goal}

    def render(self):
        if self.render_mode is None:
            gym.logger.warn(
                "render() was called without a render_mode; pass render_mode='ansi' or 'rgb_array' to the env"
            )
            return None
        if self.render_mode == "ansi":
            return format_layout(self.walls, self.goal, self.agent)
        image = np.where(self.walls[..., None], _WALL_RGB, _FREE_RGB).astype(np.uint8)  # (H, W, 3)
        image[self.goal] = _GOAL_RGB
        if self.agent is not None:
            image[self.agent] = _AGENT_RGB
        return np.repeat(np.repeat(image, _CELL_PIXELS, axis=0), _CELL_PIXELS, axis=1)  # (H * k, W * k, 3)

    def _get_obs(self) -> np.ndarray:
        obs = self._static_obs.copy()  # (3, H, W)
        obs[2][self.agent] = 1
        return obs


# ----------------------------------------------------------------------------------------------------- seed splits

# Test (and validation) maze seeds come from their own reserved ranges, far above any training range, so that
# growing the number of training mazes can never swallow a test maze. (The paper's default instead holds out the
# next seed, 5, after training seeds 0-4.)
TEST_SEED_START = 1_000_000
VALIDATION_SEED_START = 2_000_000
_RANGE = TEST_SEED_START


@dataclass(frozen=True)
class MazeSplits:
    """Maze seeds for each split; construction fails if any seed is shared between splits.

    Args:
        train: seeds of the training mazes.
        test: seeds of the held-out test mazes.
        validation: seeds of held-out validation mazes (optional).
    """

    train: tuple[int, ...]
    test: tuple[int, ...]
    validation: tuple[int, ...] = field(default=())

    def __post_init__(self):
        for name in ("train", "test", "validation"):
            seeds = getattr(self, name)
            if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in seeds):
                raise ValueError(f"MazeSplits.{name} must hold int seeds, got {seeds!r}")
            # Frozen dataclass: store a tuple of plain ints whatever sequence was passed.
            object.__setattr__(self, name, tuple(int(s) for s in seeds))
        pairs = (("train", "test"), ("train", "validation"), ("test", "validation"))
        for first, second in pairs:
            shared = sorted(set(getattr(self, first)) & set(getattr(self, second)))
            if shared:
                raise ValueError(f"maze seeds {shared} appear in both {first} and {second}")


def maze_splits(num_train: int, num_test: int, seed_offset: int = 0, num_validation: int = 0) -> MazeSplits:
    """Disjoint maze seeds for training and testing.

    Training seeds are ``seed_offset, ..., seed_offset + num_train - 1`` (the paper's 5 training mazes are seeds
    0-4). Test seeds start at ``1_000_000 + seed_offset`` and validation seeds at ``2_000_000 + seed_offset``, so
    the splits never overlap for counts up to 1,000,000.

    Args:
        num_train: number of training mazes.
        num_test: number of test mazes.
        seed_offset: shifts every range, e.g. to draw a second independent set of mazes.
        num_validation: number of validation mazes.
    """
    counts = {
        "num_train": num_train,
        "num_test": num_test,
        "seed_offset": seed_offset,
        "num_validation": num_validation,
    }
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
    for name in ("num_train", "num_test", "num_validation"):
        if counts[name] > _RANGE:
            raise ValueError(f"{name} must be at most {_RANGE} to keep the seed ranges disjoint, got {counts[name]}")
    return MazeSplits(
        train=tuple(range(seed_offset, seed_offset + num_train)),
        test=tuple(range(TEST_SEED_START + seed_offset, TEST_SEED_START + seed_offset + num_test)),
        validation=tuple(
            range(VALIDATION_SEED_START + seed_offset, VALIDATION_SEED_START + seed_offset + num_validation)
        ),
    )
