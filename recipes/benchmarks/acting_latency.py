"""Acting cost of a trained policy with and without the procedure cache, on the same unseen mazes and starts.

    python recipes/benchmarks/acting_latency.py outputs/demo/pc/final --mazes 50 --starts 2 --batch-sizes 1 64

For each batch size it rolls the policy out on the held-out mazes twice (procedure cache on, then off) and reports
the success rate, model forward passes per decision, and wall-clock milliseconds per environment step. The two runs
see the same episodes; their ratio is the figure to quote, since this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform

import torch

from pc_transformers.envs import maze_splits
from pc_transformers.evaluation import evaluate_policy
from pc_transformers.policy import PCPolicy


def rollout_cost(policy: PCPolicy, seeds, size: int, wall_type: str, starts: int, batch_size: int, seed: int):
    """Roll out ``batch_size`` environments at a time over all (maze, start) pairs; aggregate the figures."""
    groups = [seeds[i : i + max(1, batch_size // starts)] for i in range(0, len(seeds), max(1, batch_size // starts))]
    steps = wins = episodes = 0
    seconds = passes = 0.0
    for group in groups:
        r = evaluate_policy(policy, group, size=size, wall_type=wall_type, starts_per_maze=starts, seed=seed)
        steps += r["decisions"]
        seconds += r["decisions"] / r["env_steps_per_s"]
        passes += r["mean_forward_passes"] * r["decisions"]
        wins += round(r["success_rate"] * r["episodes"])
        episodes += r["episodes"]
    return {"success_rate": wins / episodes, "forward_passes_per_step": passes / steps,
            "ms_per_env_step": 1000 * seconds / steps, "env_steps": steps}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint", help="a PCPolicy directory (e.g. outputs/demo/pc/final)")
    parser.add_argument("--wall-type", default="tunnel")
    parser.add_argument("--mazes", type=int, default=50)
    parser.add_argument("--starts", type=int, default=2)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    policy = PCPolicy.from_pretrained(args.checkpoint)
    size = policy.model.config.grid_size
    seeds = list(maze_splits(0, args.mazes).test)
    results = {"hardware": f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
                           f"{args.threads} torch threads", "checkpoint": args.checkpoint, "runs": []}
    print(f"{results['hardware']}; {args.mazes} unseen {size}x{size} {args.wall_type} mazes x {args.starts} starts")
    print(f"{'batch':>5} {'cache':>5} {'success':>8} {'passes/step':>12} {'ms/step':>9}")
    for batch_size in args.batch_sizes:
        row = {}
        for cache in (True, False):
            policy.config.procedure_cache = cache
            r = rollout_cost(policy, seeds, size, args.wall_type, args.starts, batch_size, args.seed)
            row["cache" if cache else "no_cache"] = r
            print(f"{batch_size:>5} {'on' if cache else 'off':>5} {r['success_rate']:>8.1%} "
                  f"{r['forward_passes_per_step']:>12.2f} {r['ms_per_env_step']:>9.2f}")
        speedup = row["no_cache"]["ms_per_env_step"] / row["cache"]["ms_per_env_step"]
        print(f"      procedure cache speed-up at batch {batch_size}: {speedup:.1f}x")
        results["runs"].append({"batch_size": batch_size, **row, "cache_speedup": speedup})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
