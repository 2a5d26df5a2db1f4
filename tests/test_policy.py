"""Tests for PCPolicy (acting in gymnasium mazes, fallback, procedure cache, save/load) and the evaluation helpers.

The model that knows something is the ``overfit`` fixture of ``conftest.py``: a grid PC model that reproduces the
BFS expert exactly on maze seed 0 (7×7) from every state of one expert trajectory starting at (5, 1).
"""

from __future__ import annotations

import json
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from decoding_checks import assert_same_loss_and_gradients

import pc_transformers  # noqa: F401  (registers pc_transformers/Maze-v0)
from pc_transformers import PCForProcedureCloning
from pc_transformers.data import PCDataCollator, build_examples, generate_maze_dataset
from pc_transformers.envs import MazeEnv
from pc_transformers.evaluation import evaluate_policy, wilson_interval
from pc_transformers.grid import NUM_ACTIONS
from pc_transformers.policy import POLICY_CONFIG_NAME, PCPolicy, PolicyConfig
from pc_transformers.procedures import BFSMapsRecord, bfs_maps

GRID_SIZE = 7
OVERFIT_MAZE_SEED, OVERFIT_START = 0, (5, 1)  # as in conftest.py: maze seed 0, the expert trajectory's start


@pytest.fixture(autouse=True)
def _same_maze_as_the_overfit_fixture(request):
    if "overfit" in request.fixturenames:
        overfit = request.getfixturevalue("overfit")
        assert (overfit.maze_seed, overfit.start) == (OVERFIT_MAZE_SEED, OVERFIT_START)


def training_observations(overfit) -> np.ndarray:
    """``(B, 3, 7, 7)`` observations of the overfit model's training states."""
    env = MazeEnv(size=GRID_SIZE, maze_seed=OVERFIT_MAZE_SEED)
    return np.stack([env.reset(options={"start": tuple(int(c) for c in row["agent"])})[0] for row in overfit.rows])


def test_act_single_observation_from_gym_make(overfit):
    policy = PCPolicy(overfit.model, overfit.tokenizer, procedure_cache=False)
    env = gym.make("pc_transformers/Maze-v0", size=GRID_SIZE, maze_seed=OVERFIT_MAZE_SEED)
    obs, info = env.reset(seed=0, options={"start": OVERFIT_START})
    assert obs.shape == (3, GRID_SIZE, GRID_SIZE) and info["distance"] == 6
    action, info = policy.act(obs, return_procedure=True)
    assert isinstance(action, int) and action == overfit.records[0].action
    assert info["fallback"] is False and info["cached"] is False
    assert info["forward_passes"] == 7 + 1  # 7 maps, one pass each, plus the prompt
    record = info["procedure"]
    assert isinstance(record, BFSMapsRecord) and record.action == action
    assert record == overfit.records[0]
    # The record is also the expert's, recomputed independently from the environment.
    assert record == bfs_maps(env.unwrapped.walls, env.unwrapped.goal, OVERFIT_START)


def test_act_batch_matches_single_and_the_expert(overfit):
    policy = PCPolicy(overfit.model, overfit.tokenizer, procedure_cache=False)
    obs = training_observations(overfit)
    actions, infos = policy.act(obs, return_procedure=True)
    assert actions.shape == (len(obs),) and len(infos) == len(obs)
    assert actions.tolist() == [record.action for record in overfit.records]
    for i, (info, record) in enumerate(zip(infos, overfit.records)):
        assert info["fallback"] is False and info["procedure"] == record and info["procedure"].action == actions[i]
        single, _ = policy.act(obs[i])
        assert single == actions[i]


def test_greedy_episode_reaches_the_goal_along_the_expert_path(overfit):
    policy = PCPolicy(overfit.model, overfit.tokenizer)
    env = gym.make("pc_transformers/Maze-v0", size=GRID_SIZE, maze_seed=OVERFIT_MAZE_SEED)
    obs, _ = env.reset(seed=0, options={"start": OVERFIT_START})
    taken = []
    for _ in range(10):
        action, _ = policy.act(obs)
        taken.append(action)
        obs, reward, terminated, truncated, _ = env.step(action)
        if terminated:
            break
    assert terminated and reward == 1.0
    assert taken == [record.action for record in overfit.records]


def test_fallback_when_the_agent_is_never_labelled(overfit):
    """With no map budget beyond x_0 (the goal alone), the agent is never labelled: every decision falls back to a
    seeded random action, for a whole episode, without raising."""
    policies = [PCPolicy(overfit.model, overfit.tokenizer, max_procedure_steps=0, seed=7) for _ in range(2)]
    runs = []
    for policy in policies:
        env = gym.make("pc_transformers/Maze-v0", size=GRID_SIZE, maze_seed=OVERFIT_MAZE_SEED, max_episode_steps=12)
        obs, _ = env.reset(seed=3, options={"start": OVERFIT_START})
        actions, terminated, truncated = [], False, False
        while not (terminated or truncated):
            action, info = policy.act(obs, return_procedure=True)
            assert info["fallback"] is True and info["procedure"] is None and info["cached"] is False
            assert info["forward_passes"] == 2  # the prompt, then map 0
            assert 0 <= action < NUM_ACTIONS
            actions.append(action)
            obs, _, terminated, truncated, _ = env.step(action)
        runs.append(actions)
    assert runs[0] == runs[1]  # seeded
    assert len(set(runs[0])) > 1  # random, not a constant default


def test_untrained_model_never_crashes_an_episode(make_config, tokenizer):
    torch.manual_seed(0)
    model = PCForProcedureCloning(make_config())
    policy = PCPolicy(model, tokenizer, max_procedure_steps=3)
    envs = [MazeEnv(size=GRID_SIZE, maze_seed=s) for s in (0, 1)]
    obs = np.stack([env.reset(seed=s)[0] for s, env in enumerate(envs)])
    for _ in range(8):
        actions, infos = policy.act(obs, return_procedure=True)
        assert actions.dtype == np.int64 and ((0 <= actions) & (actions < NUM_ACTIONS)).all()
        for info in infos:
            assert isinstance(info["fallback"], bool)
            assert info["fallback"] or isinstance(info["procedure"], BFSMapsRecord)
        for i, (env, action) in enumerate(zip(envs, actions)):
            next_obs, _, terminated, _, _ = env.step(int(action))
            obs[i] = env.reset(seed=i)[0] if terminated else next_obs


@pytest.mark.parametrize("procedure_format, objective", [
    ("bfs_maps", "bc"), ("bfs_maps", "aux_bc"), ("bfs_trace", "pc"), ("bfs_trace", "bc"),
])
def test_other_models_act_in_range(make_config, tokenizer, trace_tokenizer, procedure_format, objective):
    config = make_config(procedure_format, objective=objective, max_procedure_steps=6)
    model = PCForProcedureCloning(config)
    policy = PCPolicy(model, trace_tokenizer if procedure_format == "bfs_trace" else tokenizer)
    assert policy.uses_procedure_cache is False
    obs = np.stack([MazeEnv(size=GRID_SIZE, maze_seed=s).reset(seed=s)[0] for s in (0, 1)])
    actions, infos = policy.act(obs)
    assert ((0 <= actions) & (actions < NUM_ACTIONS)).all()
    for info in infos:
        assert info["cached"] is False and info["forward_passes"] >= 1
        if objective != "pc":  # the action is read at the agent's state cell: always valid
            assert info["fallback"] is False and info["procedure"] is None
            assert info["forward_passes"] == (1 if config.is_grid else 2)  # <act> → a_k (→ </s> for text)


def train_text_model(objective, trace_tokenizer, make_config, steps=200):
    """A text-like (``bfs_trace``) model trained with plain AdamW on the overfit fixture's trajectory (200 steps: at
    120, the last decoded traces were still one rounding change away from running past ``max_procedure_steps``)."""
    dataset = generate_maze_dataset(size=GRID_SIZE, train_mazes=1, test_mazes=0, trajectories=1, seed=3,
                                    procedure_format="bfs_trace", progress=False)["train"]
    config = make_config("bfs_trace", objective=objective, max_procedure_steps=60)
    batch = PCDataCollator(trace_tokenizer.pad_token_id)(list(build_examples(dataset, trace_tokenizer, config)))
    torch.manual_seed(0)
    model = PCForProcedureCloning(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), dataset


@pytest.mark.parametrize("objective", ["bc", "pc"])
def test_trained_text_policy_closes_its_sequences(trace_tokenizer, make_config, objective):
    """Only the action is trained after ``<act>`` (over the action tokens) and nothing trains ``</s>``: the policy must
    still read a valid action instead of falling back on every decision."""
    model, dataset = train_text_model(objective, trace_tokenizer, make_config)
    env = MazeEnv(size=GRID_SIZE, maze_seed=OVERFIT_MAZE_SEED)
    obs = np.stack([env.reset(options={"start": tuple(int(c) for c in agent)})[0] for agent in dataset["agent"]])
    actions, infos = PCPolicy(model, trace_tokenizer).act(obs, return_procedure=True)
    assert [info["fallback"] for info in infos] == [False] * len(obs)
    expert = np.asarray(dataset["action"])
    if objective == "bc":
        assert np.array_equal(actions, expert)
        assert all(info["procedure"] is None and info["forward_passes"] == 2 for info in infos)
    else:
        assert (actions == expert).mean() >= 0.5
        for action, info in zip(actions, infos):
            assert info["procedure"] is not None and info["procedure"].action == action


# ---------------------------------------------------------------------------------------------- procedure cache
def test_procedure_cache_answers_later_steps_without_a_pass(overfit):
    cached_policy = PCPolicy(overfit.model, overfit.tokenizer)
    plain_policy = PCPolicy(overfit.model, overfit.tokenizer, procedure_cache=False)
    assert cached_policy.uses_procedure_cache and not plain_policy.uses_procedure_cache
    env = MazeEnv(size=GRID_SIZE, maze_seed=OVERFIT_MAZE_SEED)
    obs, _ = env.reset(options={"start": OVERFIT_START})
    infos, actions, plain_actions = [], [], []
    terminated = False
    while not terminated:
        action, info = cached_policy.act(obs)
        plain_action, plain_info = plain_policy.act(obs)
        assert plain_info["cached"] is False and plain_info["forward_passes"] > 0
        actions.append(action)
        plain_actions.append(plain_action)
        infos.append(info)
        obs, _, terminated, _, _ = env.step(action)
    assert actions == plain_actions == [record.action for record in overfit.records]
    assert infos[0]["cached"] is False and infos[0]["forward_passes"] == 8
    for info in infos[1:]:  # the first decision's maps label every cell on the way
        assert info["cached"] is True and info["forward_passes"] == 0 and info["fallback"] is False


def test_procedure_cache_readout_equals_the_models_readout(overfit):
    """A cached action is the model's action readout at the agent's cell of the cached last map."""
    policy = PCPolicy(overfit.model, overfit.tokenizer)
    env = MazeEnv(size=GRID_SIZE, maze_seed=OVERFIT_MAZE_SEED)
    policy.act(env.reset(options={"start": OVERFIT_START})[0])
    out = overfit.model.generate_grid(overfit.prompts[:1])
    free = np.argwhere(~env.walls)
    checked = 0
    for x, y in free:
        if (x, y) == env.goal or (x, y) == OVERFIT_START:
            continue
        action, info = policy.act(env.reset(options={"start": (int(x), int(y))})[0])
        assert info["cached"] is True
        assert action == int(out.action_map[0, x, y])
        checked += 1
    assert checked == len(free) - 2


def test_procedure_cache_is_keyed_by_maze_and_agent_coverage(overfit):
    policy = PCPolicy(overfit.model, overfit.tokenizer)
    env = MazeEnv(size=GRID_SIZE, maze_seed=OVERFIT_MAZE_SEED)
    near = tuple(int(c) for c in overfit.rows[-1]["agent"])  # one step from the goal: maps x_0, x_1 only
    _, info = policy.act(env.reset(options={"start": near})[0])
    assert info["cached"] is False and info["forward_passes"] == 3
    _, info = policy.act(env.reset(options={"start": OVERFIT_START})[0])
    assert info["cached"] is False  # not labelled in the cached x_1: decode again
    _, info = policy.act(env.reset(options={"start": near})[0])
    assert info["cached"] is True
    # Another environment id, another maze, or a reset: no cache.
    _, info = policy.act(env.reset(options={"start": near})[0][None], env_ids=[5])
    assert info[0]["cached"] is False
    other = MazeEnv(size=GRID_SIZE, maze_seed=2)
    assert (other.walls != env.walls).any() or other.goal != env.goal
    _, info = policy.act(other.reset(seed=0)[0])
    assert info["cached"] is False
    policy.act(env.reset(options={"start": OVERFIT_START})[0])
    policy.reset()
    _, info = policy.act(env.reset(options={"start": near})[0])
    assert info["cached"] is False


# ------------------------------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("grid_size", [8, 7])  # the windowed attention's halo slices, and its im2col fallback
def test_training_after_the_policy_acted_gives_the_same_gradients(make_config, tokenizer, grid_size):
    """Acting runs under ``torch.inference_mode``; what it builds lazily (the memoized tile geometry of the windowed
    attention) must still serve training afterwards: same loss and gradients as a model that never acted."""
    from pc_transformers import modeling_pc

    config = make_config(grid_size=grid_size, relative_clip=2)
    torch.manual_seed(0)
    acted, fresh = PCForProcedureCloning(config), PCForProcedureCloning(config)
    fresh.load_state_dict(acted.state_dict())
    modeling_pc._TILE_GEOMETRY.clear()  # built anew, first inside the policy's inference mode
    obs = MazeEnv(size=grid_size, maze_seed=0).reset(seed=0)[0]
    PCPolicy(acted, tokenizer, max_procedure_steps=2, procedure_cache=False).act(obs)
    assert modeling_pc._TILE_GEOMETRY and not any(t.is_inference() for v in modeling_pc._TILE_GEOMETRY.values()
                                                  for t in v)
    data = generate_maze_dataset(size=grid_size, train_mazes=1, test_mazes=0, trajectories=1, progress=False)["train"]
    batch = PCDataCollator(tokenizer.pad_token_id)(list(build_examples(data, tokenizer, config))[:3])
    assert_same_loss_and_gradients(acted, fresh, batch)


def test_policy_save_load_gives_identical_actions(tmp_path, overfit):
    policy = PCPolicy(overfit.model, overfit.tokenizer, procedure_cache=False, seed=11)
    policy.save_pretrained(tmp_path)
    assert json.loads((tmp_path / POLICY_CONFIG_NAME).read_text()) == {
        "procedure_cache": False, "max_procedure_steps": None, "seed": 11, "full_procedure": False}
    loaded = PCPolicy.from_pretrained(tmp_path)
    assert loaded.config == PolicyConfig(procedure_cache=False, max_procedure_steps=None, seed=11)
    assert PCPolicy.from_pretrained(tmp_path, seed=3).config.seed == 3
    obs = np.concatenate([training_observations(overfit),
                          np.stack([MazeEnv(size=GRID_SIZE, maze_seed=s).reset(seed=s)[0] for s in (1, 2, 3)])])
    actions, infos = policy.act(obs, return_procedure=True)
    loaded_actions, loaded_infos = loaded.act(obs, return_procedure=True)
    assert np.array_equal(actions, loaded_actions)
    for info, loaded_info in zip(infos, loaded_infos):
        assert info["fallback"] == loaded_info["fallback"] and info["procedure"] == loaded_info["procedure"]


# ----------------------------------------------------------------------------------------------------- errors
def test_act_errors(overfit):
    policy = PCPolicy(overfit.model, overfit.tokenizer)
    with pytest.raises(ValueError, match=r"observation grid \(8, 8\) does not match the model's grid_size=7"):
        policy.act(MazeEnv(size=8, maze_seed=0).reset(seed=0)[0])
    with pytest.raises(ValueError, match=r"observations must be \(3, H, W\) or \(B, 3, H, W\) grids, got shape"):
        policy.act(np.zeros((7, 7), dtype=np.uint8))
    obs = training_observations(overfit)
    with pytest.raises(ValueError, match=r"env_ids has 1 entries for 6 observations"):
        policy.act(obs, env_ids=[0])
    no_agent = obs[0].copy()
    no_agent[2] = 0
    with pytest.raises(ValueError, match=r"exactly one goal and one agent cell, got 1 and 0"):
        policy.act(no_agent)


# -------------------------------------------------------------------------------------------------- evaluation
def test_evaluate_policy_is_deterministic_with_a_valid_interval(overfit):
    def run(seed):
        policy = PCPolicy(overfit.model, overfit.tokenizer)
        return evaluate_policy(policy, maze_seeds=[OVERFIT_MAZE_SEED, 1], size=GRID_SIZE, starts_per_maze=2,
                               max_steps=10, seed=seed)

    first, second = run(0), run(0)
    assert first["episodes"] == 4
    assert 0.0 <= first["success_rate"] <= 1.0
    low, high = first["success_ci95"]
    assert 0.0 <= low <= first["success_rate"] <= high <= 1.0 and high - low > 0
    assert tuple(first["success_ci95"]) == wilson_interval(round(first["success_rate"] * 4), 4)
    for key in first:
        if key != "env_steps_per_s":
            assert first[key] == second[key] or (math.isnan(first[key]) and math.isnan(second[key])), key


class _RecordingPolicy(PCPolicy):
    """A PCPolicy that records the env_ids of every ``act`` call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def act(self, obs, return_procedure: bool = False, env_ids=None):
        self.calls.append([int(i) for i in env_ids])
        return super().act(obs, return_procedure=return_procedure, env_ids=env_ids)


def test_evaluate_policy_in_chunks_gives_the_same_rollouts(overfit):
    """``batch_size`` caps the observations per act call; starts, per-environment keys and every result stay."""
    def run(batch_size):
        policy = _RecordingPolicy(overfit.model, overfit.tokenizer)
        result = evaluate_policy(policy, maze_seeds=[OVERFIT_MAZE_SEED, 1, 2], size=GRID_SIZE, starts_per_maze=3,
                                 max_steps=6, seed=3, procedure_accuracy=True, batch_size=batch_size)
        return result, policy.calls

    whole, whole_calls = run(None)
    chunked, chunked_calls = run(4)
    assert max(len(call) for call in whole_calls) == 9  # one call per step, every active environment
    assert max(len(call) for call in chunked_calls) == 4 and len(chunked_calls) > len(whole_calls)
    # the chunks of one step are the environments that call would have held, in order
    regrouped, step = [], []
    for call in chunked_calls:
        step += call
        if len(step) == len(whole_calls[len(regrouped)]):
            regrouped.append(step)
            step = []
    assert regrouped == whole_calls
    for key in whole:
        if key != "env_steps_per_s":
            assert whole[key] == chunked[key] or (math.isnan(whole[key]) and math.isnan(chunked[key])), key
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match=rf"batch_size must be a positive integer or None, got {bad!r}"):
            evaluate_policy(PCPolicy(overfit.model, overfit.tokenizer), maze_seeds=[1], size=GRID_SIZE,
                            batch_size=bad)


def test_evaluate_policy_counts_successes(overfit):
    """The overfit policy solves its training start; a policy that always falls back rarely does in 3 steps."""
    solved = evaluate_policy(PCPolicy(overfit.model, overfit.tokenizer), maze_seeds=None, starts_per_maze=1,
                             layouts=[_overfit_layout()], max_steps=8)
    assert solved["success_rate"] == 1.0 and solved["fallback_rate"] == 0.0
    assert solved["mean_length_ratio"] == 1.0  # the expert's shortest path
    lost = evaluate_policy(PCPolicy(overfit.model, overfit.tokenizer, max_procedure_steps=0), maze_seeds=None,
                           starts_per_maze=1, layouts=[_overfit_layout()], max_steps=3)
    assert lost["success_rate"] == 0.0 and lost["fallback_rate"] == 1.0  # 6 steps away: unreachable in 3
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_policy(PCPolicy(overfit.model, overfit.tokenizer), maze_seeds=[], size=GRID_SIZE)


def _overfit_layout() -> str:
    """Maze seed 0 as text, with the start marked ``S`` at the overfit start cell."""
    env = MazeEnv(size=GRID_SIZE, maze_seed=OVERFIT_MAZE_SEED)
    lines = [list(line) for line in pc_transformers.envs.format_layout(env.walls, env.goal).splitlines()]
    lines[OVERFIT_START[0]][OVERFIT_START[1]] = "S"
    return "\n".join("".join(line) for line in lines)


def wilson_by_quadratic(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson interval from its definition: the p0 with |p̂ − p0| ≤ z·sqrt(p0(1 − p0)/n), i.e. the roots of
    (1 + z²/n)·p0² − (2p̂ + z²/n)·p0 + p̂² = 0."""
    p, n = successes / trials, trials
    roots = np.roots([1 + z * z / n, -(2 * p + z * z / n), p * p])
    return float(min(roots.real)), float(max(roots.real))


@pytest.mark.parametrize("successes, trials, expected", [
    (0, 10, (0.0, 0.2775)),
    (10, 10, (0.7225, 1.0)),
    (5, 10, (0.2366, 0.7634)),
    (1, 4, None),
    (37, 50, None),
])
def test_wilson_interval(successes, trials, expected):
    low, high = wilson_interval(successes, trials)
    ref_low, ref_high = wilson_by_quadratic(successes, trials)
    assert low == pytest.approx(max(ref_low, 0.0), abs=1e-9) and high == pytest.approx(min(ref_high, 1.0), abs=1e-9)
    if expected is not None:
        assert (low, high) == pytest.approx(expected, abs=1e-4)
    assert low <= successes / trials <= high


def test_wilson_interval_without_trials():
    assert wilson_interval(0, 0) == (0.0, 1.0)
