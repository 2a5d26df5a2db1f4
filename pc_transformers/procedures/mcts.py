"""Procedure format "mcts": Monte Carlo tree search (UCT) on a simulator snapshot, for MinAtar and other games.

REFERENCE.md ("MinAtar with an MCTS expert") leaves the paper's MCTS settings and tree serialization unknown; this
module is our design. The expert plans from the current state of a game (`pc_transformers.envs.minatar`, "the
game protocol") and emits an `MCTSRecord`: a summary of its search tree, then the action.

The search (UCT)
----------------
Every tree node holds a *simulator snapshot*: a copy of the game after the node's action was taken from its
parent's snapshot, with the reward and the ``done`` flag that step returned. One simulation:

1. **Selection**: from the root, while the node is fully expanded, not terminal and above ``max_depth``, go to the
   child maximizing UCB1, ``q_norm(child) + exploration * sqrt(ln N(node) / N(child))``, where
   ``q(child) = reward(child) + discount * mean return from the child`` and ``q_norm`` rescales ``q`` by the
   smallest and largest ``q`` seen anywhere in this tree so far (MuZero's min-max normalization; 0.5 while they are
   equal), so that one ``exploration`` constant fits games with different reward scales. Ties go to the lowest
   action index.
2. **Expansion**: at a node with untried actions, try one (the untried actions are taken in an order shuffled by
   the planner's RNG): copy the node's snapshot, ``act`` once, store the copy in the new child.
3. **Evaluation**: a terminal leaf is worth 0; otherwise the discounted sum of the rewards of a random rollout of
   ``rollout_depth`` steps from a copy of its snapshot (stopping at a terminal state). Each rollout step repeats the
   previous rollout action with probability ``rollout_hold`` and otherwise draws a uniform action
   (temporally extended random actions): with ``rollout_hold=0`` it is the classic uniform rollout, which almost
   never reaches Freeway's only reward (about 27 steps of "up"); holding actions does. With ``rollout_depth=0`` a
   leaf is worth 0, so the search sees only the rewards inside the tree.
4. **Backup**: walking back to the root, each node adds the discounted return from its state to its statistics.

**Equivalent moves** (``merge_equivalent``, on by default): before searching, the expert steps every root action
once from copies of the game that draw the same chance events; actions that return the same reward and done flag and
leave the same game state are one move, searched once. MinAtar Freeway, for instance, ignores every action while the
chicken's move timer runs (two frames in three when it walks), a timer the observation does not show: searched
separately, "noop", "up" and "down" there get equal values and the choice is noise, which a cloned policy cannot
learn. A merged class is searched through the game's previous action (``last_action``; the lowest index if it is
not in the class), so the expert keeps walking; every action of the class reports the move's statistics. With sticky
actions the previous action is part of the state (it may be repeated), so nothing merges.

The action is the root's most-visited child; ties go to the higher ``q``, then the lower action index. The
planner never reads the real game's future random events: all its snapshots share one RandomState seeded from the
planner's ``numpy.random.Generator`` (`pc_transformers.envs.minatar.snapshot`), so spawns, sticky actions and other
chance events are *sampled* while planning. Given ``MCTSConfig.seed`` and the same sequence of states, the expert's
decisions are identical.

The procedure record
--------------------
An `MCTSRecord` holds ``k = min(top_k, num_actions)`` root branches and the principal variation (PV), all int8:

* ``branch_actions`` ``(k,)``: root actions, ranked as the action choice ranks them (visits, then ``q``, then
  the action a merged move was searched through, then action index; unvisited actions last).
  ``branch_actions[0]`` is the action.
* ``branch_visits`` ``(k,)``: the action's share of the root's visits as a decile bucket,
  ``min(9, floor(10 * visits / total_visits))``.
* ``branch_values`` ``(k,)``: the action's ``q`` rescaled by the min and max ``q`` over the root's visited children,
  as a bucket ``min(9, floor(10 * (q - min) / (max - min)))``; 9 for every visited child when all ``q`` are equal
  (each is then the best), 0 for an unvisited action.
* ``pv_actions`` ``(d,)`` and ``pv_rewards`` ``(d,)``: the most-visited path from the root (same ranking as above),
  at most ``pv_length`` steps, ending early at a leaf or after a terminal step; ``pv_rewards[i]`` is the reward
  the snapshot returned for step ``i`` when that node was expanded (a sample, for a stochastic game).
  ``pv_actions[0]`` is the action.

Actions are indices into the planner's action set (`pc_transformers.envs.minatar.as_game`): gym actions of a
MinAtar -v1 env, at most 6 (``a0 … a5``).

Serialization (the tokens between ``<proc>`` and ``<act>``): ``a<i> n<v> q<q>`` per branch, then ``<path>``, then
``a<i> r<r>`` per PV step. Worked example, Breakout (actions 0 noop, 1 left, 2 right), ``top_k=3``,
``pv_length=3``::

    a1 n7 q9 a0 n2 q4 a2 n0 q0 <path> a1 r0 a1 r1 a0 r0

reads: "left" got 70-79% of the visits and the best value, "noop" 20-29% and a middling value, "right" under 10%
and the worst value; the plan is left, left (a brick: reward 1), noop. The action that follows is ``<act> a1``.

**Action order** (``ranked=False``, `MCTSRecord.in_action_order`, used by a model with
``PCConfig.branch_order="action"``): the same decision with one branch per action of the game, in action order, and
serialized without the action words, which are then implied. The example above becomes::

    n2 q4 n7 q9 n0 q0 <path> a1 r0 a1 r1 a0 r0

Ranked, the first procedure token is already the action, so a model that decodes it greedily has chosen before it
generates any of the search; in action order the model first writes every action's visit and value buckets, and
then the plan, whose first step (one of the most-visited actions) is the action. The data stays ranked, as the expert
emits it; examples are converted when they are tokenized, which needs ``top_k`` at least the number of actions.

Rewards. MinAtar's Asterix, Breakout, Freeway and Space Invaders give 0 or 1 per step (read in minatar 1.0.15's
sources), so `MCTS_WORDS` holds ``r0`` and ``r1``. Seaquest gives more when the submarine surfaces with 6 divers
(``oxygen * 10 // 200``, up to 10, plus any kill in the same step): its records hold those rewards exactly and the
tokenizer then needs ``mcts_words(max_reward=...)``. Records refuse negative or non-integer rewards; nothing is
clipped.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from pc_transformers.envs.minatar import MINATAR_NUM_ACTIONS, as_game, snapshot
from pc_transformers.procedures.base import (
    Procedure,
    ProcedureRecord,
    _as_action,
    _as_int_array,
    exact_fields_eq,
    register_procedure,
    shape_repr,
)

__all__ = [
    "MCTS_ACTION_WORDS",
    "MCTS_WORDS",
    "MCTSConfig",
    "MCTSExpert",
    "MCTSRecord",
    "greedy_one_step_action",
    "is_single_move",
    "mcts_words",
    "random_action",
]

NUM_ACTIONS = MINATAR_NUM_ACTIONS  # actions a record may hold: a0 ... a5
NUM_BUCKETS = 10  # visit-share and value buckets 0-9
MAX_REWARD = 127  # the largest reward an int8 record holds
PATH_TOKEN = "<path>"  # = pc_transformers.tokenization_pc.PATH (not imported: that would load transformers)

MCTS_ACTION_WORDS = tuple(f"a{a}" for a in range(NUM_ACTIONS))


def mcts_words(max_reward: int = 1) -> tuple[str, ...]:
    """The words of the "mcts" grammar besides actions and ``<path>``: ``n0…n9``, ``q0…q9``, ``r0…r<max_reward>``."""
    if isinstance(max_reward, bool) or not isinstance(max_reward, int) or not 0 <= max_reward <= MAX_REWARD:
        raise ValueError(f"max_reward must be an int in [0, {MAX_REWARD}], got {max_reward!r}")
    return (
        tuple(f"n{v}" for v in range(NUM_BUCKETS))
        + tuple(f"q{v}" for v in range(NUM_BUCKETS))
        + tuple(f"r{r}" for r in range(max_reward + 1))
    )


# Enough for Asterix, Breakout, Freeway and Space Invaders (rewards 0/1); see the module docstring for Seaquest.
MCTS_WORDS = mcts_words(max_reward=1)


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MCTSConfig:
    """Settings of the MCTS expert.

    Args:
        num_simulations: simulations per decision (each expands at most one node).
        max_depth: tree depth cap: nodes at this depth below the root are evaluated, never expanded.
        exploration: UCB1 constant ``c`` on min-max normalized values in [0, 1].
        rollout_depth: steps of the random rollout that evaluates a new leaf; 0 = no rollout, leaves are worth 0
            and only rewards inside the tree count.
        rollout_hold: probability in [0, 1) that a rollout step repeats the previous rollout action instead of
            drawing a uniform one; 0 = uniformly random rollouts.
        discount: discount factor of returns in the tree and the rollouts, in (0, 1].
        merge_equivalent: search root actions that are the same move (same reward, done flag and successor state,
            see `MCTSExpert._aliases`) once, and report each duplicate with its move's statistics, ranked after the
            game's previous action. False searches every action separately.
        top_k: root branches serialized (capped at the number of actions).
        pv_length: maximum steps of the principal variation serialized.
        seed: seed of the planner's ``numpy.random.Generator`` (expansion order, rollouts, sampled chance events).

    The defaults were picked on MinAtar's "train" setting (``recipes/benchmarks/mcts_expert.py``, 200-step
    episodes, 2 shared CPU cores, one process). Mean return over 10 episodes (5 for Space Invaders), MCTS / random /
    greedy one-step, and MCTS ms per decision: Breakout 18.5 / 0.0 / 0.3 (24 ms), Freeway 4.4 / 0.0 / 0.0 (66 ms),
    Asterix 3.6 / 0.0 / 0.5 (36 ms), Space Invaders 37.6 / 5.0 / 4.6 (180 ms). ``rollout_hold=0.8`` is what makes
    Freeway work (0.0 with uniform rollouts); on the other games it changed returns within the noise of a few
    episodes. ``exploration=1`` can be fooled by deceptive rewards (tests/test_mcts.py uses 2 on its decoy game).
    These figures predate ``merge_equivalent``. With it, over the 50 expert episodes of the MinAtar benchmark
    (200 simulations, 200 steps): Breakout 16.4, Freeway 4.5 with ``rollout_hold=0.95`` (73% "up" decisions; 32% in
    the earlier data made without the merge, with 100 simulations and ``rollout_hold=0.8``), Asterix 4.7 (README,
    "MinAtar with the MCTS expert").
    """

    # Search
    num_simulations: int = 200
    max_depth: int = 20
    exploration: float = 1.0
    rollout_depth: int = 30
    rollout_hold: float = 0.8
    discount: float = 0.97
    merge_equivalent: bool = True
    # Serialization
    top_k: int = 3
    pv_length: int = 3
    # Randomness
    seed: int = 0

    def __post_init__(self):
        minimums = {"num_simulations": 1, "max_depth": 1, "rollout_depth": 0, "top_k": 1, "pv_length": 1, "seed": 0}
        for name, low in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"MCTSConfig.{name} must be an int >= {low}, got {value!r}")
            if value < low:
                raise ValueError(f"MCTSConfig.{name} must be an int >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("exploration", "discount", "rollout_hold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                raise TypeError(f"MCTSConfig.{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not (math.isfinite(self.exploration) and self.exploration >= 0):
            raise ValueError(f"MCTSConfig.exploration must be a finite number >= 0, got {self.exploration}")
        if not isinstance(self.merge_equivalent, (bool, np.bool_)):
            raise TypeError(f"MCTSConfig.merge_equivalent must be a bool, got {self.merge_equivalent!r}")
        object.__setattr__(self, "merge_equivalent", bool(self.merge_equivalent))
        if not 0.0 <= self.rollout_hold < 1.0:
            raise ValueError(f"MCTSConfig.rollout_hold must lie in [0, 1), got {self.rollout_hold}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"MCTSConfig.discount must lie in (0, 1], got {self.discount}")


# ---------------------------------------------------------------------------------------------------------------
# Record
# ---------------------------------------------------------------------------------------------------------------


def _vector(value, name: str, low: int, high: int) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1 or array.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty 1-d array, got shape {array.shape}")
    return _as_int_array(array, name, np.int8, low, high)


@dataclass(frozen=True, eq=False)
class MCTSRecord(ProcedureRecord):
    """One MCTS decision: the root's ``k`` best branches, the principal variation, the action (module docstring).

    Args:
        branch_actions: ``(k,)`` int8, distinct root actions in ``[0, 6)``, best first (``ranked``), else
            ``0 … k-1``.
        branch_visits: ``(k,)`` int8, visit-share buckets 0-9, non-increasing when ``ranked``.
        branch_values: ``(k,)`` int8, normalized value buckets 0-9.
        pv_actions: ``(d,)`` int8, the principal variation's actions.
        pv_rewards: ``(d,)`` int8, the rewards the snapshots returned along it, in ``[0, 127]``.
        action: the action, equal to ``pv_actions[0]``; ranked: also ``branch_actions[0]``; in action order: one of
            the actions with the largest visit bucket.
        ranked: True (the default): branches best first, as the expert ranks them. False: every action's branch in
            action order (`in_action_order`; serialized without the action words, module docstring).
    """

    format: ClassVar[str] = "mcts"
    branch_actions: np.ndarray
    branch_visits: np.ndarray
    branch_values: np.ndarray
    pv_actions: np.ndarray
    pv_rewards: np.ndarray
    action: int
    ranked: bool = True

    __eq__ = exact_fields_eq
    __hash__ = None
    __repr__ = shape_repr

    def __post_init__(self):
        branch_actions = _vector(self.branch_actions, "branch_actions", 0, NUM_ACTIONS - 1)
        k = branch_actions.shape[0]
        if len(set(branch_actions.tolist())) != k:
            raise ValueError(f"branch_actions must be distinct, got {branch_actions.tolist()}")
        for name in ("branch_visits", "branch_values"):
            array = _vector(getattr(self, name), name, 0, NUM_BUCKETS - 1)
            if array.shape != (k,):
                raise ValueError(f"{name} must have shape ({k},) like branch_actions, got {array.shape}")
            object.__setattr__(self, name, array)
        if not isinstance(self.ranked, (bool, np.bool_)):
            raise TypeError(f"ranked must be a bool, got {self.ranked!r}")
        object.__setattr__(self, "ranked", bool(self.ranked))
        if self.ranked and np.any(np.diff(self.branch_visits.astype(np.int16)) > 0):
            raise ValueError(f"branch_visits must be non-increasing (best branch first), got {self.branch_visits.tolist()}")
        if not self.ranked and branch_actions.tolist() != list(range(k)):
            raise ValueError(f"a record in action order holds the actions 0 … {k - 1} in order, got "
                             f"branch_actions {branch_actions.tolist()}")
        pv_actions = _vector(self.pv_actions, "pv_actions", 0, NUM_ACTIONS - 1)
        pv_rewards = _vector(self.pv_rewards, "pv_rewards", 0, MAX_REWARD)
        if pv_rewards.shape != pv_actions.shape:
            raise ValueError(f"pv_rewards must have shape {pv_actions.shape} like pv_actions, got {pv_rewards.shape}")
        action = _as_action(self.action, NUM_ACTIONS)
        if self.ranked and (action != branch_actions[0] or action != pv_actions[0]):
            raise ValueError(
                f"action must equal branch_actions[0] and pv_actions[0], got {action}, {branch_actions[0]} and "
                f"{pv_actions[0]}"
            )
        if not self.ranked and (action >= k or self.branch_visits[action] != self.branch_visits.max()
                                or action != pv_actions[0]):
            raise ValueError(
                f"in action order, the action must be one of the most visited branches {self.branch_visits.tolist()} "
                f"and equal pv_actions[0], got {action} and {pv_actions[0]}"
            )
        object.__setattr__(self, "branch_actions", branch_actions)
        object.__setattr__(self, "pv_actions", pv_actions)
        object.__setattr__(self, "pv_rewards", pv_rewards)
        object.__setattr__(self, "action", action)

    @property
    def num_branches(self) -> int:
        return self.branch_actions.shape[0]

    @property
    def single_move(self) -> bool:
        """True when the search found every action to be the same move (`is_single_move`): the choice was
        arbitrary."""
        return is_single_move(self.branch_visits)

    @property
    def pv_length(self) -> int:
        return self.pv_actions.shape[0]

    @property
    def steps(self) -> tuple:
        """``(("branch", (a, n, q)), ..., ("pv", (a, r)), ...)``: the root's branches, then the principal variation."""
        branches = zip(self.branch_actions.tolist(), self.branch_visits.tolist(), self.branch_values.tolist())
        pv = zip(self.pv_actions.tolist(), self.pv_rewards.tolist())
        return tuple(("branch", b) for b in branches) + tuple(("pv", p) for p in pv)

    @property
    def metadata(self) -> dict:
        return {
            "num_steps": self.num_branches + self.pv_length,
            "num_branches": self.num_branches,
            "pv_length": self.pv_length,
        }

    def in_action_order(self, num_actions: int) -> MCTSRecord:
        """The same decision with every action's branch in action order (``ranked=False``): the serialization in which
        the action comes after the statistics of every action, rather than first.

        ValueError unless this record holds a branch for each of the game's ``num_actions`` actions (expert data made
        with ``top_k`` at least the number of actions)."""
        if not self.ranked:
            if self.num_branches != num_actions:
                raise ValueError(f"this record in action order has {self.num_branches} branches, not {num_actions}")
            return self
        if sorted(self.branch_actions.tolist()) != list(range(num_actions)):
            raise ValueError(
                f"action order needs a branch for each of the game's {num_actions} actions, but this record has "
                f"branches {sorted(self.branch_actions.tolist())} (make the expert data with top_k >= {num_actions})"
            )
        order = np.argsort(self.branch_actions)
        return MCTSRecord(
            branch_actions=self.branch_actions[order], branch_visits=self.branch_visits[order],
            branch_values=self.branch_values[order], pv_actions=self.pv_actions, pv_rewards=self.pv_rewards,
            action=self.action, ranked=False,
        )

    def to_tokens(self) -> list[str]:
        """Ranked: ``a<i> n<v> q<q>`` per branch; in action order: ``n<v> q<q>`` per action. Then ``<path>`` and
        ``a<i> r<r>`` per PV step (the tokens between <proc> and <act>)."""
        tokens = []
        for a, n, q in zip(self.branch_actions.tolist(), self.branch_visits.tolist(), self.branch_values.tolist()):
            tokens += [f"a{a}", f"n{n}", f"q{q}"] if self.ranked else [f"n{n}", f"q{q}"]
        tokens.append(PATH_TOKEN)
        for a, r in zip(self.pv_actions.tolist(), self.pv_rewards.tolist()):
            tokens += [f"a{a}", f"r{r}"]
        return tokens

    @classmethod
    def from_tokens(cls, tokens, grid_shape=None, action: int | None = None) -> MCTSRecord:
        """Read a record back from `to_tokens`' output; ValueError on anything malformed.

        Args:
            tokens: the procedure tokens (between ``<proc>`` and ``<act>``).
            grid_shape: unused (part of the procedure-format protocol of `pc_transformers.tokenization_pc`).
            action: the action after ``<act>``; None takes ``pv_actions[0]``. The record checks that they agree.
        """
        tokens = list(tokens)
        if tokens.count(PATH_TOKEN) != 1:
            raise ValueError(f"an mcts procedure holds exactly one {PATH_TOKEN}, got {tokens.count(PATH_TOKEN)}")
        cut = tokens.index(PATH_TOKEN)
        branches, pv = tokens[:cut], tokens[cut + 1 :]
        ranked = not (branches and isinstance(branches[0], str) and branches[0].startswith("n"))
        if not ranked:  # action order: n q per action, the actions implied
            if len(branches) % 2:
                raise ValueError(f"branches in action order come as 'n<v> q<q>' pairs, got {len(branches)} tokens "
                                 f"before {PATH_TOKEN}")
            branches = [word for i in range(0, len(branches), 2)
                        for word in (f"a{i // 2}", branches[i], branches[i + 1])]
        if not branches or len(branches) % 3:
            raise ValueError(
                f"branches come as 'a<i> n<v> q<q>' triples (at least one), got {len(branches)} tokens before "
                f"{PATH_TOKEN}"
            )
        if not pv or len(pv) % 2:
            raise ValueError(
                f"principal-variation steps come as 'a<i> r<r>' pairs (at least one), got {len(pv)} tokens after "
                f"{PATH_TOKEN}"
            )
        triples = [
            [_number(branches[i + j], prefix, f"branch {i // 3}") for j, prefix in enumerate("anq")]
            for i in range(0, len(branches), 3)
        ]
        pairs = [[_number(pv[i + j], prefix, f"path step {i // 2}") for j, prefix in enumerate("ar")]
                 for i in range(0, len(pv), 2)]
        branch_actions, branch_visits, branch_values = (np.array(c, dtype=np.int64) for c in zip(*triples))
        pv_actions, pv_rewards = (np.array(c, dtype=np.int64) for c in zip(*pairs))
        return cls(
            branch_actions=branch_actions,
            branch_visits=branch_visits,
            branch_values=branch_values,
            pv_actions=pv_actions,
            pv_rewards=pv_rewards,
            action=int(pv_actions[0]) if action is None else action,
            ranked=ranked,
        )


_NUMBER = re.compile(r"(0|[1-9][0-9]{0,3})")  # at most 4 digits: larger values fail validation, not int8


def _number(token, prefix: str, where: str) -> int:
    """The integer of a token ``<prefix><digits>`` in canonical form (no sign, no leading zero, so round trips are
    exact)."""
    if not isinstance(token, str) or not token.startswith(prefix) or _NUMBER.fullmatch(token[len(prefix):]) is None:
        raise ValueError(f"{where}: expected '{prefix}<int>', got {token!r}")
    return int(token[len(prefix):])


# ---------------------------------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------------------------------


class _Node:
    """A tree node: the snapshot after its action, the step's reward and done flag, and visit statistics."""

    __slots__ = ("aliases", "children", "depth", "done", "game", "moves", "reward", "untried", "value_sum", "visits")

    def __init__(self, game, reward: float, done: bool, depth: int, untried: list[int], moves):
        self.game = game
        self.moves = moves  # the actions selection compares, ascending (the root's distinct moves, else all)
        self.aliases = None  # root only: aliases[a] is the searched action that stands for action a
        self.reward = reward
        self.done = done
        self.depth = depth
        self.children: dict[int, _Node] = {}
        self.untried = untried  # actions not yet expanded, popped from the end
        self.visits = 0
        self.value_sum = 0.0  # sum of the discounted returns from this node's state on

    def q(self, discount: float) -> float:
        """Value of the action leading here, seen from the parent: reward + discount * mean return."""
        return self.reward + discount * self.value_sum / self.visits


class _MinMax:
    """Running min and max of the ``q`` values of a tree, to rescale them to [0, 1] for UCB1."""

    def __init__(self):
        self.low, self.high = math.inf, -math.inf

    def update(self, value: float) -> None:
        self.low, self.high = min(self.low, value), max(self.high, value)

    def normalize(self, value: float) -> float:
        return (value - self.low) / (self.high - self.low) if self.high > self.low else 0.5


def _ranking_key(action: int, node: _Node | None, discount: float) -> tuple:
    """Sort key of root actions: most visits, then highest q, then lowest index; unvisited actions last."""
    if node is None or node.visits == 0:
        return (0, 0.0, action)
    return (-node.visits, -node.q(discount), action)


def _best_child(node: _Node, discount: float) -> tuple[int, _Node] | None:
    visited = [(a, child) for a, child in node.children.items() if child.visits]
    if not visited:
        return None
    return min(visited, key=lambda item: _ranking_key(item[0], item[1], discount))


def _same_state(first, second, ignore: tuple[str, ...] = ()) -> bool:
    """Whether two game copies hold the same state: their attributes compared recursively (arrays by value),
    RandomState objects skipped (they are the chance source, not the state), top-level names in ``ignore`` skipped."""

    def same(a, b) -> bool:
        if isinstance(a, np.random.RandomState) and isinstance(b, np.random.RandomState):
            return True
        if type(a) is not type(b):
            return False
        if isinstance(a, np.ndarray):
            return a.shape == b.shape and a.dtype == b.dtype and bool(np.array_equal(a, b))
        if isinstance(a, (list, tuple)):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if hasattr(a, "__dict__"):
            return same(vars(a), vars(b))
        return bool(a == b)

    first_vars = {k: v for k, v in vars(first).items() if k not in ignore}
    second_vars = {k: v for k, v in vars(second).items() if k not in ignore}
    return same(first_vars, second_vars)


def _reward_int(reward, where: str) -> int:
    """A reward as a record int; ValueError (never clipping) for a negative, fractional or too large reward."""
    value = float(reward)
    if not (value.is_integer() and 0 <= value <= MAX_REWARD):
        raise ValueError(
            f"MCTSRecord holds integer rewards in [0, {MAX_REWARD}]; the game returned {reward!r} at {where}"
        )
    return int(value)


def is_single_move(branch_visits) -> bool:
    """Whether a record's visit buckets say that every action was the same move: two branches or more, each holding
    all of the root's visits (bucket 9). That happens only when the expert merged them (``merge_equivalent``; distinct
    moves share the visits, so at most one can hold 90% of them), e.g. every action while Freeway's move timer runs.
    The expert's action is then arbitrary (the game's previous action), and a clone cannot tell it from the
    observation."""
    visits = np.asarray(branch_visits)
    return visits.shape[0] > 1 and bool((visits == NUM_BUCKETS - 1).all())


def _bucket(fraction: float) -> int:
    return min(NUM_BUCKETS - 1, math.floor(NUM_BUCKETS * fraction))


@register_procedure
class MCTSExpert(Procedure):
    """The MCTS expert: plans from a game's current state and returns an `MCTSRecord` (module docstring).

    Identical to `Procedure` except: ``__call__`` takes a game (or a MinAtar gymnasium env) instead of a maze. It is
    registered as ``"mcts"`` so that ``get_procedure("mcts")`` (default config) and the tokenizer's
    procedure-format registry find `MCTSRecord`.

    Args:
        config: the search settings; default `MCTSConfig()`.

    The planner's ``numpy.random.Generator`` is seeded once from ``config.seed`` and advances across calls: the
    same config applied to the same sequence of states gives the same decisions.
    """

    name = "mcts"
    record_type = MCTSRecord

    def __init__(self, config: MCTSConfig | None = None):
        if config is None:
            config = MCTSConfig()
        if not isinstance(config, MCTSConfig):
            raise TypeError(f"config must be an MCTSConfig, got {type(config).__name__}")
        self.config = config
        self.rng = np.random.default_rng(config.seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    def __call__(self, game_or_env) -> MCTSRecord:
        """Plan from the current state of ``game_or_env`` (left untouched) and return the record of the decision."""
        root, num_actions = self.search(game_or_env)
        return self._record(root, num_actions)

    def search(self, game_or_env) -> tuple[_Node, int]:
        """Run ``num_simulations`` simulations; return the root of the tree and the number of actions."""
        cfg = self.config
        game, action_set = as_game(game_or_env)
        num_actions = len(action_set)
        if not 1 <= num_actions <= NUM_ACTIONS:
            raise ValueError(f"the game must have between 1 and {NUM_ACTIONS} actions, got {num_actions}")
        # One RandomState shared by every snapshot of this search (see envs.minatar.snapshot): chance events are
        # sampled from it, never read from the real game's RandomState.
        crn_seed = int(self.rng.integers(2**32))
        shared = np.random.RandomState(crn_seed)
        memo_key = id(shared)
        all_actions = range(num_actions)

        def copy_game(source):
            return copy.deepcopy(source, {memo_key: shared})

        def new_node(game_copy, reward, done, depth):
            return _Node(game_copy, reward, done, depth, self.rng.permutation(num_actions).tolist(), all_actions)

        root = new_node(snapshot(game, shared), 0.0, False, 0)
        root.aliases = self._aliases(game, action_set, crn_seed) if cfg.merge_equivalent else list(all_actions)
        root.moves = sorted(set(root.aliases))
        root.untried = [a for a in root.untried if a in root.moves]  # the duplicates of a move are never searched
        bounds = _MinMax()
        discount, exploration = cfg.discount, cfg.exploration
        for _ in range(cfg.num_simulations):
            node, path = root, [root]
            # Selection and expansion.
            while not node.done and node.depth < cfg.max_depth:
                if node.untried:
                    action = node.untried.pop()
                    child_game = copy_game(node.game)
                    reward, done = child_game.act(action_set[action])
                    child = new_node(child_game, float(reward), bool(done), node.depth + 1)
                    node.children[action] = child
                    path.append(child)
                    node = child
                    break
                log_visits = math.log(node.visits)
                best_score, best = -math.inf, None
                for action in node.moves:  # ascending: ties keep the lowest index
                    child = node.children[action]
                    score = bounds.normalize(child.q(discount)) + exploration * math.sqrt(log_visits / child.visits)
                    if score > best_score:
                        best_score, best = score, child
                node = best
                path.append(node)
            # Evaluation.
            value = 0.0
            if not node.done and cfg.rollout_depth:
                rollout = copy_game(node.game)
                weight = 1.0
                actions = self.rng.integers(num_actions, size=cfg.rollout_depth).tolist()
                if cfg.rollout_hold:
                    hold = (self.rng.random(cfg.rollout_depth) < cfg.rollout_hold).tolist()
                    for i in range(1, cfg.rollout_depth):
                        if hold[i]:
                            actions[i] = actions[i - 1]
                for action in actions:
                    reward, done = rollout.act(action_set[action])
                    value += weight * float(reward)
                    weight *= discount
                    if done:
                        break
            # Backup: `value` is the return from the current node's state on.
            for node in reversed(path):
                node.visits += 1
                node.value_sum += value
                if node is not root:
                    bounds.update(node.q(discount))
                value = node.reward + discount * value
        return root, num_actions

    def _aliases(self, game, action_set, seed: int) -> list[int]:
        """``aliases[a]``: the action searched for action ``a``, ``a`` itself unless another action is the same move.

        Two actions are the same move when one step of each, from copies of the game that draw the same chance events
        (common random numbers: a fresh RandomState(``seed``) each), returns the same reward and done flag and leaves
        the same game state (`_same_state`). A class of such actions is searched once, through its member that the
        game's previous action (``last_action``, if the game has one) is, else through its lowest index.
        """
        previous = getattr(game, "last_action", None)
        previous = action_set.index(previous) if previous in action_set else None
        sticky = getattr(game, "sticky_action_prob", 0)
        # Without sticky actions the previous action has no effect on the future: it is not part of the state.
        ignore = ("last_action",) if not sticky else ()
        outcomes = []
        for action in action_set:
            trial = snapshot(game, np.random.RandomState(seed))
            reward, done = trial.act(action)
            outcomes.append((trial, float(reward), bool(done)))
        aliases = list(range(len(action_set)))
        order = sorted(aliases, key=lambda a: (a != previous, a))  # the previous action stands for its class
        for i, a in enumerate(order):
            if aliases[a] != a:
                continue
            for b in order[i + 1 :]:
                if aliases[b] == b and outcomes[a][1:] == outcomes[b][1:] and _same_state(
                        outcomes[a][0], outcomes[b][0], ignore):
                    aliases[b] = a
        return aliases

    def _record(self, root: _Node, num_actions: int) -> MCTSRecord:
        cfg = self.config
        aliases = root.aliases  # set by `search` for its root

        def key(action):  # a duplicate shares its move's statistics and follows the move's own action
            return _ranking_key(action, root.children.get(aliases[action]), cfg.discount)[:2] + (
                aliases[action] != action, action)

        ranked = sorted(range(num_actions), key=key)
        ranked = ranked[: min(cfg.top_k, num_actions)]
        visited = [child for child in root.children.values() if child.visits]
        total = sum(child.visits for child in visited)
        qs = [child.q(cfg.discount) for child in visited]
        low, high = min(qs), max(qs)
        visits, values = [], []
        for action in ranked:
            child = root.children.get(aliases[action])
            if child is None or child.visits == 0:
                visits.append(0)
                values.append(0)
                continue
            visits.append(_bucket(child.visits / total))
            values.append(_bucket((child.q(cfg.discount) - low) / (high - low)) if high > low else NUM_BUCKETS - 1)
        pv_actions, pv_rewards = [], []
        node = root
        while len(pv_actions) < cfg.pv_length:
            best = _best_child(node, cfg.discount)
            if best is None:
                break
            action, node = best
            pv_actions.append(action)
            pv_rewards.append(_reward_int(node.reward, f"principal-variation step {len(pv_rewards)}"))
            if node.done:
                break
        return MCTSRecord(
            branch_actions=np.array(ranked, dtype=np.int8),
            branch_visits=np.array(visits, dtype=np.int8),
            branch_values=np.array(values, dtype=np.int8),
            pv_actions=np.array(pv_actions, dtype=np.int8),
            pv_rewards=np.array(pv_rewards, dtype=np.int8),
            action=int(ranked[0]),
        )


# ---------------------------------------------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------------------------------------------


def random_action(game_or_env, rng: np.random.Generator) -> int:
    """A uniformly random action index of the game's action set (`pc_transformers.envs.minatar.as_game`)."""
    _, action_set = as_game(game_or_env)
    return int(rng.integers(len(action_set)))


def greedy_one_step_action(game_or_env, rng: np.random.Generator) -> int:
    """The action with the largest immediate reward, tried once each in a snapshot; ties broken at random.

    Every action is tried from a copy with the same freshly seeded RandomState (common random numbers: the actions
    are compared on the same sampled chance events, none of them the real game's).
    """
    game, action_set = as_game(game_or_env)
    seed = int(rng.integers(2**32))
    rewards = []
    for action in action_set:
        trial = snapshot(game, np.random.RandomState(seed))
        reward, _ = trial.act(action)
        rewards.append(float(reward))
    best = np.flatnonzero(np.asarray(rewards) == max(rewards))
    return int(best[rng.integers(len(best))])
