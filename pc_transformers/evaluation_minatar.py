"""Evaluation by rollouts in MinAtar games: mean episode return with a 95% Student-t interval, and decision cost.

    from pc_transformers.evaluation_minatar import MCTSActor, evaluate_minatar_policy
    from pc_transformers.envs.minatar import episode_seeds
    report = evaluate_minatar_policy(policy, "breakout", setting="eval", seeds=episode_seeds("eval", 50),
                                     max_steps=500)
    print(report["mean_return"], report["return_ci95"], report["ms_per_decision"])

One function evaluates every kind of player, so that the numbers of a comparison come from one protocol:

* a trained policy (`pc_transformers.policy.MinAtarPolicy`, PC or BC): anything with ``act(obs_batch, env_ids=...)
  -> (actions, infos)`` (``obs_batch`` ``(B, 10, 10, C)`` bool; ``infos[i]`` may hold ``forward_passes`` and
  ``fallback``) and optionally ``reset()``. Episodes are stepped together in batches of ``batch_size``
  environments (default: all), one ``act`` call per step for the whole batch;
* a *planner* or baseline that needs the simulator: a callable ``actor(env) -> action`` that receives the gymnasium
  env at its current state and must leave it untouched (`MCTSActor`, `RandomActor`, `GreedyActor`). Such actors
  play one episode at a time; ``actor.start_episode(seed)``, when defined, is called at each episode start.

Episodes: one per seed (``env.reset(seed=seed)``; seeds from `pc_transformers.envs.minatar.episode_seeds`), under a
named setting of the generalization protocol (``"train"``: no sticky actions, no difficulty ramp; ``"eval"``:
sticky actions 0.1, ramping on), truncated after ``max_steps`` steps (the number of truncated episodes is reported:
a capped return underestimates a good player's).

Confidence interval: ``mean ± t_{0.975, n-1} · s / sqrt(n)`` over the n episode returns (Student t, s the sample
standard deviation): the returns of different seeds are independent draws, but not normal and n is small, so the t
quantile rather than 1.96. `t_quantile` computes the quantile exactly (regularized incomplete beta function and
bisection), so scipy is not needed at run time; the tests check it against ``scipy.stats.t``.

Decision latency: wall-clock time spent choosing actions (inside ``act`` or the actor call; environment steps
excluded) divided by the number of decisions. For a batched policy it is the time per decision amortized over the
batch; pass ``batch_size=1`` for the latency of one environment alone, the figure to compare with a planner.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from .envs.minatar import MINATAR_SETTINGS, make_minatar_env
from .procedures.mcts import (
    MCTSConfig,
    MCTSExpert,
    greedy_one_step_action,
    random_action,
)

__all__ = [
    "CI_METHOD",
    "GreedyActor",
    "MCTSActor",
    "RandomActor",
    "decision_seed",
    "evaluate_minatar_policy",
    "t_interval",
    "t_quantile",
]

CI_METHOD = "95% Student-t interval over episodes: mean ± t(0.975, n-1) · sd / sqrt(n)"


# ------------------------------------------------------------------------------------------------ statistics
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz; Numerical Recipes 6.4)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        even = m * (b - m) * x / ((qam + m2) * (a + m2))
        odd = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        for numerator in (even, odd):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b), x in [0, 1]."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _t_cdf(t: float, df: float) -> float:
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))  # P(T > |t|)
    return 1.0 - tail if t >= 0 else tail


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t distribution with ``df`` degrees of freedom (``scipy.stats.t.ppf``)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie in (0, 1), got {q!r}")
    if isinstance(df, bool) or not isinstance(df, (int, np.integer)) or df < 1:
        raise ValueError(f"df must be a positive int, got {df!r}")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    low, high = 0.0, 1.0
    while _t_cdf(high, df) < q:
        low, high = high, 2.0 * high
    for _ in range(200):  # bisection to machine precision
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        low, high = (middle, high) if _t_cdf(middle, df) < q else (low, middle)
    return 0.5 * (low + high)


def t_interval(values, confidence: float = 0.95) -> dict:
    """Mean of ``values`` with its Student-t confidence interval.

    Returns:
        ``mean``, ``low``, ``high``, ``half_width``, ``std`` (sample standard deviation, ddof=1) and ``n``; the
        interval bounds and ``std`` are NaN for a single value (no spread to estimate).
    """
    values = np.asarray(values, dtype=float)
    n = len(values)
    if n == 0:
        raise ValueError("t_interval needs at least one value, got none")
    mean = float(values.mean())
    if n == 1:
        return {"mean": mean, "low": math.nan, "high": math.nan, "half_width": math.nan, "std": math.nan, "n": 1}
    std = float(values.std(ddof=1))
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "half_width": half, "std": std, "n": n}


# ------------------------------------------------------------------------------------------------ the players
def decision_seed(base_seed: int, episode_seed: int, step: int) -> int:
    """The planner seed of one decision: a function of (base seed, episode seed, step) only, so that any decision
    can be recomputed alone and runs split over processes give the same decisions."""
    return int(np.random.SeedSequence([int(base_seed), int(episode_seed), int(step)]).generate_state(1)[0])


class MCTSActor:
    """The MCTS expert as a player: a fresh `MCTSExpert` per decision, seeded with `decision_seed` (``config.seed``,
    episode seed, step), exactly as the expert datasets are generated (`pc_transformers.data.minatar_dataset`)."""

    def __init__(self, config: MCTSConfig | None = None):
        self.config = config or MCTSConfig()
        self.episode_seed, self.step = 0, 0

    def __repr__(self) -> str:
        return f"MCTSActor({self.config})"

    def start_episode(self, seed: int) -> None:
        self.episode_seed, self.step = int(seed), 0

    def __call__(self, env) -> int:
        seed = decision_seed(self.config.seed, self.episode_seed, self.step)
        self.step += 1
        return MCTSExpert(dataclasses.replace(self.config, seed=seed))(env).action


class RandomActor:
    """Uniformly random actions of the game's minimal action set; its generator is seeded per episode by
    ``(seed, episode seed)``."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(seed={self.seed})"

    def start_episode(self, seed: int) -> None:
        self.rng = np.random.default_rng([self.seed, int(seed)])

    def __call__(self, env) -> int:
        return random_action(env, self.rng)


class GreedyActor(RandomActor):
    """Identical to `RandomActor` except: the action with the largest immediate reward in a snapshot
    (`greedy_one_step_action`), ties at random."""

    def __call__(self, env) -> int:
        return greedy_one_step_action(env, self.rng)


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate_minatar_policy(policy, game: str, setting="eval", seeds=(), max_steps: int = 1000,
                            batch_size: int | None = None, num_workers: int = 1, progress: bool = False,
                            random_start_steps: int = 0) -> dict:
    """Play one episode per seed and report the returns with a 95% t-interval and the cost of a decision.

    Args:
        policy: a batched policy (``act(obs_batch, env_ids=...) -> (actions, infos)``, e.g. `MinAtarPolicy`) or an actor
            ``actor(env) -> action`` (`MCTSActor`, `RandomActor`, `GreedyActor`); see the module docstring.
        game: a MinAtar game (``"breakout"``, ...).
        setting: ``"train"``, ``"eval"`` or a setting dict (`pc_transformers.envs.minatar.make_minatar_env`).
        seeds: episode seeds (`episode_seeds`), one episode each.
        max_steps: episode cap (episodes are truncated there).
        batch_size: environments stepped together by a batched policy (None: all); ignored for actors.
        num_workers: actors only: episodes played in this many processes (the actor is pickled to them). The returns
            do not depend on it when the actor reseeds itself in ``start_episode`` (the actors here do); each
            process measures its own latency, so give it no more workers than free cores.
        progress: show a progress bar over steps (batched) or episodes (actors).
        random_start_steps: up to this many random actions before the policy takes over, drawn from each episode's
            seed (`pc_transformers.envs.minatar.RandomStart`; 0: none). Returns, lengths and the cap count the
            policy's steps only.

    Returns:
        ``game``, ``setting`` (resolved to its sticky-action probability and ramping), ``episodes``, ``max_steps``,
        ``random_start_steps``, ``mean_return``, ``return_ci95`` ``[low, high]``, ``return_ci95_half_width``,
        ``return_std``, ``ci_method``, ``returns`` (per episode, in seed order), ``seeds``, ``mean_length``,
        ``truncated_episodes``, ``decisions``, ``ms_per_decision``, ``batch_size`` (1 for actors),
        ``mean_forward_passes`` (model passes per decision; None for actors) and ``fallback_rate`` (None for
        actors).
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("nothing to evaluate: give at least one episode seed")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    batched = callable(getattr(policy, "act", None))
    if not batched and not callable(policy):
        raise TypeError(f"policy must have act(obs_batch) or be a callable actor(env) -> action, got "
                        f"{type(policy).__name__}")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
    resolved = dict(MINATAR_SETTINGS[setting]) if isinstance(setting, str) and setting in MINATAR_SETTINGS else setting

    new_env = functools.partial(make_minatar_env, game, setting, max_episode_steps=max_steps,
                                random_start_steps=random_start_steps)
    if batched:
        num_actions = getattr(getattr(getattr(policy, "model", None), "config", None), "num_actions", None)
        game_actions = new_env().action_space.n
        if num_actions is not None and num_actions != game_actions:
            raise ValueError(f"the policy chooses among {num_actions} actions but {game!r} has {game_actions}; was "
                             f"it trained on another game?")
        episodes = _play_batched(policy, new_env, seeds, batch_size or len(seeds), progress)
    elif num_workers > 1 and len(seeds) > 1:
        context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")
        with ProcessPoolExecutor(min(num_workers, len(seeds)), mp_context=context) as pool:
            futures = [pool.submit(_play_actor, policy, new_env, [seed], False) for seed in seeds]
            episodes = [f.result()[0] for f in tqdm(futures, desc="episodes", disable=not progress, leave=False)]
    else:
        episodes = _play_actor(policy, new_env, seeds, progress)
    returns = [e["return"] for e in episodes]
    decisions = sum(e["length"] for e in episodes)
    stats = t_interval(returns)
    passes = [e["forward_passes"] for e in episodes]
    return {
        "game": game,
        "setting": setting if isinstance(setting, str) else "custom",
        **{k: resolved[k] for k in ("sticky_action_prob", "difficulty_ramping")},
        "episodes": len(seeds),
        "max_steps": max_steps,
        "random_start_steps": random_start_steps,
        "mean_return": stats["mean"],
        "return_ci95": [stats["low"], stats["high"]],
        "return_ci95_half_width": stats["half_width"],
        "return_std": stats["std"],
        "ci_method": CI_METHOD,
        "returns": returns,
        "seeds": seeds,
        "mean_length": decisions / len(seeds),
        "truncated_episodes": sum(e["truncated"] for e in episodes),
        "decisions": decisions,
        "ms_per_decision": 1000 * sum(e["seconds"] for e in episodes) / max(decisions, 1),
        "batch_size": min(batch_size or len(seeds), len(seeds)) if batched else 1,
        "mean_forward_passes": sum(passes) / max(decisions, 1) if batched else None,
        "fallback_rate": sum(e["fallbacks"] for e in episodes) / max(decisions, 1) if batched else None,
    }


def _play_actor(actor, new_env, seeds, progress: bool) -> list[dict]:
    episodes = []
    for seed in tqdm(seeds, desc="episodes", disable=not progress, leave=False):
        env = new_env()
        env.reset(seed=seed)
        if callable(getattr(actor, "start_episode", None)):
            actor.start_episode(seed)
        total, length, seconds, done, truncated = 0.0, 0, 0.0, False, False
        while not done:
            start = time.perf_counter()
            action = int(actor(env))
            seconds += time.perf_counter() - start
            _, reward, terminated, truncated, _ = env.step(action)
            total, length, done = total + float(reward), length + 1, terminated or truncated
        env.close()
        episodes.append({"return": total, "length": length, "seconds": seconds,
                         "truncated": bool(truncated and not terminated),
                         "forward_passes": 0, "fallbacks": 0})
    return episodes


def _play_batched(policy, new_env, seeds, batch_size: int, progress: bool) -> list[dict]:
    episodes = [{"return": 0.0, "length": 0, "seconds": 0.0, "truncated": False, "forward_passes": 0,
                 "fallbacks": 0} for _ in seeds]
    bar = tqdm(desc="rollout steps", disable=not progress, leave=False)
    for first in range(0, len(seeds), batch_size):
        ids = list(range(first, min(first + batch_size, len(seeds))))
        envs = {i: new_env() for i in ids}
        obs = {i: envs[i].reset(seed=seeds[i])[0] for i in ids}
        if callable(getattr(policy, "reset", None)):
            policy.reset()
        while ids:
            start = time.perf_counter()
            actions, infos = policy.act(np.stack([obs[i] for i in ids]), env_ids=ids)
            share = (time.perf_counter() - start) / len(ids)
            still = []
            for i, action, info in zip(ids, actions, infos):
                episode = episodes[i]
                obs[i], reward, terminated, truncated, _ = envs[i].step(int(action))
                episode["return"] += float(reward)
                episode["length"] += 1
                episode["seconds"] += share
                episode["forward_passes"] += int(info.get("forward_passes", 0))
                episode["fallbacks"] += int(bool(info.get("fallback", False)))
                if terminated or truncated:
                    episode["truncated"] = bool(truncated and not terminated)
                    envs[i].close()
                else:
                    still.append(i)
            ids = still
            bar.update()
    bar.close()
    return episodes
