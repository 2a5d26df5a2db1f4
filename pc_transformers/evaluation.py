"""Evaluation by rollouts: success rate on held-out mazes, batched over the environments (in chunks if asked)."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .envs.maze import MazeEnv, maze_splits, parse_layout
from .procedures.bfs_maps import bfs_maps


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a success rate (well-behaved at 0% and 100%, unlike the normal one)."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def evaluate_policy(policy, maze_seeds, size: int = 16, wall_type: str = "tunnel", starts_per_maze: int = 5,
                    max_steps: int = 100, seed: int = 0, layouts=None, progress: bool = False,
                    procedure_accuracy: bool = False, batch_size: int | None = None) -> dict:
    """Roll ``policy`` out from ``starts_per_maze`` random starts in each maze, the environments stepped together.

    Args:
        policy: anything with ``act(obs_batch, env_ids=...) -> (actions, infos)`` and ``reset()`` (`PCPolicy`).
        maze_seeds: held-out maze seeds (or None with ``layouts``).
        layouts: optional list of external layouts (text or arrays, see `parse_layout`) instead of seeds.
        max_steps: episode cap (the paper: 50-100).
        seed: seeds the random starts.
        procedure_accuracy: for grid PC policies, also compare every generated procedure (not the ones the
            procedure cache answered) with the expert's `bfs_maps` for the same state. Off by default: it decodes
            the procedures and reruns the expert at every decision.
        batch_size: at most this many observations per ``policy.act`` call (None: every active environment in one
            call). It bounds memory, e.g. the autoregressive factorization's cache of every generated map, and
            changes nothing else: the starts are drawn for all environments first, and each environment keeps its
            own ``env_ids`` key.

    Returns:
        ``success_rate``, ``success_ci95`` (Wilson), ``episodes``, ``decisions`` (environment steps taken),
        ``mean_length_ratio`` (episode length over the
        expert's shortest distance, successful episodes only), ``fallback_rate``, ``mean_forward_passes`` per
        decision, ``env_steps_per_s``; ``procedure_step_accuracy`` (maps equal to the expert's map at the same
        level, over ``max(generated, expert)`` maps per decision, so extra or missing maps count as wrong),
        ``procedure_exact_rate`` (decisions whose whole procedure equals the expert's) and ``procedure_decisions``
        (decisions compared); the three are None unless ``procedure_accuracy`` applies.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    cfg = getattr(getattr(policy, "model", None), "config", None)
    compare = procedure_accuracy and cfg is not None and cfg.is_grid and cfg.objective == "pc"
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
    compared_decisions = exact_decisions = compared_maps = equal_maps = 0
    policy.reset()
    start = time.perf_counter()
    for _ in tqdm(range(max_steps), desc="rollouts", disable=not progress, leave=False):
        ids = np.flatnonzero(active)
        if len(ids) == 0:
            break
        actions, infos = [], []
        chunk = batch_size or len(ids)
        for part in (ids[first:first + chunk] for first in range(0, len(ids), chunk)):
            part_actions, part_infos = (policy.act(obs[part], env_ids=part, return_procedure=True) if compare
                                        else policy.act(obs[part], env_ids=part))
            actions.extend(part_actions)
            infos.extend(part_infos)
        if compare:
            for i, info in zip(ids, infos):
                if info["procedure"] is None or info["cached"]:
                    continue  # nothing generated for this decision (cache answer or unparsable procedure)
                generated = info["procedure"].maps  # (L, H, W)
                expert = bfs_maps(envs[i].walls, envs[i].goal, envs[i].agent).maps  # (L*, H, W)
                equal = sum(np.array_equal(g, e) for g, e in zip(generated, expert))
                compared_maps += max(len(generated), len(expert))
                equal_maps += equal
                compared_decisions += 1
                exact_decisions += int(len(generated) == len(expert) == equal)
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
        "procedure_step_accuracy": equal_maps / compared_maps if compare and compared_maps else None,
        "procedure_exact_rate": exact_decisions / compared_decisions if compare and compared_decisions else None,
        "procedure_decisions": compared_decisions if compare else None,
    }


# ---------------------------------------------------------------------------------------- the evaluate recipe


def read_layouts(path) -> list[str]:
    """Maze layouts from a text file: ``#``/``.``/``G``/``S`` layouts (see `parse_layout`) separated by blank lines.

    Raises:
        FileNotFoundError: if ``path`` is not a file.
        ValueError: if the file holds no layout, or a layout does not parse (the message names the file and the
            layout's number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"layouts file {str(path)!r} does not exist")
    layouts = [block.strip() for block in re.split(r"\n\s*\n", path.read_text()) if block.strip()]
    if not layouts:
        raise ValueError(f"layouts file {str(path)!r} holds no layout; expected '#'/'.'/'G'/'S' text mazes "
                         f"separated by blank lines")
    for number, layout in enumerate(layouts, start=1):
        try:
            parse_layout(layout)
        except ValueError as error:
            raise ValueError(f"layout {number} of {str(path)!r} is invalid: {error}") from None
    return layouts


def add_evaluate_arguments(parser) -> None:
    """The options of ``recipes/evaluate.py`` and ``pc-transformers evaluate`` (one definition for both)."""
    parser.add_argument("checkpoint", help="a PCPolicy directory (PCPolicy.save_pretrained, or the demo's output)")
    parser.add_argument("--max-steps", type=int, default=None,
                        help=f"episode cap (default: {MAZE_MAX_STEPS} for mazes, {MINATAR_MAX_STEPS} for MinAtar)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the random starts and fallback actions")
    parser.add_argument("--json", default=None, dest="json_out", help="write the results to this JSON file")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="at most N environments per policy call (default: all at once); bounds memory, "
                             "results unchanged")
    maze = parser.add_argument_group("maze checkpoints")
    maze.add_argument("--mazes", type=int, default=None,
                      help=f"held-out maze seeds: maze_splits(0, N).test ({MAZE_MAZES})")
    maze.add_argument("--starts", type=int, default=None, help=f"random starts per maze ({MAZE_STARTS})")
    maze.add_argument("--wall-type", default=None, help="tunnel (the default), blocks, blocks:N or empty")
    maze.add_argument("--size", type=int, default=None, help="maze side (default: the checkpoint's grid_size)")
    maze.add_argument("--layouts", default=None, help="text file of layouts separated by blank lines; "
                                                      "evaluated instead of the seeds")
    maze.add_argument("--no-procedure-cache", action="store_false", dest="procedure_cache",
                      help="generate a procedure at every step (and compare every one with the expert)")
    minatar = parser.add_argument_group("MinAtar checkpoints")
    minatar.add_argument("--game", default=None,
                         help="the game to play (default: the one in the checkpoint's train_config.yaml)")
    minatar.add_argument("--episodes", type=int, default=None,
                         help=f"held-out episode seeds: episode_seeds('eval', N) ({MINATAR_EPISODES})")
    minatar.add_argument("--setting", default=None, choices=["eval", "train"],
                         help="eval: sticky actions 0.1 and difficulty ramping (the default, unseen by the expert "
                              "data); train: neither")


def json_safe(value):
    """Tuples as lists and NaN (e.g. the interval of a single episode) as None, at any depth: valid JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


MAZE_MAZES, MAZE_STARTS, MAZE_MAX_STEPS, MINATAR_EPISODES, MINATAR_MAX_STEPS = 100, 5, 100, 20, 300
_MAZE_ONLY = ("mazes", "starts", "wall_type", "size", "layouts", "procedure_cache")
_MINATAR_ONLY = ("game", "episodes", "setting")


def run_evaluation(checkpoint, mazes: int | None = None, starts: int | None = None, wall_type: str | None = None,
                   size: int | None = None, max_steps: int | None = None, seed: int = 0, layouts=None, json_out=None,
                   procedure_cache: bool = True, progress: bool = False, batch_size: int | None = None,
                   game: str | None = None, episodes: int | None = None, setting: str | None = None) -> dict:
    """Load a `PCPolicy` checkpoint and roll it out in configurations its training data never held; returns the
    results.

    A maze checkpoint plays held-out mazes (``mazes`` × ``starts``, default 100 × 5, tunnel walls; or the mazes of a
    ``layouts`` file), capped at ``max_steps`` (100). The result holds the settings (``checkpoint``, ``mazes``, ...)
    and every key of `evaluate_policy`, procedure accuracy included for grid PC.

    A MinAtar checkpoint plays ``episodes`` (20) held-out episode seeds of ``game`` (default: the game in the
    checkpoint's ``train_config.yaml``, which ``recipes/train.py`` writes) in ``setting`` (``"eval"``: sticky actions
    0.1 and difficulty ramping), capped at ``max_steps`` (300). The result holds the settings and every key of
    `pc_transformers.evaluation_minatar.evaluate_minatar_policy` (mean return with its 95% t-interval, ...).

    With ``json_out`` the results are also written there.

    Raises:
        FileNotFoundError: for a missing checkpoint directory or layouts file.
        ValueError: for a ``size`` (or a layout's shape) other than the checkpoint's ``grid_size``, a bad layout,
            non-positive counts, an option of the other domain, or a MinAtar checkpoint with no game to play.
    """
    from .policy import PCPolicy  # torch and transformers: only when a checkpoint is really evaluated

    path = Path(checkpoint)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} is not a PCPolicy directory (expected a config.json "
                                f"written by PCPolicy.save_pretrained)")
    for name, value in (("mazes", mazes), ("starts", starts), ("max_steps", max_steps), ("batch_size", batch_size),
                        ("episodes", episodes)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    policy = PCPolicy.from_pretrained(path, procedure_cache=procedure_cache, seed=seed)
    options = {"mazes": mazes, "starts": starts, "wall_type": wall_type, "size": size, "layouts": layouts,
               "procedure_cache": None if procedure_cache else False, "game": game, "episodes": episodes,
               "setting": setting}
    domain = getattr(policy.model.config, "domain", "maze")
    foreign = [name for name in (_MINATAR_ONLY if domain == "maze" else _MAZE_ONLY) if options[name] is not None]
    if foreign:
        raise ValueError(f"{', '.join(f'{name}={options[name]!r}' for name in foreign)}: only for "
                         f"{'MinAtar' if domain == 'maze' else 'maze'} checkpoints, and {str(path)!r} is a {domain} "
                         f"checkpoint")
    if domain == "minatar":
        results = _evaluate_minatar_checkpoint(policy, path, game, episodes or MINATAR_EPISODES, setting or "eval",
                                               max_steps or MINATAR_MAX_STEPS, seed, batch_size, progress)
    else:
        results = _evaluate_maze_checkpoint(policy, path, mazes or MAZE_MAZES, starts or MAZE_STARTS,
                                            wall_type or "tunnel", size, max_steps or MAZE_MAX_STEPS, seed, layouts,
                                            procedure_cache, progress, batch_size)
    results = json_safe(results)
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(results, indent=2))
    return results


def _evaluate_maze_checkpoint(policy, path: Path, mazes, starts, wall_type, size, max_steps, seed, layouts,
                              procedure_cache, progress, batch_size) -> dict:
    grid_size = policy.model.config.grid_size
    if size is not None and size != grid_size:
        raise ValueError(f"--size {size} does not match the checkpoint's grid_size={grid_size}")
    layout_list = read_layouts(layouts) if layouts is not None else None
    for number, layout in enumerate(layout_list or [], start=1):
        shape = parse_layout(layout)[0].shape
        if shape != (grid_size, grid_size):
            raise ValueError(f"layout {number} of {str(layouts)!r} is {shape[0]}x{shape[1]}, but the checkpoint's "
                             f"grid_size={grid_size}")
    seeds = None if layout_list is not None else maze_splits(0, mazes).test
    metrics = evaluate_policy(policy, seeds, size=grid_size, wall_type=wall_type, starts_per_maze=starts,
                              max_steps=max_steps, seed=seed, layouts=layout_list, progress=progress,
                              procedure_accuracy=True, batch_size=batch_size)
    return {
        "checkpoint": str(path), "mazes": len(layout_list) if layout_list is not None else mazes,
        "starts": starts, "wall_type": "layout" if layout_list is not None else wall_type, "size": grid_size,
        "max_steps": max_steps, "seed": seed, "layouts": None if layouts is None else str(layouts),
        "procedure_cache": procedure_cache, "batch_size": batch_size, "objective": policy.model.config.objective,
        **metrics,
    }


def checkpoint_game(path: Path) -> str | None:
    """The MinAtar game a checkpoint was trained on, from the ``train_config.yaml`` that ``recipes/train.py`` saves
    beside it (None without one)."""
    import yaml

    config_file = path / "train_config.yaml"
    if not config_file.is_file():
        return None
    return (yaml.safe_load(config_file.read_text()).get("minatar") or {}).get("game")


def _evaluate_minatar_checkpoint(policy, path: Path, game, episodes, setting, max_steps, seed, batch_size,
                                 progress) -> dict:
    from .envs.minatar import episode_seeds
    from .evaluation_minatar import evaluate_minatar_policy

    trained_on = checkpoint_game(path)
    game = game or trained_on
    if game is None:
        raise ValueError(f"{str(path)!r} is a MinAtar checkpoint without a train_config.yaml naming its game; "
                         f"pass --game (breakout, freeway, ...)")
    metrics = evaluate_minatar_policy(policy, game, setting, episode_seeds("eval", episodes), max_steps=max_steps,
                                      batch_size=batch_size, progress=progress)
    return {"checkpoint": str(path), "trained_on": trained_on, "seed": seed,
            "objective": policy.model.config.objective, **metrics}


def format_table(results: dict) -> str:
    """A short two-column table of `run_evaluation`'s results."""

    def number(value, fmt="{:.3f}"):
        return "n/a" if value is None else fmt.format(value)

    if "mean_return" in results:  # a MinAtar checkpoint
        low, high = results["return_ci95"]
        rows = [
            ("mean return", f"{results['mean_return']:.2f}  (95% CI {number(low, '{:.2f}')}-{number(high, '{:.2f}')})"),
            ("episodes", f"{results['episodes']}  ({results['game']}, {results['setting']} setting: sticky actions "
                         f"{results['sticky_action_prob']}, difficulty ramping {results['difficulty_ramping']})"),
            ("mean length", f"{results['mean_length']:.1f}  ({results['truncated_episodes']} capped at "
                            f"{results['max_steps']})"),
            ("fallback rate", number(results["fallback_rate"])),
            ("forward passes / decision", number(results["mean_forward_passes"], "{:.2f}")),
            ("ms / decision", number(results["ms_per_decision"], "{:.2f}")),
        ]
    else:
        low, high = results["success_ci95"]
        rows = [
            ("success rate", f"{results['success_rate']:.3f}  (95% CI {low:.3f}-{high:.3f})"),
            ("episodes", f"{results['episodes']}  ({results['mazes']} mazes x {results['starts']} starts)"),
            ("mean length / optimum", number(results["mean_length_ratio"])),
            ("fallback rate", number(results["fallback_rate"])),
            ("forward passes / step", number(results["mean_forward_passes"], "{:.2f}")),
            ("env steps / s", number(results["env_steps_per_s"], "{:.1f}")),
        ]
        if results.get("procedure_step_accuracy") is not None or results.get("procedure_decisions") is not None:
            rows += [
                ("procedure step accuracy", number(results["procedure_step_accuracy"])),
                ("procedure exact rate", f"{number(results['procedure_exact_rate'])}  "
                                         f"({results['procedure_decisions']} generated procedures)"),
            ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
