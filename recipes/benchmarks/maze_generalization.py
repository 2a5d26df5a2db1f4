"""Does procedure cloning generalize to unseen mazes where behavioral cloning does not? The comparison, plus the
efficiency figures, in one script.

    python recipes/benchmarks/maze_generalization.py --out outputs/benchmarks/maze         # main setting + sweeps
    python recipes/benchmarks/maze_generalization.py --sizes 16 --train-mazes 5 --methods pc_markov bc
    python recipes/benchmarks/maze_generalization.py --quick --out /tmp/bench              # 8x8, a few steps (CI)

Methods (the transformers share one backbone: 3 layers, d=64, 4 heads, trained by ``recipes/train.py``):

- ``pc_markov``: PC, each map from the previous one (relative 2D attention, ±2 window);
- ``pc_autoregressive``: PC, each map from all earlier ones (block-causal, KV cache);
- ``pc_absolute``: PC with absolute cell embeddings and global attention (the inductive-bias ablation);
- ``convnet_pc``: the paper's PC convnet (5 conv layers, kernel 3, channels 64/64/128/128/6; inputs wall, goal,
  agent and the previous map one-hot), written here, trained with Adam on map-to-map pairs, and acting as the
  original does: up to 100 passes from the goal-only map, recomputed at every step;
- ``bc``: state → action; ``aux_bc``: BC whose state representation also predicts the procedure;
- ``random``: a uniform random action at every step (no training), drawn as the policies draw their fallback
  action when a model never labels the agent's cell, so a method whose every decision falls back scores exactly this.

Each (maze size, number of training mazes) gets one expert dataset (4 trajectories per maze, the paper's budget)
shared by all methods; ``--augment dihedral`` adds the 7 rotated/reflected images of every training trajectory (the
same mazes and starts, the expert asked again on each image), and ``--keep-best`` ends each transformer with its best
validation weights. Evaluation: ``--eval-mazes`` unseen test mazes × ``--eval-starts`` random starts, episodes
capped at 100 steps. Efficiency, per transformer method in the main setting: examples/s and tokens/s in training,
model FLOPs utilization (training FLOP/s counted by ``torch.utils.flop_counter`` over the measured throughput,
divided by this machine's fp32 matmul peak measured in the same run), and acting cost (ms per environment step and
forward passes per step) at batch 1 and 64.

Outputs in ``--out``: ``results.json``, ``table.md``, ``success_vs_train_mazes.png``, ``success_vs_time.png`` and
the best PC checkpoint in ``best_pc/`` (push it with ``pc-transformers push``).
"""

import argparse
import itertools
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pc_transformers.data import (
    MazeDataConfig,
    generate_maze_dataset,
    load_maze_dataset,
    save_maze_dataset,
)
from pc_transformers.envs import maze_splits
from pc_transformers.evaluation import evaluate_policy
from pc_transformers.grid import NUM_ACTIONS
from pc_transformers.procedures.bfs_maps import GOAL, UNREACHED
from pc_transformers.recipes import load_recipe

TRANSFORMERS = {
    "pc_markov": {"objective": "pc", "factorization": "markov"},
    "pc_autoregressive": {"objective": "pc", "factorization": "autoregressive"},
    "pc_absolute": {"objective": "pc", "factorization": "markov", "position_encoding": "absolute"},
    "bc": {"objective": "bc"},
    "aux_bc": {"objective": "aux_bc"},
}
METHODS = (*TRANSFORMERS, "convnet_pc", "random")
NUM_VALUES = 6  # map values: actions 0-3, UNREACHED, GOAL


# ---------------------------------------------------------------------------------------- the paper's convnet
class ConvPC(nn.Module):
    """The released PC model: 5 conv layers, kernel 3, 'same' padding, per-cell logits over the next map's values."""

    def __init__(self, channels=(64, 64, 128, 128)):
        super().__init__()
        sizes = (3 + NUM_VALUES, *channels)
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in itertools.pairwise(sizes))
        self.head = nn.Conv2d(sizes[-1], NUM_VALUES, 3, padding=1)

    def forward(self, state, previous):  # state (B, 3, H, W) float; previous (B, H, W) long
        x = torch.cat([state, F.one_hot(previous, NUM_VALUES).permute(0, 3, 1, 2).float()], dim=1)
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.head(x)  # (B, NUM_VALUES, H, W)


def convnet_pairs(dataset):
    """(state, previous map, next map) for every BFS level of every expert decision."""
    states, previous, following = [], [], []
    for row in dataset.with_format("numpy"):
        state = np.zeros((3, *row["walls"].shape), dtype=np.float32)
        state[0], state[1][tuple(row["goal"])], state[2][tuple(row["agent"])] = row["walls"], 1, 1
        maps = np.asarray(row["maps"])
        for level in range(1, len(maps)):
            states.append(state)
            previous.append(maps[level - 1])
            following.append(maps[level])
    return (torch.from_numpy(np.stack(states)), torch.from_numpy(np.stack(previous)).long(),
            torch.from_numpy(np.stack(following)).long())


class ConvPolicy:
    """Acts as the original code: from the goal-only map, apply the convnet until the agent's cell is labelled (at
    most 100 passes), at every environment step; a random action if it never is."""

    def __init__(self, model: ConvPC, max_passes: int = 100, seed: int = 0):
        self.model, self.max_passes, self.rng = model.eval(), max_passes, np.random.default_rng(seed)

    def reset(self, index=None):
        pass

    @torch.no_grad()
    def act(self, obs, env_ids=None, return_procedure=False):
        obs = torch.as_tensor(np.asarray(obs), dtype=torch.float32)  # (B, 3, H, W)
        batch, agent = len(obs), obs[:, 2].flatten(1).argmax(1)
        current = torch.full(obs.shape[:1] + obs.shape[2:], UNREACHED, dtype=torch.long)
        current[obs[:, 1] > 0] = GOAL
        actions, passes = torch.full((batch,), -1), torch.zeros(batch, dtype=torch.long)
        todo = torch.arange(batch)
        for _ in range(self.max_passes):
            current[todo] = self.model(obs[todo], current[todo]).argmax(1)
            current[obs[:, 1] > 0] = GOAL
            passes[todo] += 1
            labels = current.flatten(1)[torch.arange(batch), agent]
            done = todo[labels[todo] < UNREACHED]
            actions[done] = labels[done]
            todo = todo[labels[todo] >= UNREACHED]
            if len(todo) == 0:
                break
        infos = [{"fallback": bool(a < 0), "forward_passes": int(p), "procedure": None, "cached": False}
                 for a, p in zip(actions, passes)]
        actions = np.array([a if a >= 0 else self.rng.integers(4) for a in actions.tolist()])
        return actions, infos


class RandomPolicy:
    """A uniform random action per environment step, seeded; one ``rng.integers(4)`` per observation in order, as
    `PCPolicy` and `ConvPolicy` draw their fallback actions with the same seed."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)

    def reset(self, index=None):
        pass

    def act(self, obs, env_ids=None, return_procedure=False):
        actions = np.array([self.rng.integers(NUM_ACTIONS) for _ in range(len(obs))])
        return actions, [{"fallback": False, "forward_passes": 0, "procedure": None, "cached": False} for _ in actions]


def convnet_policy(dataset, args) -> tuple[ConvPolicy, dict]:
    """The convnet trained with the benchmark's options, as a policy, and its training figures."""
    model, training = train_convnet(dataset, args.convnet_steps, args.convnet_batch_size, 1e-3, args.seed)
    return ConvPolicy(model, seed=args.seed), training


def train_convnet(dataset, steps: int, batch_size: int, learning_rate: float, seed: int, log=print):
    torch.manual_seed(seed)
    states, previous, following = convnet_pairs(dataset)
    model = ConvPC()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        index = torch.randint(len(states), (batch_size,), generator=generator)
        loss = F.cross_entropy(model(states[index], previous[index]), following[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step % max(steps // 10, 1) == 0:
            log(f"  convnet step {step}/{steps}: loss {loss.item():.4f}")
    seconds = time.perf_counter() - start
    return model, {"steps": steps, "batch_size": batch_size, "train_seconds": round(seconds, 1),
                   "examples_per_s": round(steps * batch_size / seconds, 1), "pairs": len(states)}


# ------------------------------------------------------------------------------------------------ efficiency
def matmul_peak_flops(seconds: float = 1.0, n: int = 1024) -> float:
    """fp32 GEMM FLOP/s on this machine with the current torch threads (the denominator of MFU)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start)


def training_flops_per_example(model, examples, collator, batch_size: int = 8) -> float:
    """Forward + backward FLOPs of one training batch, per example (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    batch = collator([examples[i] for i in range(min(batch_size, len(examples)))])
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(**batch, logits_to_keep=batch["input_ids"].new_zeros(0)).loss.backward()  # as recipes/train.py's step
    model.zero_grad(set_to_none=True)
    model.eval()
    return counter.get_total_flops() / len(batch["input_ids"])


def acting_cost(policy, size: int, wall_type: str, batch: int, episodes: int, seed: int, max_steps: int = 100) -> dict:
    """ms per environment step and forward passes per step with ``batch`` environments stepped together."""
    seeds = maze_splits(0, episodes).test
    steps = seconds = passes = 0.0
    for first in range(0, episodes, batch):
        r = evaluate_policy(policy, seeds[first:first + batch], size=size, wall_type=wall_type, starts_per_maze=1,
                            seed=seed, max_steps=max_steps)
        steps += r["decisions"]
        seconds += r["decisions"] / r["env_steps_per_s"]
        passes += r["mean_forward_passes"] * r["decisions"]
    return {"batch": batch, "ms_per_env_step": 1000 * seconds / steps, "forward_passes_per_step": passes / steps,
            "env_steps_per_s": steps / seconds}


# ----------------------------------------------------------------------------------------------------- runs
def dataset_for(out: Path, size: int, train_mazes: int, seed: int, augment: str = "none"):
    """The setting's data config, its directory and the dataset (generated once, then read back)."""
    config = MazeDataConfig(size=size, train_mazes=train_mazes, test_mazes=0, trajectories=4, seed=seed,
                            augment=augment)
    data_dir = out / "data" / f"maze{size}_train{train_mazes}{'' if augment == 'none' else '_' + augment}"
    if (data_dir / "data").is_dir():
        return config, data_dir, load_maze_dataset(data_dir)
    dataset = generate_maze_dataset(config)
    save_maze_dataset(dataset, data_dir, config)
    return config, data_dir, dataset


def run_transformer(recipe, method, data_config, data_dir, args, run_dir: Path) -> dict:
    config = recipe.TrainConfig(
        output_dir=str(run_dir), seed=args.seed, dataset=str(data_dir),
        data=data_config,
        model=dict(TRANSFORMERS[method]),
        train=recipe.OptimArgs(max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                               lr_scheduler=args.lr_scheduler, warmup_steps=min(50, args.steps // 10),
                               mixed_precision=args.mixed_precision,
                               gradient_accumulation_steps=args.gradient_accumulation_steps),
        eval=recipe.EvalArgs(every=args.eval_every, mazes=args.val_mazes, starts=2, final_mazes=args.eval_mazes,
                             final_starts=args.eval_starts, batch_size=args.eval_batch_size,
                             keep_best=args.keep_best),
        save_every=0, save_total_limit=1, report_to="none",
    )
    return recipe.main(config)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/benchmarks/maze", help="output directory")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 8], help="maze sizes (the first is the main one)")
    parser.add_argument("--train-mazes", type=int, nargs="+", default=[5, 10, 20, 40],
                        help="numbers of training mazes (the first is the main one; the sweep runs at the main size)")
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps per method and setting")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="transformers (the convnet: 1e-3)")
    parser.add_argument("--lr-scheduler", default="constant_with_warmup", help="a transformers scheduler name")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "bf16"],
                        help="the transformers' train.mixed_precision (bf16: autocast, on CPU too)")
    parser.add_argument("--gradient-accumulation-steps", type=int, default=1,
                        help="the transformers' micro-batches per optimizer step (the same batch, less memory)")
    parser.add_argument("--convnet-steps", type=int, default=2000, help="the convnet trains on map pairs, not sequences")
    parser.add_argument("--convnet-batch-size", type=int, default=32, help="map pairs per convnet step")
    parser.add_argument("--eval-every", type=int, default=250, help="validation rollouts (the time curve)")
    parser.add_argument("--val-mazes", type=int, default=20)
    parser.add_argument("--eval-mazes", type=int, default=100)
    parser.add_argument("--eval-starts", type=int, default=5)
    parser.add_argument("--eval-batch-size", type=int, default=0,
                        help="at most N environments per policy call in the transformers' rollouts (0: all at once); "
                             "bounds memory (the autoregressive factorization needs it at 16x16), same results")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--augment", default="none", choices=["none", "dihedral"],
                        help="dihedral: every training trajectory also in the 7 rotated/reflected images of its maze, "
                             "the expert asked again there (all methods get the same data)")
    parser.add_argument("--keep-best", action="store_true",
                        help="transformers end with the weights of their best validation evaluation (eval.keep_best)")
    parser.add_argument("--quick", action="store_true", help="8x8, 2 training mazes, 3 steps, 2 test mazes (smoke)")
    parser.add_argument("--merge", nargs="+", metavar="RESULTS_JSON",
                        help="run nothing: merge the runs of earlier results.json files (e.g. a main setting and its "
                             "sweep, run as separate invocations) into --out's results.json, table.md and plots")
    parser.add_argument("--replace", action="store_true",
                        help="with --merge: a run replaces an earlier run of the same method, maze size and number "
                             "of training mazes (e.g. a longer run of that setting), in its place; without it both "
                             "are kept")
    args = parser.parse_args(argv)
    if args.replace and not args.merge:
        parser.error("--replace only applies to --merge")
    if args.merge:
        return merge(args.merge, Path(args.out), replace=args.replace)
    if args.quick:
        args.sizes, args.train_mazes, args.steps, args.batch_size = [8], [2], 3, 4
        args.convnet_steps, args.convnet_batch_size = 3, 4
        args.eval_every, args.val_mazes, args.eval_mazes, args.eval_starts = 0, 1, 2, 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe("train")
    main_size, main_mazes = args.sizes[0], args.train_mazes[0]
    settings = [(main_size, n) for n in args.train_mazes] + [(s, main_mazes) for s in args.sizes[1:]]
    results = {"hardware": f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
                           f"torch {torch.__version__}", "args": vars(args), "matmul_peak_gflops": None, "runs": []}
    results["matmul_peak_gflops"] = matmul_peak_flops() / 1e9
    best = None
    for size, train_mazes in settings:
        data_config, data_dir, dataset = dataset_for(out, size, train_mazes, args.seed, args.augment)
        for method in args.methods:
            print(f"== {method}: {size}x{size}, {train_mazes} training mazes", flush=True)
            run_dir = out / "runs" / f"maze{size}_train{train_mazes}_{method}"
            wall = time.perf_counter()
            if method in ("convnet_pc", "random"):  # not a recipe model: trained (or not) and evaluated here
                policy, training = (
                    (RandomPolicy(seed=args.seed), {"steps": 0, "train_seconds": 0.0, "examples_per_s": None})
                    if method == "random" else convnet_policy(dataset["train"], args))
                metrics = evaluate_policy(policy, maze_splits(0, args.eval_mazes).test, size=size,
                                          starts_per_maze=args.eval_starts, seed=args.seed)
                run = {**metrics, "success_ci95": list(metrics["success_ci95"]), "training": training,
                       "evaluations": []}
            else:
                run = run_transformer(recipe, method, data_config, data_dir, args, run_dir)
                policy_dir = run_dir / "final"
            run = {"method": method, "size": size, "train_mazes": train_mazes,
                   "wall_seconds": round(time.perf_counter() - wall, 1), **run}
            if (size, train_mazes) == (main_size, main_mazes) and method != "random":
                run["efficiency"] = efficiency(method, run, policy if method == "convnet_pc" else policy_dir,
                                               dataset, results["matmul_peak_gflops"], size, args)
            results["runs"].append(run)
            if method.startswith("pc_") and (size, train_mazes) == (main_size, main_mazes) and (
                    best is None or run["success_rate"] > best["success_rate"]):
                best = run
                shutil.rmtree(out / "best_pc", ignore_errors=True)
                shutil.copytree(run_dir / "final", out / "best_pc")
            (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    results["best_pc"] = None if best is None else {"method": best["method"], "success_rate": best["success_rate"]}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "table.md").write_text(table(results))
    plots(results, out)
    print(table(results))
    return results


def merge(paths, out: Path, replace: bool = False) -> dict:
    """One results.json, table and plots from several: runs concatenated in order; the first file's hardware, peak
    and main setting (``args``) are kept, the methods are the union. With ``replace``, a run takes the place of an
    earlier one of the same (method, size, train_mazes); ``replaced`` lists what went, with its file."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    runs, replaced = {}, list(parts[0].get("replaced", []))  # (run, its file) by key; a merged file's record kept
    for index, (path, part) in enumerate(zip(paths, parts)):
        for number, run in enumerate(part["runs"]):
            key = (run["method"], run["size"], run["train_mazes"]) if replace else (index, number)
            if key in runs:
                old, source = runs[key]
                replaced.append({"method": old["method"], "size": old["size"], "train_mazes": old["train_mazes"],
                                 "steps": old["training"]["steps"], "success_rate": old["success_rate"],
                                 "from": source, "by": str(path)})
            runs[key] = run, str(path)  # a dict keeps the first insertion's place
    results = {**parts[0], "runs": [run for run, _ in runs.values()], "merged_from": [str(p) for p in paths]}
    if replaced:
        results["replaced"] = replaced
    methods = [m for part in parts for m in part["args"]["methods"]]
    results["args"] = {**parts[0]["args"], "methods": list(dict.fromkeys(methods))}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "table.md").write_text(table(results))
    plots(results, out)
    print(table(results))
    return results


def efficiency(method, run, policy_or_dir, dataset, peak_gflops, size, args) -> dict:
    """Training throughput and MFU from the run; acting cost at batch 1 and 64 on unseen mazes."""
    figures = {"examples_per_s": run["training"]["examples_per_s"],
               "tokens_per_s": run["training"].get("tokens_per_s")}
    if method == "convnet_pc":
        policy = policy_or_dir
    else:
        from pc_transformers.data import PCDataCollator, build_examples
        from pc_transformers.policy import PCPolicy

        policy = PCPolicy.from_pretrained(policy_or_dir)
        examples = build_examples(dataset["train"], policy.tokenizer, policy.model.config)
        flops = training_flops_per_example(policy.model, examples, PCDataCollator(policy.tokenizer.pad_token_id))
        figures["train_gflops_per_example"] = flops / 1e9
        figures["mfu"] = flops * figures["examples_per_s"] / (peak_gflops * 1e9)
    episodes, max_steps = (2, 5) if args.quick else (16, 100)
    figures["acting"] = [acting_cost(policy, size, "tunnel", batch, max(batch, episodes), args.seed, max_steps)
                         for batch in ((1, 2) if args.quick else (1, 64))]
    return figures


def table(results) -> str:
    lines = [f"Hardware: {results['hardware']}; fp32 matmul peak {results['matmul_peak_gflops']:.1f} GFLOP/s.", "",
             ("| method | size | train mazes | success (unseen) | 95% CI | steps | train s | examples/s | MFU | "
              "acting ms/step (batch: ms) |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        eff = r.get("efficiency") or {}
        acting = ", ".join(f"{a['batch']}: {a['ms_per_env_step']:.2f}" for a in eff.get("acting", []))
        low, high = r["success_ci95"]
        mfu = f"{eff['mfu']:.2%}" if eff.get("mfu") is not None else ""
        examples_per_s = "" if r["training"]["examples_per_s"] is None else f"{r['training']['examples_per_s']:.0f}"
        lines.append(f"| {r['method']} | {r['size']} | {r['train_mazes']} | {r['success_rate']:.1%} | "
                     f"{low:.1%}–{high:.1%} | {r['training']['steps']} | {r['training']['train_seconds']:.0f} | "
                     f"{examples_per_s} | {mfu} | {acting} |")
    return "\n".join(lines) + "\n"


def plots(results, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    main_size = results["args"]["sizes"][0]
    fig, ax = plt.subplots(figsize=(6, 4))
    for method in results["args"]["methods"]:
        runs = sorted((r for r in results["runs"] if r["method"] == method and r["size"] == main_size),
                      key=lambda r: r["train_mazes"])
        if runs:
            ax.errorbar([r["train_mazes"] for r in runs], [100 * r["success_rate"] for r in runs], marker="o",
                        # max(0, ·): a 100% rate's Wilson upper bound can sit a rounding error below 1
                        yerr=[[max(0.0, 100 * (r["success_rate"] - r["success_ci95"][0])) for r in runs],
                              [max(0.0, 100 * (r["success_ci95"][1] - r["success_rate"])) for r in runs]],
                        label=method,
                        capsize=3)
    ax.set(xlabel="training mazes (4 expert trajectories each)", ylabel="success on unseen mazes (%)",
           title=f"{main_size}x{main_size} tunnel mazes", ylim=(0, 100))
    ax.set_xscale("log", base=2)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "success_vs_train_mazes.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    main_mazes = results["args"]["train_mazes"][0]
    for r in results["runs"]:
        if (r["size"], r["train_mazes"]) == (main_size, main_mazes) and r.get("evaluations"):
            ax.plot([e["train_seconds"] / 60 for e in r["evaluations"]],
                    [100 * e["success_rate"] for e in r["evaluations"]], marker=".", label=r["method"])
    ax.set(xlabel="training time (min)", ylabel="validation success (%)", ylim=(0, 100),
           title=f"{main_size}x{main_size}, {main_mazes} training mazes")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "success_vs_time.png", dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main(sys.argv[1:])
