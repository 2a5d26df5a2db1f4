"""The MCTS expert (pc_transformers/procedures/mcts.py) and the MinAtar helpers (pc_transformers/envs/minatar.py).

Correctness is checked against an independent computation: on a small deterministic game the optimal first action is
found by exhaustive search here, and the record's principal variation is replayed in a fresh copy of the game.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import numpy as np
import pytest

from pc_transformers.envs.minatar import (
    MINATAR_SETTINGS,
    as_game,
    episode_seeds,
    snapshot,
)
from pc_transformers.procedures import get_procedure
from pc_transformers.procedures.mcts import (
    MCTS_WORDS,
    MCTSConfig,
    MCTSExpert,
    MCTSRecord,
    greedy_one_step_action,
    is_single_move,
    mcts_words,
    random_action,
)

# ---------------------------------------------------------------------------------------------------------------
# A small deterministic game with the planners' interface
# ---------------------------------------------------------------------------------------------------------------

HORIZON, TOY_ACTIONS = 4, 3


class ToyGame:
    """A depth-4 tree game: 3 actions per step, an integer reward in [0, 3] per edge, done after 4 steps.

    Every action sequence leads to its own state (``pos`` numbers the path in base 3), so the game is a full tree
    with 81 leaves. ``random`` is never drawn from: the game is deterministic.
    """

    def __init__(self, rewards: np.ndarray):
        self.rewards = rewards  # (HORIZON, 3**HORIZON, TOY_ACTIONS) int
        self.t = 0
        self.pos = 0
        self.random = np.random.RandomState(0)

    def num_actions(self) -> int:
        return TOY_ACTIONS

    def act(self, action: int):
        if self.t >= HORIZON:
            return 0, True
        reward = int(self.rewards[self.t, self.pos, action])
        self.pos, self.t = self.pos * TOY_ACTIONS + action, self.t + 1
        return reward, self.t >= HORIZON

    def state(self) -> np.ndarray:
        return np.array([self.t, self.pos])


def toy_rewards(seed: int) -> np.ndarray:
    """Sparse rewards (mostly 0) with a decoy: action 0 pays 1 at once but leads only to zero rewards."""
    rng = np.random.default_rng(seed)
    rewards = rng.integers(0, 4, size=(HORIZON, TOY_ACTIONS**HORIZON, TOY_ACTIONS)) * (
        rng.random((HORIZON, TOY_ACTIONS**HORIZON, TOY_ACTIONS)) < 0.3
    )
    rewards[0, 0] = [1, 0, 0]
    # Zero every reward below action 0 at the root: the positions reached through a first action 0 are pos < 3**(t-1).
    for t in range(1, HORIZON):
        rewards[t, : TOY_ACTIONS ** (t - 1)] = 0
    return rewards


def discounted_return(game: ToyGame, actions, discount: float) -> float:
    trial = copy.deepcopy(game)
    return sum(discount**i * trial.act(int(a))[0] for i, a in enumerate(actions))


def brute_force(game: ToyGame, discount: float) -> np.ndarray:
    """The best discounted return after each first action, over all 3^4 action sequences."""
    best = np.full(TOY_ACTIONS, -np.inf)
    for sequence in itertools.product(range(TOY_ACTIONS), repeat=HORIZON):
        best[sequence[0]] = max(best[sequence[0]], discounted_return(game, sequence, discount))
    return best


# ---------------------------------------------------------------------------------------------------------------
# Config and record
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_simulations": 0}, ValueError, "num_simulations must be an int >= 1, got 0"),
        ({"num_simulations": 2.5}, TypeError, "num_simulations must be an int"),
        ({"max_depth": 0}, ValueError, "max_depth"),
        ({"rollout_depth": -1}, ValueError, "rollout_depth"),
        ({"top_k": True}, TypeError, "top_k"),
        ({"pv_length": 0}, ValueError, "pv_length"),
        ({"seed": -1}, ValueError, "seed"),
        ({"exploration": -0.1}, ValueError, "exploration must be a finite number >= 0, got -0.1"),
        ({"exploration": float("inf")}, ValueError, "exploration"),
        ({"discount": 0.0}, ValueError, r"discount must lie in \(0, 1\], got 0.0"),
        ({"discount": 1.5}, ValueError, "discount"),
        ({"discount": "0.9"}, TypeError, "discount must be a number"),
        ({"rollout_hold": 1.0}, ValueError, r"rollout_hold must lie in \[0, 1\)"),
    ],
)
def test_config_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        MCTSConfig(**kwargs)


def test_config_normalizes_numbers():
    config = MCTSConfig(num_simulations=np.int64(5), discount=1)
    assert type(config.num_simulations) is int and type(config.discount) is float


def _record(**overrides) -> MCTSRecord:
    fields = {
        "branch_actions": [1, 0, 2], "branch_visits": [7, 2, 0], "branch_values": [9, 4, 0],
        "pv_actions": [1, 1, 0], "pv_rewards": [0, 1, 0], "action": 1,
    }
    fields.update(overrides)
    return MCTSRecord(**{k: np.asarray(v) if isinstance(v, list) else v for k, v in fields.items()})


def test_record_fields_repr_and_metadata():
    record = _record()
    assert record.branch_actions.dtype == np.int8 and not record.branch_actions.flags.writeable
    assert repr(record) == (
        "MCTSRecord(branch_actions=int8(3,), branch_visits=int8(3,), branch_values=int8(3,), pv_actions=int8(3,), "
        "pv_rewards=int8(3,), action=1, ranked=True)"
    )
    assert record.metadata == {"num_steps": 6, "num_branches": 3, "pv_length": 3}
    assert record.steps[0] == ("branch", (1, 7, 9)) and record.steps[-1] == ("pv", (0, 0))
    assert record == _record() and record != _record(pv_rewards=[0, 0, 0])
    assert MCTSRecord.format == "mcts"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"branch_actions": [1, 1, 2]}, "branch_actions must be distinct"),
        ({"branch_actions": [1, 0, 6]}, r"branch_actions values must lie in \[0, 5\]"),
        ({"branch_actions": []}, "branch_actions must be a non-empty 1-d array"),
        ({"branch_visits": [7, 2]}, r"branch_visits must have shape \(3,\)"),
        ({"branch_visits": [2, 7, 0]}, "branch_visits must be non-increasing"),
        ({"branch_values": [10, 4, 0]}, r"branch_values values must lie in \[0, 9\]"),
        ({"branch_values": [9.0, 4.0, 0.0]}, "branch_values must have an integer dtype"),
        ({"pv_rewards": [0, 1]}, r"pv_rewards must have shape \(3,\)"),
        ({"pv_rewards": [0, -1, 0]}, r"pv_rewards values must lie in \[0, 127\]"),
        ({"action": 0}, "action must equal branch_actions"),
        ({"pv_actions": [0, 1, 0]}, "action must equal branch_actions"),
        ({"action": 1.0}, "action must be an int"),
    ],
)
def test_record_validation(overrides, match):
    with pytest.raises(ValueError, match=match):
        _record(**overrides)


def test_tokens_follow_the_grammar_and_round_trip_exactly():
    record = _record()
    tokens = record.to_tokens()
    assert " ".join(tokens) == "a1 n7 q9 a0 n2 q4 a2 n0 q0 <path> a1 r0 a1 r1 a0 r0"
    assert MCTSRecord.from_tokens(tokens, (10, 10), 1) == record
    assert MCTSRecord.from_tokens(tokens, None, None) == record  # the action defaults to pv_actions[0]
    words = set(MCTS_WORDS) | {f"a{a}" for a in range(6)} | {"<path>"}
    assert set(tokens) <= words
    assert set(MCTS_WORDS) == {f"n{v}" for v in range(10)} | {f"q{v}" for v in range(10)} | {"r0", "r1"}
    # Large (Seaquest) rewards are kept exactly and need the larger word list.
    big = _record(pv_rewards=[0, 10, 0])
    assert MCTSRecord.from_tokens(big.to_tokens(), None, 1) == big
    assert "r10" in mcts_words(max_reward=10) and "r10" not in MCTS_WORDS


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a1 n7 q9", "exactly one <path>, got 0"),
        ("a1 n7 q9 <path> a1 r0 <path> a1 r0", "exactly one <path>, got 2"),
        ("a1 n7 <path> a1 r0", "triples"),
        ("<path> a1 r0", "triples"),
        ("a1 n7 q9 <path>", "pairs"),
        ("a1 n7 q9 <path> a1", "pairs"),
        ("a1 q9 n7 <path> a1 r0", "branch 0: expected 'n<int>', got 'q9'"),
        ("a1 n07 q9 <path> a1 r0", "branch 0: expected 'n<int>', got 'n07'"),
        ("a1 n7 q9 <path> a1 x0", "path step 0: expected 'r<int>', got 'x0'"),
        ("a1 n7 q9 <path> a1 r-1", "expected 'r<int>'"),
        ("a1 n10 q9 <path> a1 r0", r"branch_visits values must lie in \[0, 9\]"),
        ("a7 n7 q9 <path> a7 r0", r"branch_actions values must lie in \[0, 5\]"),
        ("a1 n7 q9 <path> a1 r99999", "expected 'r<int>'"),
        ("a1 n7 q9 <path> a0 r0", "action must equal"),
    ],
)
def test_malformed_tokens_raise(text, match):
    with pytest.raises(ValueError, match=match):
        MCTSRecord.from_tokens(text.split(), None, None)


def test_action_disagreeing_with_the_procedure_raises():
    with pytest.raises(ValueError, match="action must equal"):
        MCTSRecord.from_tokens(_record().to_tokens(), None, 0)


def test_registered_for_the_tokenizer():
    expert = get_procedure("mcts")
    assert isinstance(expert, MCTSExpert) and expert.record_type is MCTSRecord
    assert expert.config == MCTSConfig()
    from pc_transformers.tokenization_pc import PATH

    assert PATH == "<path>"


# ---------------------------------------------------------------------------------------------------------------
# The search, against exhaustive search
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_mcts_finds_the_optimal_action_of_a_toy_game(seed):
    game = ToyGame(toy_rewards(seed))
    # exploration=2: the decoy is a deceptive trap for UCT's mean backups (the optimal branch's mean is low until
    # its one rewarding path is found); with the default c=1, 2 of these 6 games still pick the decoy after 1500
    # simulations, with c=2 all find the optimum from 500 on.
    config = MCTSConfig(num_simulations=1500, max_depth=HORIZON, exploration=2.0, rollout_depth=0, discount=0.9,
                        pv_length=HORIZON, seed=seed)
    values = brute_force(game, config.discount)
    optimal = int(np.argmax(values))
    assert np.sum(values == values.max()) == 1, "the test game must have a unique optimal first action"
    assert optimal != 0, "the decoy (action 0: the largest immediate reward) must not be optimal"
    rng = np.random.default_rng(0)
    assert greedy_one_step_action(game, rng) == 0  # the greedy baseline falls for the decoy

    record = MCTSExpert(config)(game)
    assert record.action == optimal
    # With this budget the most-visited path is an optimal sequence.
    assert record.pv_length == HORIZON
    assert discounted_return(game, record.pv_actions, config.discount) == pytest.approx(values[optimal])
    # The principal variation's rewards are what replaying its actions gives.
    replay = copy.deepcopy(game)
    assert record.pv_rewards.tolist() == [replay.act(int(a))[0] for a in record.pv_actions]
    assert game.t == 0 and game.pos == 0  # planning did not move the real game


def test_record_buckets_match_the_tree():
    game = ToyGame(toy_rewards(0))
    expert = MCTSExpert(MCTSConfig(num_simulations=200, rollout_depth=2, top_k=2, pv_length=2, seed=3))
    root, _ = expert.search(game)
    expert.rng = np.random.default_rng(3)  # the same search again, now through __call__
    record = expert(game)
    children = root.children
    total = sum(c.visits for c in children.values())
    assert total == 200 and root.visits == 200
    q = {a: c.reward + 0.97 * c.value_sum / c.visits for a, c in children.items()}
    ranked = sorted(children, key=lambda a: (-children[a].visits, -q[a], a))
    low, high = min(q.values()), max(q.values())
    assert record.branch_actions.tolist() == ranked[:2]
    assert record.branch_visits.tolist() == [min(9, math.floor(10 * children[a].visits / total)) for a in ranked[:2]]
    assert record.branch_values.tolist() == [min(9, math.floor(10 * (q[a] - low) / (high - low))) for a in ranked[:2]]
    assert record.branch_values[0] == 9 or record.branch_visits[0] == record.branch_visits[1]


def test_few_simulations_leave_unvisited_branches_last():
    game = ToyGame(toy_rewards(0))
    record = MCTSExpert(MCTSConfig(num_simulations=2, top_k=3, seed=0))(game)
    assert record.branch_visits.tolist()[-1] == 0 and record.branch_values.tolist()[-1] == 0
    assert record.branch_visits.tolist()[:2] == [5, 5]
    assert record.pv_length == 1  # the tree has depth one


class LuckyGame:
    """One step: the action that equals the game's next random draw pays 1. Only an oracle always wins."""

    def __init__(self, seed: int):
        self.random = np.random.RandomState(seed)

    def num_actions(self) -> int:
        return 3

    def act(self, action: int):
        return int(action == self.random.randint(3)), True

    def state(self) -> np.ndarray:
        return np.zeros(1)


def test_planner_samples_chance_events_instead_of_reading_the_real_ones():
    expert = MCTSExpert(MCTSConfig(num_simulations=30, rollout_depth=0, seed=0))
    wins = 0
    for seed in range(40):
        game = LuckyGame(seed)
        wins += game.act(expert(game).action)[0]
    # A planner reading the real RandomState wins all 40; one sampling its own wins about a third.
    assert wins <= 25


def test_determinism_given_the_seed():
    game = ToyGame(toy_rewards(1))
    config = MCTSConfig(num_simulations=60, rollout_depth=3, seed=11)
    first, second = MCTSExpert(config), MCTSExpert(config)
    records = [(first(game), second(game)) for _ in range(3)]  # the generators advance identically across calls
    assert all(a == b for a, b in records)


def test_baselines():
    game = ToyGame(toy_rewards(0))
    rng = np.random.default_rng(0)
    actions = [random_action(game, rng) for _ in range(300)]
    assert set(actions) == {0, 1, 2}
    # Ties are broken at random: every action of a zero-reward state is chosen sometimes.
    flat = ToyGame(np.zeros((HORIZON, TOY_ACTIONS**HORIZON, TOY_ACTIONS), dtype=int))
    assert {greedy_one_step_action(flat, rng) for _ in range(60)} == {0, 1, 2}


# ---------------------------------------------------------------------------------------------------------------
# MinAtar
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minatar_env():
    pytest.importorskip("minatar")
    from pc_transformers.envs.minatar import make_minatar_env

    return make_minatar_env


def test_minatar_settings_and_errors(minatar_env):
    from pc_transformers.envs.minatar import MINATAR_ENV_IDS, minatar_game_info

    env = minatar_env("breakout", "eval", max_episode_steps=7)
    assert env.spec.id == MINATAR_ENV_IDS["breakout"] == "MinAtar/Breakout-v1"
    game = env.unwrapped.game
    assert game.sticky_action_prob == 0.1
    assert minatar_env("asterix", "eval").unwrapped.game.env.ramping is True
    assert minatar_env("asterix", "train").unwrapped.game.env.ramping is False
    assert minatar_env("asterix", {"sticky_action_prob": 0.3}).unwrapped.game.sticky_action_prob == 0.3
    assert MINATAR_SETTINGS["train"] == {"sticky_action_prob": 0.0, "difficulty_ramping": False}
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        *_, terminated, truncated, _ = env.step(0)
        if terminated or truncated:
            break
    assert steps <= 7
    with pytest.raises(ValueError, match="unknown MinAtar game 'pong'; expected one of asterix, breakout"):
        minatar_env("pong")
    with pytest.raises(ValueError, match="unknown setting 'test'; expected one of train, eval"):
        minatar_env("breakout", "test")
    with pytest.raises(ValueError, match="fixed by setting"):
        minatar_env("breakout", "train", sticky_action_prob=0.5)
    with pytest.raises(ValueError, match="unknown keys"):
        minatar_env("breakout", {"sticky": 0.5})
    info = minatar_game_info("space_invaders")
    assert info.env_id == "MinAtar/SpaceInvaders-v1" and info.num_channels == 6
    assert info.action_set == (0, 1, 3, 5) and info.action_names == ("noop", "left", "right", "fire")
    assert as_game(env)[1] == (0, 1, 3)


def test_random_start_varies_the_start_reproducibly(minatar_env):
    """RandomStart: a seed gives the same start and the same number of random steps, which are those of an
    independent replay (the same generator drives the bare env); the random steps do not count toward the cap;
    Breakout's two starts become many; bad values are refused."""
    from pc_transformers.envs.minatar import RandomStart

    seeds = episode_seeds("validation", 16)
    plain = {minatar_env("breakout", "train").reset(seed=s)[0].tobytes() for s in seeds}
    env = minatar_env("breakout", "train", max_episode_steps=5, random_start_steps=30)
    starts = {}
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        starts[seed] = (obs.tobytes(), info["random_start_steps"])
        assert 0 <= info["random_start_steps"] <= 30
        again, info_again = env.reset(seed=seed)
        assert np.array_equal(obs, again) and info_again["random_start_steps"] == info["random_start_steps"]
        # An independent replay: the bare env, stepped with the draws of default_rng(seed).
        bare, rng = minatar_env("breakout", "train"), np.random.default_rng(seed)
        replay, _ = bare.reset(seed=seed)
        for _ in range(int(rng.integers(0, 31))):
            replay, _, terminated, truncated, _ = bare.step(int(rng.integers(3)))
            if terminated or truncated:  # the ball was lost during the random steps: a fresh start, handed over
                replay, _ = bare.reset()
                break
        assert np.array_equal(obs, replay)
        policy_steps = 0
        while True:
            policy_steps += 1
            *_, terminated, truncated, _ = env.step(1)
            if terminated or truncated:
                break
        assert policy_steps == 5 or terminated  # the cap counts the policy's steps only
    assert len(plain) == 2 and len({obs for obs, _ in starts.values()}) > 2
    with pytest.raises(ValueError, match="random_start_steps must be a non-negative int, got -1"):
        minatar_env("breakout", "train", random_start_steps=-1)
    with pytest.raises(ValueError, match="max_random_steps must be a non-negative int, got 1.5"):
        RandomStart(minatar_env("breakout"), 1.5)
    wrapped = RandomStart(minatar_env("breakout", "train"), 3)
    assert wrapped.observation_space.contains(wrapped.reset(seed=1)[0]) and wrapped.action_space.n == 3


def test_episode_seeds_are_disjoint():
    train, evaluation = episode_seeds("train", 5), episode_seeds("eval", 5)
    assert train == (0, 1, 2, 3, 4) and evaluation[0] == 1_000_000 and not set(train) & set(evaluation)
    assert episode_seeds("validation", 2, offset=3) == (2_000_003, 2_000_004)
    with pytest.raises(ValueError, match="unknown split"):
        episode_seeds("test", 1)
    with pytest.raises(ValueError, match="at most 1000000"):
        episode_seeds("train", 1_000_001)


def _next_draws(game) -> np.ndarray:
    return copy.deepcopy(game.random).rand(5)


def test_snapshot_samples_futures_and_leaves_the_game_alone(minatar_env):
    env = minatar_env("asterix", "eval")
    env.reset(seed=4)
    game = env.unwrapped.game
    state, draws = game.state().copy(), _next_draws(game)

    oracle = snapshot(env)  # exact copy: the same future random draws
    assert np.array_equal(_next_draws(oracle), draws) and oracle.random is oracle.env.random
    sampled = snapshot(env, np.random.default_rng(0))
    assert sampled.random is sampled.env.random and sampled.random is not game.random
    assert not np.array_equal(_next_draws(sampled), draws)
    shared = np.random.RandomState(1)
    assert snapshot(game, shared).random is shared
    with pytest.raises(TypeError, match="rng must be a numpy Generator"):
        snapshot(game, 3)
    assert np.array_equal(game.state(), state) and np.array_equal(_next_draws(game), draws)


def test_planning_does_not_touch_the_real_env(minatar_env):
    env = minatar_env("asterix", "eval")  # sticky actions and spawns: planning draws random numbers constantly
    env.reset(seed=2)
    for _ in range(12):
        env.step(1)
    game = env.unwrapped.game
    twin = copy.deepcopy(game)  # an exact copy, to compare the future after planning
    record = MCTSExpert(MCTSConfig(num_simulations=40, rollout_depth=10, seed=0))(env)
    assert np.array_equal(game.state(), twin.state()) and np.array_equal(_next_draws(game), _next_draws(twin))
    assert game.last_action == twin.last_action
    for action in (record.action, 0, 2, 3, 4, 1, 0, 2):  # the same future: same events, same states
        assert game.act(action) == twin.act(action)
        assert np.array_equal(game.state(), twin.state())


def test_minatar_breakout_decision(minatar_env):
    env = minatar_env("breakout", "train")
    env.reset(seed=0)
    config = MCTSConfig(num_simulations=30, rollout_depth=10, seed=0)
    record = MCTSExpert(config)(env)
    assert set(record.branch_actions.tolist()) == {0, 1, 2}  # Breakout-v1: noop, left, right
    assert record.pv_length >= 1 and set(record.pv_rewards.tolist()) <= {0, 1}
    assert MCTSRecord.from_tokens(record.to_tokens(), (10, 10), record.action) == record
    assert MCTSExpert(config)(env) == record  # deterministic given the seed, on a real game too
    assert 0 <= greedy_one_step_action(env, np.random.default_rng(0)) < 3
    env.step(record.action)


# ---------------------------------------------------------------------------------------------------------------
# Equivalent moves: actions that leave the same state are searched once
# ---------------------------------------------------------------------------------------------------------------


class AliasGame(ToyGame):
    """`ToyGame` where action 2 is action 1 under another name (same rewards, same successor), and a remembered
    ``last_action`` (a gym action id from ``ACTION_SET``) that, as in MinAtar without sticky actions, is not state."""

    ACTION_SET = (0, 3, 5)

    def __init__(self, rewards: np.ndarray, last_action: int = 0):
        super().__init__(rewards)
        self.last_action = last_action
        self.sticky_action_prob = 0.0

    def num_actions(self) -> int:
        return 6

    def act(self, action: int):
        index = self.ACTION_SET.index(action)
        self.last_action = action
        return super().act(min(index, 1))


class AliasEnv:
    """The gymnasium-env shape `as_game` reads: ``unwrapped.game`` and ``unwrapped.action_set``."""

    def __init__(self, game):
        self.unwrapped = self
        self.game = game
        self.action_set = AliasGame.ACTION_SET


def alias_rewards() -> np.ndarray:
    rewards = toy_rewards(2)
    rewards[:, :, 2] = rewards[:, :, 1]  # unused by AliasGame.act, kept equal for clarity
    return rewards


@pytest.mark.parametrize(("last_action", "first"), [(0, 1), (3, 1), (5, 2)])
def test_equivalent_actions_are_one_move_listed_after_the_previous_action(last_action, first):
    env = AliasEnv(AliasGame(alias_rewards(), last_action))
    config = MCTSConfig(num_simulations=120, rollout_depth=2, top_k=3, seed=5)
    expert = MCTSExpert(config)
    root, _ = expert.search(env)
    # Independent check of the aliasing: actions 1 and 2 give the same reward and successor, action 0 does not.
    assert root.aliases == [0, first, first]
    assert sorted(root.children) == [0, first]  # the duplicate is never expanded
    assert sum(child.visits for child in root.children.values()) == 120
    record = MCTSExpert(config)(env)
    shared = root.children[first]
    stats = {a: (record.branch_visits[i], record.branch_values[i]) for i, a in enumerate(record.branch_actions.tolist())}
    assert stats[1] == stats[2]  # the duplicate reports its move's statistics
    ones = record.branch_actions.tolist().index(1), record.branch_actions.tolist().index(2)
    assert ones[0] - ones[1] == (1 if first == 2 else -1)  # the previous action's name comes first
    assert abs(ones[0] - ones[1]) == 1
    if shared.visits > root.children[0].visits:
        assert record.action == first and record.pv_actions[0] == first
    # Without merging every action is searched, and nothing is aliased.
    unmerged, _ = MCTSExpert(dataclasses.replace(config, merge_equivalent=False)).search(env)
    assert unmerged.aliases == [0, 1, 2] and sorted(unmerged.children) == [0, 1, 2]


def test_same_state_compares_values_and_skips_chance_and_ignored_fields():
    from pc_transformers.procedures.mcts import _same_state

    first, second = AliasGame(alias_rewards(), 3), AliasGame(alias_rewards(), 5)
    second.random = np.random.RandomState(99)  # another chance source is not another state
    assert not _same_state(first, second)  # last_action differs
    assert _same_state(first, second, ignore=("last_action",))
    second.pos = 1
    assert not _same_state(first, second, ignore=("last_action",))
    second.pos, second.rewards = 0, alias_rewards() + 1
    assert not _same_state(first, second, ignore=("last_action",))  # arrays compared by value


def test_freeway_move_timer_aliases_every_action_to_the_previous_one(minatar_env):
    """MinAtar Freeway ignores actions while the chicken's move timer runs (hidden from the observation): then every
    action is the same move and the expert repeats its previous action instead of picking one by noise."""
    env = minatar_env("freeway", "train")
    env.reset(seed=0)
    expert = MCTSExpert(MCTSConfig(num_simulations=20, rollout_depth=5, seed=0))
    game = env.unwrapped.game
    while game.env.move_timer:  # the timer runs at the start
        env.step(0)
    root, _ = expert.search(env)
    assert root.aliases == [0, 1, 2]  # noop, up and down all differ when the chicken can move
    assert not expert(env).single_move
    env.step(1)  # up: the timer starts
    assert game.env.move_timer > 0
    root, _ = expert.search(env)
    assert root.aliases == [1, 1, 1] and list(root.children) == [1]
    record = expert(env)
    assert record.action == 1 and record.branch_actions.tolist() == [1, 0, 2]
    assert len(set(record.branch_visits.tolist())) == 1 and len(set(record.branch_values.tolist())) == 1
    assert record.single_move and record.in_action_order(3).single_move
    # With sticky actions the previous action is part of the state: nothing is merged.
    sticky = minatar_env("freeway", "eval")
    sticky.reset(seed=0)
    sticky.unwrapped.game.env.move_timer = 2
    root, _ = expert.search(sticky)
    assert root.aliases == [0, 1, 2]


@pytest.mark.parametrize("visits, expected", [
    ([9, 9, 9], True), ([9, 9], True), ([9], False), ([9, 0, 0], False), ([9, 9, 0], False), ([5, 4, 0], False),
])
def test_is_single_move(visits, expected):
    assert is_single_move(visits) is expected
