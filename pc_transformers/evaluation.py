"""Evaluation by rollouts: success rate on held-out mazes, batched over all environments at once."""

from __future__ import annotations

import math
import time

import numpy as np
from tqdm.auto import tqdm

from .envs.maze import MazeEnv


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a success rate (well-behaved at 0% and 100%, unlike the normal one)."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def evaluate_policy(policy, maze_seeds, size: int = 16, wall_type: str = "tunnel", starts_per_maze: int = 5,
                    max_steps: int = 100, seed: int = 0, layouts=None, progress: bool = False) -> dict:
    """Roll ``policy`` out from ``starts_per_maze`` random starts in each maze, all environments in one batch.

    Args:
        policy: anything with ``act(obs_batch, env_ids=...) -> (actions, infos)`` and ``reset()`` (`PCPolicy`).
        maze_seeds: held-out maze seeds (or None with ``layouts``).
        layouts: optional list of external layouts (text or arrays, see `parse_layout`) instead of seeds.
        max_steps: episode cap (the paper: 50-100).
        seed: seeds the random starts.

    Returns:
        ``success_rate``, ``success_ci95`` (Wilson), ``episodes``, ``decisions`` (environment steps taken),
        ``mean_length_ratio`` (episode length over the
        expert's shortest distance, successful episodes only), ``fallback_rate``, ``mean_forward_passes`` per
        decision, ``env_steps_per_s``.
    """
    if layouts is not None:
        envs = [MazeEnv(layout=layout) for layout in layouts for _ in range(starts_per_maze)]
    else:
        envs = [MazeEnv(size=size, wall_type=wall_type, maze_seed=int(s)) for s in maze_seeds
                for _ in range(starts_per_maze)]
    if not envs:
        raise ValueError("nothing to evaluate: give maze_seeds or layouts, and starts_per_maze > 0")
    rng = np.random.default_rng(seed)
    obs, optimal = [], []
    for env in envs:
        o, info = env.reset(seed=int(rng.integers(2**31)))
        obs.append(o)
        optimal.append(info["distance"])
    obs = np.stack(obs)
    active = np.ones(len(envs), dtype=bool)
    success = np.zeros(len(envs), dtype=bool)
    length = np.zeros(len(envs), dtype=np.int64)
    decisions = fallbacks = passes = 0
    policy.reset()
    start = time.perf_counter()
    for _ in tqdm(range(max_steps), desc="rollouts", disable=not progress, leave=False):
        ids = np.flatnonzero(active)
        if len(ids) == 0:
            break
        actions, infos = policy.act(obs[ids], env_ids=ids)
        decisions += len(ids)
        fallbacks += sum(info["fallback"] for info in infos)
        passes += sum(info["forward_passes"] for info in infos)
        for i, a in zip(ids, actions):
            o, reward, terminated, _, _ = envs[i].step(int(a))
            obs[i] = o
            length[i] += 1
            if terminated:
                success[i] = reward > 0
                active[i] = False
    elapsed = time.perf_counter() - start
    wins = int(success.sum())
    ratio = (length[success] / np.maximum(np.asarray(optimal)[success], 1)).mean() if wins else float("nan")
    return {
        "success_rate": wins / len(envs),
        "success_ci95": wilson_interval(wins, len(envs)),
        "episodes": len(envs),
        "decisions": decisions,
        "mean_length_ratio": float(ratio),
        "fallback_rate": fallbacks / max(decisions, 1),
        "mean_forward_passes": passes / max(decisions, 1),
        "env_steps_per_s": decisions / max(elapsed, 1e-9),
    }
