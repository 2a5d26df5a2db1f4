"""PCTokenizer: expert procedures as text-like token sequences.

The token grammar
=================

Every example is one whitespace-separated sequence over a closed vocabulary (a `tokenizers` WordLevel model):

    <s> s_1 … s_N <proc> PROCEDURE <act> a_k </s>         (procedure cloning)
    <s> s_1 … s_N <act> a_k </s>                          (behavioral cloning: no procedure)

* **State** ``s_1 … s_N``: the maze, row-major, one token per cell (``N = height × width``):
  ``#`` wall, ``.`` free, ``G`` goal, ``A`` agent. The grid shape is not written in the sequence; it comes from the
  model config (``grid_size``) or the ``grid_shape`` argument.
* **Procedure**, depending on ``procedure_format``:

  - ``"bfs_maps"`` (format A, goal-rooted BFS): the cumulative maps ``x_0 … x_L``, each exactly N cell tokens,
    separated by ``<step>``. Cell tokens: ``_`` not reached, ``*`` the goal (the BFS root), and the arrow of the action
    that moves the cell one step toward the goal: ``v`` (0, x+1), ``>`` (1, y+1), ``^`` (2, x−1), ``<`` (3, y−1).
    One step = one whole map, so a grid model can decode a step in one forward pass.
  - ``"bfs_trace"`` (format B, BFS from the agent): one step per visited cell, written as a coordinate pair
    ``x<row> y<col>``, in expansion order; then ``<path>`` and one step per path edge, the action token ``a0 … a3``
    that moves along the edge, listed from the goal end back to the agent. The last edge is the first action.
    Decoded token by token.
* **Action**: ``<act>`` followed by one of ``a0 a1 a2 a3`` (the paper's action indices).
* **Special tokens**: ``<pad>`` (padding, never inside an example), ``<unk>`` (never accepted inside a procedure: parsing
  raises instead), ``<s>``/``</s>`` (begin/end), and the structural tokens ``<proc>``, ``<step>``, ``<path>``, ``<act>``.

Worked example (a 3×4 maze, goal at (1, 2), agent at (1, 1), format "bfs_maps")::

    state   # # # #      x_0   _ _ _ _      x_1   _ _ _ _
            # A G #            _ _ * _            _ > * _
            # # # #            _ _ _ _            _ _ _ _

    <s> # # # # # A G # # # # # <proc> _ _ _ _ _ _ * _ _ _ _ _ <step> _ _ _ _ _ > * _ _ _ _ _ <act> a1 </s>

One vocabulary (``build_maze_vocab``) serves every maze format, so one model family and one tokenizer cover both;
the format is recorded in ``tokenizer_config.json`` as ``procedure_format``. The assets in the repository's
``tokenizers/`` folder are written by ``recipes/make_tokenizers.py`` from this module, never edited by hand.

A user-defined procedure plugs in through a small protocol: its record implements ``to_tokens() -> list[str]`` (the
tokens between ``<proc>`` and ``<act>``) and a classmethod ``from_tokens(tokens, grid_shape, action) -> record``; its
`Procedure` is registered (``pc_transformers.procedures.register_procedure``) under the format name; and the
tokenizer is built with the extra words it needs, ``PCTokenizer.for_maze(name, extra_tokens=[...])``. Such formats
are decoded token by token.

This file is shipped as remote code with a checkpoint: it imports numpy, tokenizers and transformers only; the
procedure records it reads and writes come from the ``pc_transformers`` package, imported when first needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

NUM_ACTIONS = 4
# Bfs-map values (pc_transformers.procedures.bfs_maps): 0-3 actions, then these.
UNREACHED, GOAL = 4, 5

# Special and structural tokens.
PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"
PROC, STEP, PATH, ACT = "<proc>", "<step>", "<path>", "<act>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, PROC, STEP, PATH, ACT)
STRUCTURE_TOKENS = (PROC, STEP, PATH, ACT)
# State cells.
WALL, FREE, GOAL_CELL, AGENT = "#", ".", "G", "A"
STATE_TOKENS = (WALL, FREE, GOAL_CELL, AGENT)
# BFS map cells, indexed by map value: 0-3 actions, UNREACHED (4), GOAL (5).
MAP_TOKENS = ("v", ">", "^", "<", "_", "*")
# Actions.
ACTION_TOKENS = tuple(f"a{a}" for a in range(NUM_ACTIONS))

PROCEDURE_FORMATS = ("bfs_maps", "bfs_trace")
DEFAULT_MAX_GRID_SIZE = 64

assert MAP_TOKENS[UNREACHED] == "_" and MAP_TOKENS[GOAL] == "*"


def build_maze_vocab(max_grid_size: int = DEFAULT_MAX_GRID_SIZE, extra_tokens=()) -> dict[str, int]:
    """The closed maze vocabulary: special tokens first, then state, map, action and coordinate tokens, then any
    ``extra_tokens`` a user-defined procedure needs (appended, so the built-in ids never move)."""
    if not isinstance(max_grid_size, int) or max_grid_size < 1:
        raise ValueError(f"max_grid_size must be a positive int, got {max_grid_size!r}")
    tokens = [*SPECIAL_TOKENS, *STATE_TOKENS, *MAP_TOKENS, *ACTION_TOKENS]
    tokens += [f"x{i}" for i in range(max_grid_size)] + [f"y{i}" for i in range(max_grid_size)]
    for token in extra_tokens:
        if not isinstance(token, str) or not token or any(c.isspace() for c in token) or token in tokens:
            raise ValueError(f"extra token {token!r} must be a new non-empty word without whitespace")
        tokens.append(token)
    return {token: i for i, token in enumerate(tokens)}


@dataclass(frozen=True, eq=False)
class ParsedExample:
    """One example read back from tokens. ``record`` is None for BC sequences; ``agent`` is None if no ``A``."""

    walls: np.ndarray  # (height, width) bool
    goal: tuple[int, int]
    agent: tuple[int, int] | None
    record: object | None  # BFSMapsRecord | BFSTraceRecord
    action: int | None

    def __repr__(self) -> str:
        return (
            f"ParsedExample(walls=<{self.walls.shape[0]}x{self.walls.shape[1]}>, goal={self.goal}, "
            f"agent={self.agent}, record={self.record!r}, action={self.action})"
        )


class PCTokenizer(PreTrainedTokenizerFast):
    """Tokenizer for procedure-cloning sequences (grammar in the module docstring).

    Identical to `PreTrainedTokenizerFast` except: it adds helpers that serialize states and procedure records into
    tokens and parse them back strictly. It does not override ``__init__`` (transformers 5 rebuilds fast tokenizers
    from ``tokenizer.json`` on load), so build a fresh one with `PCTokenizer.for_maze` and load saved ones with
    ``from_pretrained``/``AutoTokenizer``.
    """

    padding_side = "right"

    # ----------------------------------------------------------------------------------------------------- building
    @classmethod
    def for_maze(cls, procedure_format: str = "bfs_maps", max_grid_size: int = DEFAULT_MAX_GRID_SIZE,
                 extra_tokens=()) -> "PCTokenizer":
        """A tokenizer over the maze vocabulary, recording ``procedure_format`` in its config.

        ``procedure_format`` is a built-in format or a user-defined one registered with
        ``pc_transformers.procedures.register_procedure``; ``extra_tokens`` extends the vocabulary for it.
        """
        if procedure_format not in PROCEDURE_FORMATS and not _is_registered(procedure_format):
            raise ValueError(f"procedure_format must be one of {PROCEDURE_FORMATS} or a registered procedure, "
                             f"got {procedure_format!r}")
        backend = Tokenizer(models.WordLevel(build_maze_vocab(max_grid_size, extra_tokens), unk_token=UNK))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return cls(
            tokenizer_object=backend,
            bos_token=BOS,
            eos_token=EOS,
            unk_token=UNK,
            pad_token=PAD,
            extra_special_tokens=list(STRUCTURE_TOKENS),
            procedure_format=procedure_format,
            max_grid_size=max_grid_size,
        )

    @property
    def procedure_format(self) -> str:
        return self.init_kwargs.get("procedure_format", "bfs_maps")

    @property
    def max_grid_size(self) -> int:
        return int(self.init_kwargs.get("max_grid_size", DEFAULT_MAX_GRID_SIZE))

    def layout_token_ids(self) -> dict:
        """Token ids a model config needs to find the spans of a sequence (see `PCConfig.from_tokenizer`)."""
        ids = lambda tokens: [self.convert_tokens_to_ids(t) for t in tokens]  # noqa: E731
        return {
            "vocab_size": len(self),
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "proc_token_id": self.convert_tokens_to_ids(PROC),
            "step_token_id": self.convert_tokens_to_ids(STEP),
            "path_token_id": self.convert_tokens_to_ids(PATH),
            "act_token_id": self.convert_tokens_to_ids(ACT),
            "state_token_ids": ids(STATE_TOKENS),
            "map_token_ids": ids(MAP_TOKENS),
            "action_token_ids": ids(ACTION_TOKENS),
        }

    # -------------------------------------------------------------------------------------------------- serializing
    def state_tokens(self, walls: np.ndarray, goal, agent=None) -> list[str]:
        """Row-major cell tokens of a maze state; ``agent=None`` leaves the agent out."""
        walls = np.asarray(walls, dtype=bool)
        if walls.ndim != 2:
            raise ValueError(f"walls must be a 2D (height, width) array, got shape {walls.shape}")
        if max(walls.shape) > self.max_grid_size:
            raise ValueError(f"grid {walls.shape} is larger than this tokenizer's max_grid_size={self.max_grid_size}")
        cells = np.where(walls, WALL, FREE).astype(object)
        for name, cell, token in (("goal", goal, GOAL_CELL), ("agent", agent, AGENT)):
            if cell is None:
                continue
            x, y = (int(c) for c in cell)
            if not (0 <= x < walls.shape[0] and 0 <= y < walls.shape[1]) or walls[x, y]:
                raise ValueError(f"{name} {tuple(cell)} must be a free cell of the {walls.shape} grid")
            cells[x, y] = token
        return list(cells.ravel())

    @staticmethod
    def map_tokens(level: np.ndarray) -> list[str]:
        """Row-major cell tokens of one bfs map (values 0-5)."""
        return list(np.asarray(MAP_TOKENS, dtype=object)[np.asarray(level).ravel()])

    def procedure_tokens(self, record) -> list[str]:
        """Tokens between ``<proc>`` and ``<act>`` for a procedure record."""
        BFSMapsRecord, BFSTraceRecord = _records()
        if isinstance(record, BFSMapsRecord):
            out: list[str] = []
            for i, level in enumerate(record.maps):
                if i:
                    out.append(STEP)
                out.extend(self.map_tokens(level))
            return out
        if isinstance(record, BFSTraceRecord):
            out = [tok for x, y in record.visited for tok in (f"x{x}", f"y{y}")]
            return out + [PATH] + [ACTION_TOKENS[a] for a in record.path]
        if hasattr(record, "to_tokens"):  # a user-defined procedure (see the module docstring)
            return list(record.to_tokens())
        raise TypeError(f"no token grammar for a procedure record of type {type(record).__name__}: give it a "
                        f"to_tokens() method")

    def example_tokens(self, walls, goal, agent, record=None, action: int | None = None) -> list[str]:
        """The whole sequence for one decision. With ``record=None`` (BC) the action must be given."""
        if record is not None:
            if action is not None and action != record.action:
                raise ValueError(f"action {action} disagrees with the record's action {record.action}")
            action = record.action
        if action is None or not 0 <= int(action) < NUM_ACTIONS:
            raise ValueError(f"action must be an int in [0, {NUM_ACTIONS}), got {action!r}")
        tokens = [BOS, *self.state_tokens(walls, goal, agent)]
        if record is not None:
            tokens += [PROC, *self.procedure_tokens(record)]
        return tokens + [ACT, ACTION_TOKENS[int(action)], EOS]

    def encode_example(self, walls, goal, agent, record=None, action: int | None = None) -> list[int]:
        """Token ids of `example_tokens` (strict: every token is in the vocabulary)."""
        return self.strict_ids(self.example_tokens(walls, goal, agent, record, action))

    def strict_ids(self, tokens: list[str]) -> list[int]:
        """``convert_tokens_to_ids`` that raises on an unknown token instead of returning ``<unk>``."""
        ids = self.convert_tokens_to_ids(list(tokens))
        if self.unk_token_id in ids:
            # A literal <unk> is refused too (as for ids, see _to_tokens), so it must be named in the message.
            bad = [t for t, i in zip(tokens, ids) if i == self.unk_token_id]
            raise ValueError(f"unknown tokens {bad[:5]} (not in the {len(self)}-token vocabulary; "
                             f"{UNK} itself is never accepted)")
        return ids

    # ----------------------------------------------------------------------------------------------------- parsing
    def parse(self, sequence, grid_shape=None, procedure_format: str | None = None) -> ParsedExample:
        """Read one example back from ids, tokens or text; raise ``ValueError`` on anything malformed.

        Args:
            sequence: token ids (list or 1D array/tensor), a list of token strings, or whitespace-separated text.
                Padding around the example is ignored; ``<unk>`` or an out-of-range id raises.
            grid_shape: ``(height, width)``; if None, the state must be square.
            procedure_format: defaults to this tokenizer's ``procedure_format``.
        """
        tokens = self._to_tokens(sequence)
        fmt = procedure_format or self.procedure_format
        if fmt not in PROCEDURE_FORMATS and not _is_registered(fmt):
            raise ValueError(f"procedure_format must be one of {PROCEDURE_FORMATS} or a registered procedure, "
                             f"got {fmt!r}")
        while tokens and tokens[-1] == PAD:
            tokens.pop()
        start = next((i for i, t in enumerate(tokens) if t != PAD), len(tokens))
        tokens = tokens[start:]
        if not tokens or tokens[0] != BOS:
            raise ValueError(f"a sequence must start with {BOS}, got {tokens[:1]}")
        if tokens[-1] != EOS:
            raise ValueError(f"a sequence must end with {EOS}, got {tokens[-1:]} (truncated?)")
        if tokens.count(ACT) != 1 or tokens[-3] != ACT:
            raise ValueError(f"a sequence must end with '{ACT} a<k> {EOS}' and hold one {ACT}, got {tokens[-3:]}")
        action = self._action(tokens[-2])
        body = tokens[1:-3]
        if PROC in body:
            cut = body.index(PROC)
            state, proc = body[:cut], body[cut + 1 :]
        else:
            state, proc = body, None
        walls, goal, agent = self.parse_state(state, grid_shape)
        record = None if proc is None else self.parse_procedure(proc, walls.shape, fmt, action)
        return ParsedExample(walls=walls, goal=goal, agent=agent, record=record, action=action)

    def parse_state(self, tokens: list[str], grid_shape=None):
        """``(walls, goal, agent)`` from the state's cell tokens."""
        shape = self._grid_shape(len(tokens), grid_shape)
        bad = [(i, t) for i, t in enumerate(tokens) if t not in STATE_TOKENS]
        if bad:
            raise ValueError(f"state cell {bad[0][0]} is {bad[0][1]!r}; expected one of {STATE_TOKENS}")
        cells = np.array(tokens, dtype=object).reshape(shape)
        goals, agents = np.argwhere(cells == GOAL_CELL), np.argwhere(cells == AGENT)
        if len(goals) != 1 or len(agents) > 1:
            raise ValueError(f"a state needs exactly one {GOAL_CELL} and at most one {AGENT}, "
                             f"got {len(goals)} and {len(agents)}")
        agent = tuple(int(c) for c in agents[0]) if len(agents) else None
        return cells == WALL, tuple(int(c) for c in goals[0]), agent

    def parse_procedure(self, tokens: list[str], grid_shape, procedure_format: str | None = None, action=None):
        """A procedure record from the tokens between ``<proc>`` and ``<act>``."""
        fmt = procedure_format or self.procedure_format
        if fmt == "bfs_maps":
            return self._parse_maps(tokens, tuple(grid_shape), action)
        if fmt == "bfs_trace":
            return self._parse_trace(tokens, tuple(grid_shape), action)
        if _is_registered(fmt):
            # Imported inside try (see `_registered_procedure`): transformers' remote-code import check would
            # otherwise demand the pc_transformers package just to load this tokenizer.
            return _registered_procedure(fmt).record_type.from_tokens(list(tokens), tuple(grid_shape), action)
        raise ValueError(f"procedure_format must be one of {PROCEDURE_FORMATS} or a registered procedure, got {fmt!r}")

    def _parse_maps(self, tokens, shape, action):
        n = shape[0] * shape[1]
        lookup = {t: v for v, t in enumerate(MAP_TOKENS)}
        maps, level = [], []
        for i, t in enumerate(tokens + [STEP]):
            if t == STEP:
                if len(level) != n:
                    raise ValueError(f"bfs map {len(maps)} has {len(level)} cells, expected {n} for a {shape} grid")
                maps.append(level)
                level = []
            elif t in lookup:
                level.append(lookup[t])
            else:
                raise ValueError(f"procedure token {i} is {t!r}; a bfs map holds only {MAP_TOKENS} and {STEP}")
        stack = np.array(maps, dtype=np.int8).reshape(len(maps), *shape)
        if action is None:
            raise ValueError("a bfs_maps procedure needs the action that follows it")
        return _records()[0](maps=stack, action=action)

    def _parse_trace(self, tokens, shape, action):
        if tokens.count(PATH) != 1:
            raise ValueError(f"a bfs_trace procedure holds exactly one {PATH}, got {tokens.count(PATH)}")
        cut = tokens.index(PATH)
        visits, edges = tokens[:cut], tokens[cut + 1 :]
        if len(visits) % 2:
            raise ValueError(f"visited cells come as 'x<row> y<col>' pairs, got {len(visits)} tokens")
        cells = []
        for i in range(0, len(visits), 2):
            tx, ty = visits[i], visits[i + 1]
            if not (tx[:1] == "x" and ty[:1] == "y" and tx[1:].isdigit() and ty[1:].isdigit()):
                raise ValueError(f"visited cell {i // 2} is {tx!r} {ty!r}; expected 'x<row> y<col>'")
            x, y = int(tx[1:]), int(ty[1:])
            if not (x < shape[0] and y < shape[1]):
                raise ValueError(f"visited cell ({x}, {y}) lies outside the {shape} grid")
            cells.append((x, y))
        path = [self._action(t) for t in edges]
        return _records()[1](
            visited=np.array(cells, dtype=np.int16).reshape(-1, 2),
            path=np.array(path, dtype=np.int8),
            action=action if action is not None else (path[-1] if path else -1),
        )

    # ----------------------------------------------------------------------------------------------------- helpers
    def _to_tokens(self, sequence) -> list[str]:
        if isinstance(sequence, str):
            tokens = sequence.split()
            self.strict_ids(tokens)
            return tokens
        seq = list(np.asarray(sequence).ravel()) if not isinstance(sequence, list) else sequence
        if seq and isinstance(seq[0], str):
            self.strict_ids(seq)
            return list(seq)
        ids = [int(i) for i in seq]
        bad = [i for i in ids if not 0 <= i < len(self)]
        if bad:
            raise ValueError(f"token ids {bad[:5]} are outside the vocabulary [0, {len(self)})")
        if self.unk_token_id in ids:
            raise ValueError(f"{UNK} at position {ids.index(self.unk_token_id)}: unknown tokens are never accepted")
        return self.convert_ids_to_tokens(ids)

    @staticmethod
    def _action(token: str) -> int:
        if token not in ACTION_TOKENS:
            raise ValueError(f"expected an action token {ACTION_TOKENS}, got {token!r}")
        return ACTION_TOKENS.index(token)

    @staticmethod
    def _grid_shape(num_cells: int, grid_shape):
        if grid_shape is None:
            side = int(round(num_cells**0.5))
            if side * side != num_cells or side == 0:
                raise ValueError(f"a state of {num_cells} cells is not square; pass grid_shape=(height, width)")
            return side, side
        shape = tuple(int(s) for s in grid_shape)
        if len(shape) != 2 or shape[0] * shape[1] != num_cells:
            raise ValueError(f"the state has {num_cells} cells, which does not fit grid_shape {grid_shape}")
        return shape


def _records():
    """The procedure record classes (imported lazily: see the module docstring)."""
    try:
        from pc_transformers.procedures import BFSMapsRecord, BFSTraceRecord
    except ImportError as error:  # loaded as remote code without the package
        raise ImportError("reading or writing procedure records needs the pc_transformers package: "
                          "pip install pc-transformers") from error
    return BFSMapsRecord, BFSTraceRecord


def _registered_procedure(name: str):
    """The procedure registered in pc_transformers under ``name``."""
    try:
        from pc_transformers.procedures import get_procedure
    except ImportError as error:  # loaded as remote code without the package
        raise ImportError(f"procedure {name!r} needs the pc_transformers package: "
                          "pip install pc-transformers") from error
    return get_procedure(name)


def _is_registered(name: str) -> bool:
    """True if ``name`` is a procedure registered in pc_transformers (False without the package)."""
    try:
        from pc_transformers.procedures import available_procedures
    except ImportError:
        return False
    return name in available_procedures()
