"""PCTokenizer: expert procedures as text-like token sequences.

The token grammar
=================

Every example is one whitespace-separated sequence over a closed vocabulary (a `tokenizers` WordLevel model):

    <s> s_1 … s_N <proc> PROCEDURE <act> a_k </s>         (procedure cloning)
    <s> s_1 … s_N <act> a_k </s>                          (behavioral cloning: no procedure)

Two domains share this grammar, each with its own vocabulary (``domain`` in ``tokenizer_config.json``): mazes
(`PCTokenizer.for_maze`) and MinAtar (`PCTokenizer.for_minatar`). Both start with the same special tokens at the same
ids: ``<pad>`` (padding, never inside an example), ``<unk>`` (never accepted inside a procedure: parsing raises
instead), ``<s>``/``</s>`` (begin/end), and the structural tokens ``<proc>``, ``<step>``, ``<path>``, ``<act>``.

Mazes
-----

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

Worked example (a 3×4 maze, goal at (1, 2), agent at (1, 1), format "bfs_maps")::

    state   # # # #      x_0   _ _ _ _      x_1   _ _ _ _
            # A G #            _ _ * _            _ > * _
            # # # #            _ _ _ _            _ _ _ _

    <s> # # # # # A G # # # # # <proc> _ _ _ _ _ _ * _ _ _ _ _ <step> _ _ _ _ _ > * _ _ _ _ _ <act> a1 </s>

One vocabulary (``build_maze_vocab``) serves every maze format, so one model family and one tokenizer cover both;
the format is recorded in ``tokenizer_config.json`` as ``procedure_format``.

MinAtar
-------

MinAtar observations are ``(10, 10, C)`` bool arrays, ``C ≤ 10`` channels (asterix 4, breakout 4, freeway 7,
seaquest 10, space_invaders 6).

* **State** ``s_1 … s_100``: row-major, one token per cell, the bitmask of the channels active there:
  ``c<m>`` with ``m = Σ 2^i`` over the active channels ``i``. ``c0`` is an empty cell, ``c5`` a cell where channels 0
  and 2 are active. The vocabulary holds every ``c0 … c1023`` (2^10), so every game is encoded losslessly and nothing
  maps to ``<unk>``; decoding needs ``C`` (`PCTokenizer.parse_minatar`) and refuses a cell with a bit ≥ C set.
* **Procedure** (``procedure_format="mcts"``, the `MCTSRecord` of ``pc_transformers/procedures/mcts.py``), words:

  - per root branch of the search tree, in the record's order, ``a<i> n<v> q<q>``: the action, its visit-share
    bucket ``v`` (0–9) and its value bucket ``q`` (0–9); at least one branch;
  - then ``<path>``;
  - then per step of the principal variation ``a<i> r<r>``: the action and the predicted reward ``r`` (0 or 1; a
    tokenizer built with ``for_minatar(max_reward=R)`` has ``r0 … rR``, for Seaquest's larger rewards); at least one.

  Decoded token by token. The buckets, and the rules that the root actions are distinct, the visit buckets
  non-increasing, and the action equal to the first branch's and the first step's, belong to the record
  (``mcts.py``); the tokenizer checks the grammar.

  **In action order** (a record with ``ranked=False``, `MCTSRecord.in_action_order`; a model with
  ``PCConfig.branch_order="action"``): one ``n<v> q<q>`` pair per action of the game, action 0 first, with no action
  words (they are implied), then ``<path>`` and the steps as above. The action is then one of the most-visited
  branches and the first step's, so it comes *after* the statistics of every action instead of being the first
  procedure token. The worked example below in action order: ``n2 q4 n7 q9 n0 q0 <path> a1 r0 a1 r1 a0 r0``.
* **Action**: ``<act>`` followed by ``a<k>``, ``k`` the index of the action in the game's *minimal* action set (the
  action of the gymnasium ``MinAtar/<Game>-v1`` environments). The vocabulary holds ``a0 … a5`` for every game; a
  model config lists the game's ``a0 … a(K−1)`` as its ``action_token_ids``, and only those are scored or generated.
  Actions inside the procedure use the same indices.

Worked example (a 4-channel observation, breakout's channels 0 paddle, 1 ball, 2 trail, 3 brick: bricks fill rows 1–3,
the trail is at (5, 3), the ball at (6, 4), the paddle at (9, 4); format "mcts", action 1)::

    <s>
    c0 c0 c0 c0 c0 c0 c0 c0 c0 c0
    c8 c8 c8 c8 c8 c8 c8 c8 c8 c8
    c8 c8 c8 c8 c8 c8 c8 c8 c8 c8
    c8 c8 c8 c8 c8 c8 c8 c8 c8 c8
    c0 c0 c0 c0 c0 c0 c0 c0 c0 c0
    c0 c0 c0 c4 c0 c0 c0 c0 c0 c0
    c0 c0 c0 c0 c2 c0 c0 c0 c0 c0
    c0 c0 c0 c0 c0 c0 c0 c0 c0 c0
    c0 c0 c0 c0 c0 c0 c0 c0 c0 c0
    c0 c0 c0 c0 c1 c0 c0 c0 c0 c0
    <proc> a1 n7 q9 a0 n2 q4 a2 n0 q0 <path> a1 r0 a1 r1 a0 r0 <act> a1 </s>

The BC sequence of the same decision is the state followed by ``<act> a1 </s>``.

Assets and plug-ins
-------------------

The assets in the repository's ``tokenizers/`` folder (``maze-bfs-maps``, ``maze-bfs-trace``, ``minatar-mcts``) are
written by ``recipes/make_tokenizers.py`` from this module, never edited by hand.

A user-defined procedure plugs in through a small protocol: its record implements ``to_tokens() -> list[str]`` (the
tokens between ``<proc>`` and ``<act>``) and a classmethod ``from_tokens(tokens, grid_shape, action) -> record``; its
`Procedure` is registered (``pc_transformers.procedures.register_procedure``) under the format name; and the
tokenizer is built with the extra words it needs, ``PCTokenizer.for_maze(name, extra_tokens=[...])``. Such formats
are decoded token by token. The MinAtar ``"mcts"`` format is read and written through this protocol (its words are
built into `build_minatar_vocab`).

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

# MinAtar (grammar in the module docstring).
MINATAR_GRID_SIZE = 10
MINATAR_MAX_CHANNELS = 10
MINATAR_NUM_ACTIONS = 6  # the full MinAtar action set; a game's minimal set is a prefix a0 … a(K-1) of these tokens
MINATAR_STATE_TOKENS = tuple(f"c{m}" for m in range(2**MINATAR_MAX_CHANNELS))
MINATAR_ACTION_TOKENS = tuple(f"a{a}" for a in range(MINATAR_NUM_ACTIONS))
MCTS_VISIT_TOKENS = tuple(f"n{v}" for v in range(10))  # visit-share bucket of a root branch
MCTS_VALUE_TOKENS = tuple(f"q{q}" for q in range(10))  # value bucket of a root branch
MCTS_REWARD_TOKENS = ("r0", "r1")  # predicted reward of a principal-variation step (0/1 games; see max_reward)
MCTS_WORDS = MCTS_VISIT_TOKENS + MCTS_VALUE_TOKENS + MCTS_REWARD_TOKENS
MAX_MCTS_REWARD = 127  # the largest reward an MCTSRecord holds (int8)
MINATAR_PROCEDURE_FORMATS = ("mcts",)
DOMAINS = ("maze", "minatar")

assert MAP_TOKENS[UNREACHED] == "_" and MAP_TOKENS[GOAL] == "*"
assert MINATAR_ACTION_TOKENS[:NUM_ACTIONS] == ACTION_TOKENS


def build_maze_vocab(max_grid_size: int = DEFAULT_MAX_GRID_SIZE, extra_tokens=()) -> dict[str, int]:
    """The closed maze vocabulary: special tokens first, then state, map, action and coordinate tokens, then any
    ``extra_tokens`` a user-defined procedure needs (appended, so the built-in ids never move)."""
    if not isinstance(max_grid_size, int) or max_grid_size < 1:
        raise ValueError(f"max_grid_size must be a positive int, got {max_grid_size!r}")
    tokens = [*SPECIAL_TOKENS, *STATE_TOKENS, *MAP_TOKENS, *ACTION_TOKENS]
    tokens += [f"x{i}" for i in range(max_grid_size)] + [f"y{i}" for i in range(max_grid_size)]
    return _with_extra_tokens(tokens, extra_tokens)


def mcts_reward_tokens(max_reward: int = 1) -> tuple[str, ...]:
    """``r0 … r<max_reward>``: the predicted-reward words of the "mcts" grammar."""
    if not _is_int_in(max_reward, 0, MAX_MCTS_REWARD):
        raise ValueError(f"max_reward must be an int in [0, {MAX_MCTS_REWARD}], got {max_reward!r}")
    return tuple(f"r{r}" for r in range(max_reward + 1))


def build_minatar_vocab(max_reward: int = 1, extra_tokens=()) -> dict[str, int]:
    """The closed MinAtar vocabulary: the maze's special tokens (same ids), the cell bitmasks ``c0 … c1023``, the
    actions ``a0 … a5``, the MCTS words ``n0 … n9 q0 … q9 r0 … r<max_reward>``, then any ``extra_tokens``
    (appended). ``max_reward=1`` covers asterix, breakout, freeway and space_invaders; Seaquest's surfacing bonus
    needs more (see ``pc_transformers/procedures/mcts.py``)."""
    words = MCTS_VISIT_TOKENS + MCTS_VALUE_TOKENS + mcts_reward_tokens(max_reward)
    tokens = [*SPECIAL_TOKENS, *MINATAR_STATE_TOKENS, *MINATAR_ACTION_TOKENS, *words]
    return _with_extra_tokens(tokens, extra_tokens)


def _with_extra_tokens(tokens: list[str], extra_tokens) -> dict[str, int]:
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


@dataclass(frozen=True, eq=False)
class ParsedMinAtarExample:
    """One MinAtar example read back from tokens. ``record`` is None for BC sequences."""

    obs: np.ndarray  # (10, 10, num_channels) bool
    record: object | None  # MCTSRecord
    action: int

    def __repr__(self) -> str:
        return f"ParsedMinAtarExample(obs=<bool{self.obs.shape}>, record={self.record!r}, action={self.action})"


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
                 extra_tokens=()) -> PCTokenizer:
        """A tokenizer over the maze vocabulary, recording ``procedure_format`` in its config.

        ``procedure_format`` is a built-in format or a user-defined one registered with
        ``pc_transformers.procedures.register_procedure``; ``extra_tokens`` extends the vocabulary for it.
        """
        if procedure_format not in PROCEDURE_FORMATS and not _is_registered(procedure_format):
            raise ValueError(f"procedure_format must be one of {PROCEDURE_FORMATS} or a registered procedure, "
                             f"got {procedure_format!r}")
        # No ``domain`` entry: "maze" is the default, and the shipped maze assets predate the field.
        return cls._from_vocab(build_maze_vocab(max_grid_size, extra_tokens), procedure_format=procedure_format,
                               max_grid_size=max_grid_size)

    @classmethod
    def for_minatar(cls, procedure_format: str = "mcts", max_reward: int = 1, extra_tokens=()) -> PCTokenizer:
        """A tokenizer over the MinAtar vocabulary (every game: cells ``c0 … c1023``, actions ``a0 … a5``, the MCTS
        words with rewards ``r0 … r<max_reward>``), recording ``domain="minatar"``, ``procedure_format`` and
        ``max_reward`` in its config.

        The game is not part of the tokenizer: its channel count and minimal action set go into the model config
        (``PCConfig.from_tokenizer(tokenizer, num_channels=C, num_actions=K)``).
        """
        is_user_format = procedure_format not in PROCEDURE_FORMATS and _is_registered(procedure_format)
        if procedure_format not in MINATAR_PROCEDURE_FORMATS and not is_user_format:
            raise ValueError(f"procedure_format must be one of {MINATAR_PROCEDURE_FORMATS} or a registered procedure "
                             f"that is not a maze format {PROCEDURE_FORMATS}, got {procedure_format!r}")
        return cls._from_vocab(build_minatar_vocab(max_reward, extra_tokens), domain="minatar",
                               procedure_format=procedure_format, max_grid_size=MINATAR_GRID_SIZE,
                               max_reward=max_reward)

    @classmethod
    def _from_vocab(cls, vocab: dict[str, int], **init_kwargs) -> PCTokenizer:
        backend = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
        backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return cls(
            tokenizer_object=backend,
            bos_token=BOS,
            eos_token=EOS,
            unk_token=UNK,
            pad_token=PAD,
            extra_special_tokens=list(STRUCTURE_TOKENS),
            **init_kwargs,
        )

    @property
    def domain(self) -> str:
        """``"maze"`` or ``"minatar"``: which state vocabulary and which encode/parse methods apply."""
        return self.init_kwargs.get("domain", "maze")

    @property
    def procedure_format(self) -> str:
        return self.init_kwargs.get("procedure_format", "bfs_maps")

    @property
    def max_grid_size(self) -> int:
        return int(self.init_kwargs.get("max_grid_size", DEFAULT_MAX_GRID_SIZE))

    @property
    def max_reward(self) -> int:
        """MinAtar: the largest predicted reward ``r<max_reward>`` of the "mcts" vocabulary."""
        return int(self.init_kwargs.get("max_reward", 1))

    def layout_token_ids(self, num_channels: int | None = None, num_actions: int | None = None) -> dict:
        """Token ids a model config needs to find the spans of a sequence (see `PCConfig.from_tokenizer`).

        MinAtar: ``state_token_ids`` are the ``2**num_channels`` cell tokens ``c0 …`` a game with ``num_channels``
        channels can produce, ``action_token_ids`` the ``num_actions`` tokens ``a0 … a(K−1)`` of its minimal action
        set, and there are no map tokens. Both numbers are required for MinAtar and refused for mazes.
        """
        ids = lambda tokens: [self.convert_tokens_to_ids(t) for t in tokens]  # noqa: E731
        if self.domain == "minatar":
            if not _is_int_in(num_channels, 1, MINATAR_MAX_CHANNELS):
                raise ValueError(f"num_channels must be the game's channel count, an int in [1, "
                                 f"{MINATAR_MAX_CHANNELS}], got {num_channels!r}")
            if not _is_int_in(num_actions, 1, MINATAR_NUM_ACTIONS):
                raise ValueError(f"num_actions must be the size of the game's minimal action set, an int in [1, "
                                 f"{MINATAR_NUM_ACTIONS}], got {num_actions!r}")
            state, maps, actions = (MINATAR_STATE_TOKENS[: 2**num_channels], (),
                                    MINATAR_ACTION_TOKENS[:num_actions])
        else:
            if num_channels is not None or num_actions is not None:
                raise ValueError(f"num_channels/num_actions are MinAtar settings; a maze tokenizer takes neither, "
                                 f"got num_channels={num_channels!r}, num_actions={num_actions!r}")
            state, maps, actions = STATE_TOKENS, MAP_TOKENS, ACTION_TOKENS
        return {
            "vocab_size": len(self),
            "pad_token_id": self.pad_token_id,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id,
            "proc_token_id": self.convert_tokens_to_ids(PROC),
            "step_token_id": self.convert_tokens_to_ids(STEP),
            "path_token_id": self.convert_tokens_to_ids(PATH),
            "act_token_id": self.convert_tokens_to_ids(ACT),
            "state_token_ids": ids(state),
            "map_token_ids": ids(maps),
            "action_token_ids": ids(actions),
        }

    # -------------------------------------------------------------------------------------------------- serializing
    def state_tokens(self, walls: np.ndarray, goal, agent=None) -> list[str]:
        """Row-major cell tokens of a maze state; ``agent=None`` leaves the agent out."""
        self._require_domain("maze", "state_tokens", "minatar_state_tokens")
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
            tokens = list(record.to_tokens())
            if self.procedure_format == "mcts":
                check_mcts_tokens(tokens, self.max_reward)
            return tokens
        raise TypeError(f"no token grammar for a procedure record of type {type(record).__name__}: give it a "
                        f"to_tokens() method")

    def example_tokens(self, walls, goal, agent, record=None, action: int | None = None) -> list[str]:
        """The whole sequence for one decision. With ``record=None`` (BC) the action must be given."""
        self._require_domain("maze", "example_tokens", "minatar_example_tokens")
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

    # ------------------------------------------------------------------------------------------------------ MinAtar
    def minatar_state_tokens(self, obs: np.ndarray) -> list[str]:
        """Row-major cell tokens ``c<m>`` of a ``(10, 10, C)`` MinAtar observation, ``m`` the bitmask of the channels
        active in the cell (``C ≤ 10``; bool, or integers 0/1)."""
        self._require_domain("minatar", "minatar_state_tokens", "state_tokens")
        obs = _as_minatar_obs(obs)
        weights = 1 << np.arange(obs.shape[-1], dtype=np.int64)  # channel i contributes 2**i
        masks = (obs.astype(np.int64) * weights).sum(-1)  # (10, 10)
        return [MINATAR_STATE_TOKENS[m] for m in masks.ravel()]

    def minatar_example_tokens(self, obs, record=None, action: int | None = None) -> list[str]:
        """``<s> state [<proc> procedure] <act> a_k </s>`` for one MinAtar decision; with ``record=None`` (BC) the
        action must be given (an index in the game's minimal action set)."""
        state = self.minatar_state_tokens(obs)
        if record is not None:
            if action is not None and action != record.action:
                raise ValueError(f"action {action} disagrees with the record's action {record.action}")
            action = record.action
        if not _is_int_in(action, 0, MINATAR_NUM_ACTIONS - 1):
            raise ValueError(f"action must be an int in [0, {MINATAR_NUM_ACTIONS}) (an index in the game's minimal "
                             f"action set), got {action!r}")
        tokens = [BOS, *state]
        if record is not None:
            tokens += [PROC, *self.procedure_tokens(record)]
        return tokens + [ACT, MINATAR_ACTION_TOKENS[int(action)], EOS]

    def encode_minatar_example(self, obs, record=None, action: int | None = None) -> list[int]:
        """Token ids of `minatar_example_tokens` (strict: every token is in the vocabulary)."""
        return self.strict_ids(self.minatar_example_tokens(obs, record, action))

    def parse_minatar(self, sequence, num_channels: int, procedure_format: str | None = None) -> ParsedMinAtarExample:
        """Read one MinAtar example back from ids, tokens or text: the exact ``(10, 10, num_channels)`` observation,
        the procedure record (None for BC) and the action. Raises ``ValueError`` on anything malformed, including a
        cell with a channel bit ≥ ``num_channels`` set."""
        self._require_domain("minatar", "parse_minatar", "parse")
        fmt = procedure_format or self.procedure_format
        state, proc, action_token = self._split(self._to_tokens(sequence))
        if action_token not in MINATAR_ACTION_TOKENS:
            raise ValueError(f"expected an action token {MINATAR_ACTION_TOKENS}, got {action_token!r}")
        action = MINATAR_ACTION_TOKENS.index(action_token)
        obs = self.parse_minatar_state(state, num_channels)
        record = None if proc is None else self.parse_procedure(proc, obs.shape[:2], fmt, action)
        return ParsedMinAtarExample(obs=obs, record=record, action=action)

    def parse_minatar_state(self, tokens: list[str], num_channels: int) -> np.ndarray:
        """The ``(10, 10, num_channels)`` bool observation from its 100 cell tokens."""
        if not _is_int_in(num_channels, 1, MINATAR_MAX_CHANNELS):
            raise ValueError(f"num_channels must be an int in [1, {MINATAR_MAX_CHANNELS}], got {num_channels!r}")
        n = MINATAR_GRID_SIZE * MINATAR_GRID_SIZE
        if len(tokens) != n:
            raise ValueError(f"a MinAtar state has {n} cell tokens ({MINATAR_GRID_SIZE}x{MINATAR_GRID_SIZE}), "
                             f"got {len(tokens)}")
        masks = np.empty(n, dtype=np.int64)
        for i, token in enumerate(tokens):
            m = int(token[1:]) if token[:1] == "c" and token[1:].isdigit() else -1
            if not (0 <= m < len(MINATAR_STATE_TOKENS) and token == MINATAR_STATE_TOKENS[m]):
                raise ValueError(f"state cell {divmod(i, MINATAR_GRID_SIZE)} is {token!r}; expected a cell token "
                                 f"c0 … c{len(MINATAR_STATE_TOKENS) - 1}")
            if m >> num_channels:
                raise ValueError(f"state cell {divmod(i, MINATAR_GRID_SIZE)} is {token!r}, which sets channel bits "
                                 f"{[b for b in range(MINATAR_MAX_CHANNELS) if m >> b & 1 and b >= num_channels]}; "
                                 f"an observation with num_channels={num_channels} has bits 0 … {num_channels - 1} "
                                 f"only")
            masks[i] = m
        bits = (masks[:, None] >> np.arange(num_channels)) & 1  # (100, C)
        return bits.astype(bool).reshape(MINATAR_GRID_SIZE, MINATAR_GRID_SIZE, num_channels)

    # ----------------------------------------------------------------------------------------------------- parsing
    def parse(self, sequence, grid_shape=None, procedure_format: str | None = None) -> ParsedExample:
        """Read one example back from ids, tokens or text; raise ``ValueError`` on anything malformed.

        Args:
            sequence: token ids (list or 1D array/tensor), a list of token strings, or whitespace-separated text.
                Padding around the example is ignored; ``<unk>`` or an out-of-range id raises.
            grid_shape: ``(height, width)``; if None, the state must be square.
            procedure_format: defaults to this tokenizer's ``procedure_format``.
        """
        self._require_domain("maze", "parse", "parse_minatar")
        tokens = self._to_tokens(sequence)
        fmt = procedure_format or self.procedure_format
        if fmt not in PROCEDURE_FORMATS and not _is_registered(fmt):
            raise ValueError(f"procedure_format must be one of {PROCEDURE_FORMATS} or a registered procedure, "
                             f"got {fmt!r}")
        state, proc, action_token = self._split(tokens)
        action = self._action(action_token)
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
        if fmt == "mcts":
            check_mcts_tokens(tokens, self.max_reward)  # the grammar is the tokenizer's; the record checks its values
        if _is_registered(fmt):
            # Imported inside try (see `_registered_procedure`): transformers' remote-code import check would
            # otherwise demand the pc_transformers package just to load this tokenizer.
            return _registered_procedure(fmt).record_type.from_tokens(list(tokens), tuple(grid_shape), action)
        known = PROCEDURE_FORMATS + MINATAR_PROCEDURE_FORMATS
        raise ValueError(f"procedure_format must be one of {known} or a registered procedure, got {fmt!r}")

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
    @staticmethod
    def _split(tokens: list[str]) -> tuple[list[str], list[str] | None, str]:
        """``(state tokens, procedure tokens or None, action token)`` of ``<s> state [<proc> …] <act> a </s>``,
        padding around the example ignored."""
        while tokens and tokens[-1] == PAD:
            tokens.pop()
        start = next((i for i, t in enumerate(tokens) if t != PAD), len(tokens))
        tokens = tokens[start:]
        if not tokens or tokens[0] != BOS:
            raise ValueError(f"a sequence must start with {BOS}, got {tokens[:1]}")
        if tokens[-1] != EOS:
            raise ValueError(f"a sequence must end with {EOS}, got {tokens[-1:]} (truncated?)")
        if tokens.count(ACT) != 1 or len(tokens) < 3 or tokens[-3] != ACT:
            raise ValueError(f"a sequence must end with '{ACT} a<k> {EOS}' and hold one {ACT}, got {tokens[-3:]}")
        body = tokens[1:-3]
        if PROC in body:
            cut = body.index(PROC)
            return body[:cut], body[cut + 1 :], tokens[-2]
        return body, None, tokens[-2]

    def _require_domain(self, domain: str, method: str, other: str) -> None:
        if self.domain != domain:
            raise ValueError(f"{method}() is for {domain} tokenizers; this tokenizer's domain is {self.domain!r} "
                             f"(use {other}())")

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


def check_mcts_tokens(tokens: list[str], max_reward: int = 1) -> None:
    """Raise ``ValueError`` unless ``tokens`` follow the ``"mcts"`` grammar (module docstring):
    ``(a<i> n<v> q<q>)+ <path> (a<i> r<r>)+`` (ranked) or ``(n<v> q<q>)+ <path> (a<i> r<r>)+`` (action order), with
    ``r ≤ max_reward``."""
    rewards = mcts_reward_tokens(max_reward)
    if tokens.count(PATH) != 1:
        raise ValueError(f"an mcts procedure holds exactly one {PATH}, got {tokens.count(PATH)}")
    cut = tokens.index(PATH)
    branches, path = tokens[:cut], tokens[cut + 1 :]
    if branches and branches[0] in MCTS_VISIT_TOKENS:  # action order: the actions are implied
        if len(branches) % 2 or len(branches) > 2 * len(MINATAR_ACTION_TOKENS):
            raise ValueError(f"an mcts procedure in action order starts with one 'n<v> q<q>' pair per action (at most "
                             f"{len(MINATAR_ACTION_TOKENS)}) before {PATH}, got {len(branches)} tokens")
        branches = [word for i in range(0, len(branches), 2)
                    for word in (MINATAR_ACTION_TOKENS[i // 2], *branches[i : i + 2])]
    if not branches or len(branches) % 3:
        raise ValueError(f"an mcts procedure starts with one or more root branches 'a<i> n<v> q<q>' before {PATH}, "
                         f"got {len(branches)} tokens")
    for i in range(0, len(branches), 3):
        a, n, q = branches[i : i + 3]
        if a not in MINATAR_ACTION_TOKENS or n not in MCTS_VISIT_TOKENS or q not in MCTS_VALUE_TOKENS:
            raise ValueError(f"root branch {i // 3} is {a!r} {n!r} {q!r}; expected 'a<0-5> n<0-9> q<0-9>'")
    if not path or len(path) % 2:
        raise ValueError(f"an mcts procedure ends with one or more principal-variation steps 'a<i> r<r>' after "
                         f"{PATH}, got {len(path)} tokens")
    for i in range(0, len(path), 2):
        a, r = path[i : i + 2]
        if a not in MINATAR_ACTION_TOKENS or r not in rewards:
            raise ValueError(f"principal-variation step {i // 2} is {a!r} {r!r}; expected 'a<0-5> r<0-{max_reward}>' "
                             f"(a larger reward needs PCTokenizer.for_minatar(max_reward=...))")


def _as_minatar_obs(obs) -> np.ndarray:
    """``obs`` as a ``(10, 10, C)`` bool array; ValueError unless it is bool or 0/1 integers with ``1 ≤ C ≤ 10``."""
    obs = np.asarray(obs)
    g = MINATAR_GRID_SIZE
    if obs.ndim != 3 or obs.shape[:2] != (g, g) or not 1 <= obs.shape[2] <= MINATAR_MAX_CHANNELS:
        raise ValueError(f"a MinAtar observation is a ({g}, {g}, C) array with 1 <= C <= {MINATAR_MAX_CHANNELS}, "
                         f"got shape {obs.shape}")
    if obs.dtype != bool:
        if obs.dtype.kind not in "iuf" or not np.isin(obs, (0, 1)).all():
            raise ValueError(f"a MinAtar observation must be bool (or 0/1 numbers), got dtype {obs.dtype} with values "
                             f"{np.unique(obs)[:5].tolist()}")
        obs = obs.astype(bool)
    return obs


def _is_int_in(value, low: int, high: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and low <= value <= high


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
    _import_builtin_plugin(name)
    return get_procedure(name)


def _is_registered(name: str) -> bool:
    """True if ``name`` is a procedure registered in pc_transformers (False without the package)."""
    try:
        from pc_transformers.procedures import available_procedures
    except ImportError:
        return False
    _import_builtin_plugin(name)
    return name in available_procedures()


def _import_builtin_plugin(name: str) -> None:
    """Import ``pc_transformers.procedures.mcts`` (which registers ``"mcts"``) when that format is asked for: the
    tokenizer must not depend on whether the procedures package imports it eagerly."""
    if name not in MINATAR_PROCEDURE_FORMATS:
        return
    try:
        from pc_transformers.procedures import mcts  # noqa: F401  (registers the procedure)
    except ImportError:
        pass  # reported by get_procedure as an unknown procedure
