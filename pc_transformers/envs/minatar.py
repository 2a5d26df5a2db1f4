"""MinAtar games (REFERENCE.md, "MinAtar with an MCTS expert") for procedure cloning: settings, seeds, snapshots.

MinAtar (``pip install -e .[minatar]``) ships five 10×10 miniature Atari games with gymnasium ids
``MinAtar/<Game>-v1`` (minimal action sets; ``-v0`` has all 6 actions). Observations are ``(10, 10, num_channels)``
bool arrays. This module adds what procedure cloning needs on top:

* ``make_minatar_env(game, setting)``: the gymnasium env under a *named setting* of the generalization protocol.
  Training data come from the ``"train"`` setting (no sticky actions, no difficulty ramp); the ``"eval"`` setting
  turns on MinAtar's defaults (sticky actions with probability 0.1, difficulty ramping), an unseen configuration
  for a policy trained on ``"train"``.
* ``RandomStart`` (``make_minatar_env(..., random_start_steps=k)``): up to ``k`` random actions at every reset, to
  vary the start of validation episodes in games whose reset has little randomness.
* ``episode_seeds(split, n)``: disjoint episode seeds per split, the same ranges as the maze seeds
  (`pc_transformers.envs.maze`): train ``0, 1, …``, eval ``1_000_000, …``, validation ``2_000_000, …``.
* ``snapshot(env_or_game, rng)``: a copy of the simulator for planning (see below).
* ``minatar_game_info(game)``: action set, action names and channel count of a game.

The ``minatar`` package is imported inside the functions that need it, so ``import pc_transformers`` works without
it.

The game protocol
-----------------
Planners (`pc_transformers.procedures.mcts`) work on any *game*: an object with ``act(action) -> (reward, done)``,
``state()``, ``num_actions()`` and a ``random`` attribute (a ``numpy.random.RandomState`` drawing every random event
of the game), that ``copy.deepcopy`` can copy. ``minatar.Environment`` is one (its inner ``env.random`` is the same
RandomState once seeded, as gymnasium's ``reset(seed=...)`` does); a MinAtar gymnasium env is accepted wherever a
game is and contributes ``env.unwrapped.game`` together with its action set (`as_game`).

Snapshots and the oracle problem
--------------------------------
A plain deep copy of a game copies its RandomState too, so a planner acting in the copy would see exactly the
random events (enemy spawns, sticky actions, car speeds) that the real game will draw next: the expert would be an
oracle that reads the future. ``snapshot(game, rng)`` therefore gives the copy a RandomState of its own, seeded from
the planner's ``rng``; the planner then samples futures from the game's dynamics, as a real model of the game
would. Only ``snapshot(game)`` without ``rng`` is the exact (oracle) copy. Either way, the real game's state and
its RandomState are never touched.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import dataclass

import gymnasium
import numpy as np

from pc_transformers.envs.maze import TEST_SEED_START, VALIDATION_SEED_START

__all__ = [
    "MINATAR_ACTION_NAMES",
    "MINATAR_ENV_IDS",
    "MINATAR_GAMES",
    "MINATAR_NUM_ACTIONS",
    "MINATAR_SEED_STARTS",
    "MINATAR_SETTINGS",
    "MinAtarGameInfo",
    "as_game",
    "episode_seeds",
    "make_minatar_env",
    "minatar_game_info",
    "snapshot",
]

MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
# "space_invaders" -> "MinAtar/SpaceInvaders-v1", the naming of minatar.gym.register_envs.
MINATAR_ENV_IDS = {game: f"MinAtar/{game.title().replace('_', '')}-v1" for game in MINATAR_GAMES}

# The generalization protocol: train without sticky actions or difficulty ramp; evaluate under MinAtar's defaults.
MINATAR_SETTINGS = {
    "train": {"sticky_action_prob": 0.0, "difficulty_ramping": False},
    "eval": {"sticky_action_prob": 0.1, "difficulty_ramping": True},
}

# The full MinAtar action set (minatar.Environment.num_actions() == 6); each game's minimal set is a subset.
MINATAR_ACTION_NAMES = ("noop", "left", "up", "right", "down", "fire")
MINATAR_NUM_ACTIONS = len(MINATAR_ACTION_NAMES)

# First episode seed of each split; the ranges match the maze seed splits of pc_transformers.envs.maze.
MINATAR_SEED_STARTS = {"train": 0, "eval": TEST_SEED_START, "validation": VALIDATION_SEED_START}
_SEED_RANGE = TEST_SEED_START


@contextlib.contextmanager
def _quiet_minatar_import():
    """Drop minatar's import-time "Cannot import matplotlib and/or seaborn" warnings (rendering only).

    minatar logs them with ``logging.warning`` on the root logger, which also calls ``logging.basicConfig()`` when
    the root logger has no handler, a side effect on the user's logging. A temporary NullHandler prevents that and
    a filter drops exactly these records; every other message passes.
    """
    root = logging.getLogger()
    null_handler = logging.NullHandler()

    def drop_render_warning(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Cannot import")

    root.addHandler(null_handler)
    root.addFilter(drop_render_warning)
    try:
        yield
    finally:
        root.removeFilter(drop_render_warning)
        root.removeHandler(null_handler)


def _import_minatar():
    """``minatar`` with its gymnasium ids registered; ImportError naming the extra to install if it is missing."""
    try:
        with _quiet_minatar_import():
            import minatar
            import minatar.gym
    except ImportError as error:
        raise ImportError("MinAtar games need the minatar package: pip install -e .[minatar]") from error
    if MINATAR_ENV_IDS["breakout"] not in gymnasium.registry:
        minatar.gym.register_envs()
    return minatar


def _check_game(game: str) -> str:
    if game not in MINATAR_GAMES:
        raise ValueError(f"unknown MinAtar game {game!r}; expected one of {', '.join(MINATAR_GAMES)}")
    return game


def _resolve_setting(setting: str | dict) -> dict:
    if isinstance(setting, dict):
        unknown = sorted(set(setting) - {"sticky_action_prob", "difficulty_ramping"})
        if unknown:
            raise ValueError(
                f"a setting dict may hold sticky_action_prob and difficulty_ramping, got unknown keys {unknown}"
            )
        resolved = {**MINATAR_SETTINGS["train"], **setting}
    elif isinstance(setting, str) and setting in MINATAR_SETTINGS:
        resolved = dict(MINATAR_SETTINGS[setting])
    else:
        raise ValueError(
            f"unknown setting {setting!r}; expected one of {', '.join(MINATAR_SETTINGS)} or a dict of "
            "sticky_action_prob / difficulty_ramping"
        )
    prob = resolved["sticky_action_prob"]
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
        raise ValueError(f"sticky_action_prob must be a number in [0, 1], got {prob!r}")
    if not isinstance(resolved["difficulty_ramping"], bool):
        raise TypeError(f"difficulty_ramping must be a bool, got {resolved['difficulty_ramping']!r}")
    return resolved


class RandomStart(gymnasium.Wrapper):
    """On every reset, play ``k`` uniformly random actions before handing the episode over, ``k`` drawn uniformly
    from ``{0, …, max_random_steps}``: random no-op starts (Mnih et al., 2015) with random actions, a way to vary the
    start of a game whose reset has little randomness (MinAtar Breakout starts in one of two states, Space Invaders in
    one) without changing its rules. Seeded resets draw ``k`` and the actions from ``numpy.random.default_rng(seed)``,
    so a seed gives the same start; the random steps' rewards are not reported, and an episode that ends during them
    is reset (unseeded) and handed over at once. ``info["random_start_steps"]`` is the number of random steps taken.
    """

    def __init__(self, env: gymnasium.Env, max_random_steps: int):
        if isinstance(max_random_steps, bool) or not isinstance(max_random_steps, (int, np.integer)) or (
                max_random_steps < 0):
            raise ValueError(f"max_random_steps must be a non-negative int, got {max_random_steps!r}")
        super().__init__(env)
        self.max_random_steps = int(max_random_steps)
        self._rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        steps = int(self._rng.integers(0, self.max_random_steps + 1))
        for taken in range(steps):
            obs, _, terminated, truncated, info = self.env.step(int(self._rng.integers(self.action_space.n)))
            if terminated or truncated:
                obs, info = self.env.reset()
                steps = taken + 1
                break
        return obs, {**info, "random_start_steps": steps}


def make_minatar_env(
    game: str, setting: str | dict = "train", max_episode_steps: int | None = None, random_start_steps: int = 0,
    **kwargs,
) -> gymnasium.Env:
    """``gymnasium.make("MinAtar/<Game>-v1", ...)`` under a named setting of the generalization protocol.

    Args:
        game: one of `MINATAR_GAMES` (``"breakout"``, ``"space_invaders"``, ...).
        setting: ``"train"`` (``sticky_action_prob=0.0, difficulty_ramping=False``), ``"eval"``
            (``sticky_action_prob=0.1, difficulty_ramping=True``, MinAtar's defaults) or a dict of those two keys
            (missing keys take the ``"train"`` values).
        max_episode_steps: wraps the env in gymnasium's ``TimeLimit`` (episodes are truncated) when given.
        random_start_steps: wraps the env in `RandomStart`: up to this many random actions at every reset (0: none).
            They do not count toward ``max_episode_steps``.
        **kwargs: passed to ``gymnasium.make`` (e.g. ``render_mode``); may not repeat a key of the setting.

    Returns:
        The env: ``Discrete(len(action_set))`` actions (the game's minimal action set, ``env.unwrapped.action_set``
        maps them to MinAtar's 6 actions) and ``(10, 10, num_channels)`` bool observations. Seed it with
        ``env.reset(seed=...)``, seeds from `episode_seeds`.
    """
    _check_game(game)
    resolved = _resolve_setting(setting)
    clash = sorted(set(kwargs) & set(resolved))
    if clash:
        raise ValueError(f"{clash} are fixed by setting={setting!r}; pass a setting dict instead of keyword arguments")
    if max_episode_steps is not None and (
        isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, int) or max_episode_steps < 1
    ):
        raise ValueError(f"max_episode_steps must be a positive int or None, got {max_episode_steps!r}")
    if isinstance(random_start_steps, bool) or not isinstance(random_start_steps, int) or random_start_steps < 0:
        raise ValueError(f"random_start_steps must be a non-negative int, got {random_start_steps!r}")
    _import_minatar()
    if not random_start_steps:
        return gymnasium.make(MINATAR_ENV_IDS[game], max_episode_steps=max_episode_steps, **resolved, **kwargs)
    env = RandomStart(gymnasium.make(MINATAR_ENV_IDS[game], **resolved, **kwargs), random_start_steps)
    return env if max_episode_steps is None else gymnasium.wrappers.TimeLimit(env, max_episode_steps)


@dataclass(frozen=True)
class MinAtarGameInfo:
    """What a model needs to know about a game's interface.

    Args:
        game: the game name, one of `MINATAR_GAMES`.
        env_id: its gymnasium id, ``MinAtar/<Game>-v1``.
        action_set: the minimal action set, a tuple of MinAtar actions in ``[0, 6)``: gym action ``i`` of the -v1 env
            is MinAtar action ``action_set[i]``.
        action_names: the names of those actions (``"noop", "left", "up", "right", "down", "fire"``).
        num_channels: the observation's channel count (the last axis of the ``(10, 10, C)`` state).
    """

    game: str
    env_id: str
    action_set: tuple[int, ...]
    action_names: tuple[str, ...]
    num_channels: int

    @property
    def num_actions(self) -> int:
        return len(self.action_set)


def minatar_game_info(game: str) -> MinAtarGameInfo:
    """Action set and channel count of a MinAtar game (builds one ``minatar.Environment``, a few ms)."""
    _check_game(game)
    minatar = _import_minatar()
    environment = minatar.Environment(game, sticky_action_prob=0.0, difficulty_ramping=False)
    action_set = tuple(int(a) for a in environment.minimal_action_set())
    return MinAtarGameInfo(
        game=game,
        env_id=MINATAR_ENV_IDS[game],
        action_set=action_set,
        action_names=tuple(MINATAR_ACTION_NAMES[a] for a in action_set),
        num_channels=int(environment.state_shape()[2]),
    )


def episode_seeds(split: str, num_episodes: int, offset: int = 0) -> tuple[int, ...]:
    """Episode seeds ``MINATAR_SEED_STARTS[split] + offset + i`` for ``i < num_episodes``; splits never overlap."""
    if split not in MINATAR_SEED_STARTS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(MINATAR_SEED_STARTS)}")
    for name, value in (("num_episodes", num_episodes), ("offset", offset)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if offset + num_episodes > _SEED_RANGE:
        raise ValueError(
            f"offset + num_episodes must be at most {_SEED_RANGE} to keep the splits disjoint, "
            f"got {offset} + {num_episodes}"
        )
    start = MINATAR_SEED_STARTS[split] + int(offset)
    return tuple(range(start, start + int(num_episodes)))


def as_game(env_or_game) -> tuple[object, tuple[int, ...]]:
    """``(game, action_set)`` for a MinAtar gymnasium env (wrapped or not) or a bare game (see the module docstring).

    For an env, ``game`` is ``env.unwrapped.game`` and ``action_set`` the env's (``env.unwrapped.action_set``): action
    index ``i`` means ``game.act(action_set[i])``. For a bare game it is ``range(game.num_actions())`` (for a
    ``minatar.Environment``, all 6 actions, as the -v0 envs).
    """
    unwrapped = getattr(env_or_game, "unwrapped", None)
    if unwrapped is not None and hasattr(unwrapped, "game") and hasattr(unwrapped, "action_set"):
        return unwrapped.game, tuple(int(a) for a in unwrapped.action_set)
    missing = [name for name in ("act", "state", "num_actions") if not callable(getattr(env_or_game, name, None))]
    if missing:
        raise ValueError(
            f"expected a MinAtar gymnasium env or a game with act(a), state() and num_actions(); "
            f"{type(env_or_game).__name__} lacks {missing}"
        )
    return env_or_game, tuple(range(int(env_or_game.num_actions())))


def _random_states(game) -> list[np.random.RandomState]:
    """The RandomState objects of a game: ``game.random`` and, for minatar, the inner ``game.env.random``."""
    states = []
    for owner in (game, getattr(game, "env", None)):
        state = getattr(owner, "random", None)
        if isinstance(state, np.random.RandomState) and all(state is not s for s in states):
            states.append(state)
    return states


def snapshot(env_or_game, rng: np.random.Generator | np.random.RandomState | None = None):
    """A deep copy of the game for planning; the real game (state and RandomState) is left untouched.

    Args:
        env_or_game: a MinAtar gymnasium env or a game (see the module docstring).
        rng: where the copy's random events come from.

            * ``None``: the copy keeps a copy of the game's RandomState, so it will draw exactly the events the
              real game draws next. Exact, but a planner using it is an oracle that sees the future.
            * a ``numpy.random.Generator``: the copy gets a new RandomState seeded from ``rng`` (one draw of
              ``rng``): the planner samples futures instead of reading the real ones.
            * a ``numpy.random.RandomState``: the copy uses that object itself, not a copy (cheap; a planner shares
              one among all its snapshots, so every expansion draws fresh events from it).

    Returns:
        The copied game (for an env, a copy of ``env.unwrapped.game``; its action set is `as_game`'s).
    """
    game, _ = as_game(env_or_game)
    if rng is None:
        return copy.deepcopy(game)
    if isinstance(rng, np.random.Generator):
        replacement = np.random.RandomState(int(rng.integers(2**32)))
    elif isinstance(rng, np.random.RandomState):
        replacement = rng
    else:
        raise TypeError(f"rng must be a numpy Generator, a numpy RandomState or None, got {type(rng).__name__}")
    states = _random_states(game)
    if not states:
        raise ValueError(
            f"{type(game).__name__} has no `random` RandomState attribute to reseed; pass rng=None for an exact copy"
        )
    # Pre-filling deepcopy's memo maps the game's RandomState(s) to the replacement: every reference inside the copy
    # (minatar's game.random and game.env.random) then points to it, and the original is never copied, which is
    # also what makes this ~10x faster than a full deep copy (a RandomState copy costs ~300 us).
    return copy.deepcopy(game, {id(state): replacement for state in states})
