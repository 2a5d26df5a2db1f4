"""How many expert procedures per second the BFS experts produce, on one CPU core.

    python recipes/benchmarks/bfs_speed.py --sizes 16 32 --seconds 3 --json bfs_speed.json

(from the repository root, with the package installed, or prefixed with ``PYTHONPATH=.``).

Cases, each on random starts (uniform over the free cells connected to the goal, as the environment resets):

- ``bfs_maps``: `bfs_maps(walls, goal, agent)` computed from scratch for every start.
- ``bfs_maps+stack``: the same records sliced from `all_bfs_maps(walls, goal)`, computed once per maze beforehand
  (how data generation uses it; the per-maze cost is reported separately as ``all_bfs_maps``, per maze).
- ``bfs_trace``: `bfs_trace(walls, goal, agent)`.

Mazes are the package's tunnel mazes (`pc_transformers.envs.maze.make_maze`) when that module imports, else 1-wide
corridor mazes generated here (longer, narrower paths: numbers are then not comparable).
"""

from __future__ import annotations

import os

# One core: no threaded BLAS/OpenMP underneath numpy. Must be set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from pc_transformers.grid import ACTION_DELTAS  # noqa: E402
from pc_transformers.procedures import GOAL, UNREACHED, all_bfs_maps, bfs_maps, bfs_trace  # noqa: E402

try:
    from pc_transformers.envs.maze import make_maze
except ImportError:  # the env module (or gymnasium) is not available: use the fallback below
    make_maze = None


def corridor_maze(size: int, seed: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Fallback maze: recursive backtracker over odd cells (1-wide corridors), 5% extra openings, random goal."""
    rng = np.random.default_rng(seed)
    deltas = [tuple(int(v) for v in delta) for delta in ACTION_DELTAS]
    walls = np.ones((size, size), dtype=bool)
    walls[1, 1] = False
    stack = [(1, 1)]
    while stack:
        x, y = stack[-1]
        options = []
        for dx, dy in deltas:
            nx, ny = x + 2 * dx, y + 2 * dy
            if 1 <= nx < size - 1 and 1 <= ny < size - 1:
                if walls[nx, ny]:
                    options.append((nx, ny))
                elif rng.random() < 0.05:
                    walls[x + dx, y + dy] = False
        if options:
            nx, ny = options[rng.integers(len(options))]
            walls[(x + nx) // 2, (y + ny) // 2] = False
            walls[nx, ny] = False
            stack.append((nx, ny))
        else:
            stack.pop()
    free = np.argwhere(~walls)
    goal = tuple(int(v) for v in free[rng.integers(len(free))])
    return walls, goal


def build_tasks(size: int, num_mazes: int, starts_per_maze: int, seed: int):
    """[(walls, goal, stack, agent)]: ``num_mazes`` mazes, each with random starts connected to its goal."""
    rng = np.random.default_rng(seed)
    tasks = []
    for maze_seed in range(num_mazes):
        walls, goal = make_maze(size, "tunnel", maze_seed) if make_maze else corridor_maze(size, maze_seed)
        walls, goal = np.asarray(walls, dtype=bool), tuple(int(v) for v in goal)
        stack = all_bfs_maps(walls, goal)  # (num_levels, H, W)
        starts = np.argwhere((stack[-1] != UNREACHED) & (stack[-1] != GOAL))  # connected, not the goal
        for i in rng.integers(len(starts), size=starts_per_maze):
            tasks.append((walls, goal, stack, tuple(int(v) for v in starts[i])))
    return tasks


def throughput(run_one, items, seconds: float) -> float:
    """Calls per second of ``run_one(item)``, cycling over ``items`` for at least ``seconds``."""
    for item in items[:20]:  # warm-up
        run_one(item)
    calls, start = 0, time.perf_counter()
    while True:
        for item in items:
            run_one(item)
        calls += len(items)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32], help="maze side lengths")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing budget per case and size")
    parser.add_argument("--mazes", type=int, default=20, help="mazes per size")
    parser.add_argument("--starts", type=int, default=25, help="random starts per maze")
    parser.add_argument("--seed", type=int, default=0, help="seed of the start cells")
    parser.add_argument("--json", default=None, help="optional path to write the results as JSON")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):  # pin to one core so that timings are per core
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    hardware = {
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "maze_source": "pc_transformers.envs.maze tunnel" if make_maze else "fallback 1-wide corridors",
    }
    print("hardware: " + ", ".join(f"{k}={v}" for k, v in hardware.items()) + " (timed on 1 core)")

    results = []
    header = (
        f"{'size':>4}  {'case':<16} {'per second':>11}  {'us each':>8}  {'mean path length':>16}  {'mean steps':>10}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        tasks = build_tasks(size, args.mazes, args.starts, args.seed)
        stacks = {id(stack): (walls, goal) for walls, goal, stack, _ in tasks}
        maze_items = [(walls, goal) for walls, goal in stacks.values()]
        maps_records = [bfs_maps(w, g, a) for w, g, _, a in tasks]
        trace_records = [bfs_trace(w, g, a) for w, g, _, a in tasks]
        mean_path = float(np.mean([r.path_length for r in maps_records]))
        cases = [
            ("bfs_maps", lambda t: bfs_maps(t[0], t[1], t[3]), tasks,
             float(np.mean([r.num_steps for r in maps_records]))),
            ("bfs_maps+stack", lambda t: bfs_maps(t[0], t[1], t[3], maps=t[2]), tasks,
             float(np.mean([r.num_steps for r in maps_records]))),
            ("bfs_trace", lambda t: bfs_trace(t[0], t[1], t[3]), tasks,
             float(np.mean([r.metadata["num_steps"] for r in trace_records]))),
            ("all_bfs_maps", lambda m: all_bfs_maps(m[0], m[1]), maze_items,
             float(np.mean([len(all_bfs_maps(w, g)) for w, g in maze_items]))),
        ]
        for name, run_one, items, mean_steps in cases:
            per_second = throughput(run_one, items, args.seconds)
            unit = "mazes" if name == "all_bfs_maps" else "procedures"
            results.append({"size": size, "case": name, "per_second": per_second, "unit": unit,
                            "mean_path_length": mean_path, "mean_steps": mean_steps})
            print(f"{size:>4}  {name:<16} {per_second:>11,.0f}  {1e6 / per_second:>8.1f}  {mean_path:>16.1f}  "
                  f"{mean_steps:>10.1f}")
    print("all_bfs_maps is per maze (every level); the others are per start.")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"hardware": hardware, "seconds": args.seconds, "results": results}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
