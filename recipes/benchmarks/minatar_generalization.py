"""Does procedure cloning of an MCTS expert generalize to an unseen MinAtar setting better than behavioral cloning,
and at what cost per decision? The issue's protocol in one script.

    python recipes/benchmarks/minatar_generalization.py --out outputs/benchmarks/minatar            # 3 games
    python recipes/benchmarks/minatar_generalization.py --games breakout --episodes 60 --steps 1500
    python recipes/benchmarks/minatar_generalization.py --quick --out /tmp/minatar                  # CI smoke

(from the repository root with ``pip install -e .[minatar]``, or prefixed with ``PYTHONPATH=.``).

Per game (default breakout, freeway, asterix):

1. **Expert data** in the *train* setting (no sticky actions, no difficulty ramp) on training seeds:
   ``--episodes`` MCTS episodes of at most ``--max-episode-steps`` steps, played in ``--num-workers`` processes
   (`pc_transformers.data.minatar_dataset`), written to ``OUT/data/GAME``; reused when the card there says it was
   made with the same settings.
2. **PC and BC** trained by ``recipes/train.py``'s ``main`` (``domain: minatar``) on that data with the same
   backbone and budget (``--steps`` AdamW steps of ``--batch-size`` decisions, ``--lr-scheduler``, ``--ema-decay``
   for a moving average of the weights); validation rollouts in the train setting every ``--eval-every`` steps on
   validation seeds (``--val-random-starts``: up to N random actions first, to vary the start). ``--branch-order
   action`` trains PC on the search branches in action order (`PCConfig.branch_order`; the data then record every
   action's branch). ``--methods ... aux_bc`` adds auxiliary BC, trained alike: its action is read from the state
   alone and the procedure (in ``--branch-order``) is an auxiliary target.
3. **Evaluation in the unseen eval setting** (sticky actions 0.1, difficulty ramping on) on ``--eval-episodes``
   evaluation seeds (never seen in training or validation), episodes capped at ``--eval-max-steps``: PC, BC, the
   MCTS expert with the data's settings, a uniformly random player and a greedy one-step planner. Mean return ± 95%
   Student-t interval over episodes (`pc_transformers.evaluation_minatar`).
4. **Decision latency**: ms per decision of PC and BC stepping one environment alone (batch 1) on
   ``--latency-episodes`` evaluation episodes, next to the MCTS expert's (one environment, one process); also
   forward passes per decision and MCTS simulations per decision. PC acts as `MinAtarPolicy` does by default,
   decoding until its action is fixed (``minatar_latency.py`` also times the whole procedure).

Outputs in ``--out``: ``results.json`` (every number, every episode return), ``table.md`` and ``returns.png``
(bar plot of mean returns with their 95% intervals, and latencies). The issue's targets are checked in
``results.json`` per game: ``pc_ge_bc`` (PC's mean return at least BC's) and ``pc_within_10pct_of_mcts``
(PC's mean return at least 90% of the expert's), with ``pc_latency_fraction`` (PC ms / MCTS ms per decision).

Set ``OMP_NUM_THREADS=1`` or keep ``--threads 1`` on a small shared machine: one intra-op thread is faster there.
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pc_transformers.data import (
    MinAtarDataConfig,
    generate_minatar_dataset,
    save_minatar_dataset,
)
from pc_transformers.data.minatar_dataset import minatar_config_from_card
from pc_transformers.envs.minatar import MINATAR_GAMES, episode_seeds, minatar_game_info
from pc_transformers.evaluation import json_safe
from pc_transformers.evaluation_minatar import (
    GreedyActor,
    MCTSActor,
    RandomActor,
    evaluate_minatar_policy,
)
from pc_transformers.policy import PCPolicy
from pc_transformers.procedures.mcts import MCTSConfig
from pc_transformers.recipes import load_recipe

METHODS = ("pc", "bc", "aux_bc", "mcts", "random", "greedy")
TRAINED = ("pc", "bc", "aux_bc")  # the clones recipes/train.py trains, one `objective` each
DEFAULT_METHODS = ("pc", "bc", "mcts", "random", "greedy")  # aux_bc on request (--methods ... aux_bc)
COLORS = {"pc": "tab:blue", "bc": "tab:orange", "aux_bc": "tab:brown", "mcts": "tab:green", "random": "tab:gray",
          "greedy": "tab:purple"}


def data_for(out: Path, game: str, args) -> tuple[MinAtarDataConfig, Path]:
    """The game's expert data config and directory; generated unless the card there says the same settings."""
    given = {"num_simulations": args.simulations, "max_depth": args.max_depth, "rollout_depth": args.rollout_depth,
             "rollout_hold": args.rollout_hold}
    mcts = {k: v for k, v in given.items() if v is not None}  # the rest: MCTSConfig's defaults
    if args.branch_order == "action":  # every action's branch is recorded (Asterix has 5 actions, top_k 3)
        mcts["top_k"] = max(MCTSConfig().top_k, minatar_game_info(game).num_actions)
    mcts.update(args.game_mcts.get(game, {}))
    config = MinAtarDataConfig(game=game, setting="train", episodes=args.episodes,
                               max_episode_steps=args.max_episode_steps, mcts=mcts, num_workers=args.num_workers)
    data_dir = out / "data" / game
    try:
        reusable = minatar_config_from_card(data_dir).description() == config.description()
    except (FileNotFoundError, ValueError):
        reusable = False
    if reusable:
        print(f"== {game}: reusing the expert data in {data_dir}", flush=True)
    else:
        print(f"== {game}: generating {args.episodes} expert episodes", flush=True)
        save_minatar_dataset(generate_minatar_dataset(config), data_dir, config)
    return config, data_dir


def train(recipe, objective: str, data_config, data_dir: Path, args, run_dir: Path) -> dict:
    config = recipe.TrainConfig(
        output_dir=str(run_dir), seed=args.seed, domain="minatar", dataset=str(data_dir), minatar=data_config,
        model={"objective": objective, "hidden_size": args.hidden_size, "num_hidden_layers": args.layers,
               "num_attention_heads": args.heads, "intermediate_size": 4 * args.hidden_size,
               "state_encoder_size": args.state_encoder_size,
               **({"branch_order": args.branch_order} if objective != "bc" else {})},
        train=recipe.OptimArgs(max_steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                               lr_scheduler=args.lr_scheduler, warmup_steps=min(50, args.steps // 10),
                               ema_decay=args.ema_decay),
        eval=recipe.EvalArgs(every=args.eval_every, episodes=args.val_episodes, final_episodes=args.eval_episodes,
                             max_steps=args.eval_max_steps, keep_best=args.eval_every > 0,
                             random_starts=args.val_random_starts),
        log_every=max(1, min(10, args.steps)), save_every=0, save_total_limit=1, report_to="none",
    )
    return recipe.main(config)


def run_game(recipe, game: str, args, out: Path) -> dict:
    data_config, data_dir = data_for(out, game, args)
    seeds = episode_seeds("eval", args.eval_episodes)
    latency_seeds = episode_seeds("eval", args.latency_episodes)
    runs = {}
    for method in args.methods:
        print(f"== {game}: {method}", flush=True)
        wall = time.perf_counter()
        if method in TRAINED:
            run_dir = out / "runs" / f"{game}_{method}"
            results = train(recipe, method, data_config, data_dir, args, run_dir)
            policy = PCPolicy.from_pretrained(run_dir / "final")
            latency = evaluate_minatar_policy(policy, game, "eval", latency_seeds, max_steps=args.latency_max_steps,
                                              batch_size=1)
            results["latency_batch1"] = {k: latency[k] for k in ("ms_per_decision", "mean_forward_passes",
                                                                 "decisions")}
        else:
            actor = {"mcts": lambda: MCTSActor(data_config.mcts_config), "random": lambda: RandomActor(args.seed),
                     "greedy": lambda: GreedyActor(args.seed)}[method]()
            # MCTS episodes in parallel processes; its latency is still per decision of one environment.
            results = evaluate_minatar_policy(actor, game, "eval", seeds, max_steps=args.eval_max_steps,
                                              num_workers=args.num_workers if method == "mcts" else 1)
            if method == "mcts":
                results["simulations_per_decision"] = data_config.mcts_config.num_simulations
        results["wall_seconds"] = round(time.perf_counter() - wall, 1)
        runs[method] = json_safe(results)
        half = results["return_ci95_half_width"]
        print(f"   {method}: {results['mean_return']:.2f} ± {'n/a' if half is None else f'{half:.2f}'} "
              f"({results['ms_per_decision']:.1f} ms/decision)", flush=True)
    return {"game": game, "data": data_config.description(), "runs": runs, **targets(runs)}


def parse_game_mcts(parser, items) -> dict:
    """``["freeway:rollout_hold=0.95", ...]`` as ``{"freeway": {"rollout_hold": 0.95}}``; parser errors name the item."""
    fields = set(MCTSConfig.__dataclass_fields__)
    found = {}
    for item in items:
        game, _, assignment = item.partition(":")
        name, _, value = assignment.partition("=")
        if game not in MINATAR_GAMES or name not in fields or not value:
            parser.error(f"--game-mcts expects GAME:FIELD=VALUE with GAME in {list(MINATAR_GAMES)} and FIELD an "
                         f"MCTSConfig field {sorted(fields)}, got {item!r}")
        try:
            found.setdefault(game, {})[name] = json.loads(value)
        except json.JSONDecodeError:
            parser.error(f"--game-mcts {item!r}: the value must be a number or true/false")
    return found


PROTOCOL = ("methods", "eval_episodes", "eval_max_steps", "latency_episodes", "latency_max_steps", "threads", "seed")


def combine(directories, out: Path) -> dict:
    """Merge the games of several runs' results.json into one and write it with its table and plot to ``out``.

    The runs must share the hardware and the evaluation protocol (`PROTOCOL` but the methods: evaluation episodes and
    caps, threads, seed); their data and training settings may differ by game and are kept with each game (``args``).
    A game may come from several runs that played different methods on the same expert data (e.g. PC and BC trained
    in parallel processes, the expert baselines in a third): its runs are merged, each method's settings kept in
    ``args_by_method``. Every game must end up with the same methods."""
    parts = [json.loads((Path(d) / "results.json").read_text()) for d in directories]
    first = parts[0]
    protocol = lambda part: {k: part["args"][k] for k in PROTOCOL if k != "methods"}  # noqa: E731
    for directory, part in zip(directories, parts):
        if protocol(part) != protocol(first) or part["hardware"] != first["hardware"]:
            raise ValueError(f"{directory}/results.json was run with other settings than {directories[0]}: "
                             f"{protocol(part)} on {part['hardware']!r} vs {protocol(first)} on {first['hardware']!r}")
    games: dict[str, dict] = {}
    for directory, part in zip(directories, parts):
        for game in part["games"]:
            args = game.get("args", part["args"])
            if game["game"] not in games:
                games[game["game"]] = {**game, "args": args}
                continue
            merged = games[game["game"]]
            if game["data"] != merged["data"]:
                raise ValueError(f"{directory}/results.json has other expert data for {game['game']!r} than the "
                                 f"run it would merge with: {game['data']} vs {merged['data']}")
            twice = sorted(set(game["runs"]) & set(merged["runs"]))
            if twice:
                raise ValueError(f"{directory}/results.json plays {', '.join(twice)} on {game['game']!r} again; each "
                                 f"method of a game must come from one run")
            by_method = merged.pop("args_by_method", {m: merged["args"] for m in merged["runs"]})
            runs = {**merged["runs"], **game["runs"]}
            by_method.update({m: args for m in game["runs"]})
            runs = {m: runs[m] for m in METHODS if m in runs}
            games[game["game"]] = {**merged, "runs": runs, **targets(runs), "args_by_method": by_method}
    methods = [m for m in METHODS if any(m in g["runs"] for g in games.values())]
    for game in games.values():
        missing = [m for m in methods if m not in game["runs"]]
        if missing:
            raise ValueError(f"{game['game']!r} has no {', '.join(missing)} run among {list(map(str, directories))}; "
                             f"every game needs the same methods")
    results = {"hardware": first["hardware"],
               "args": {**protocol(first), "methods": methods, "games": list(games), "out": str(out)},
               "combined_from": [str(d) for d in directories], "games": list(games.values())}
    out.mkdir(parents=True, exist_ok=True)
    return write_outputs(results, out)


def write_outputs(results: dict, out: Path) -> dict:
    """``results.json``, ``table.md`` and ``returns.png`` in ``out``; the table is printed too."""
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "table.md").write_text(table(results))
    plot(results, out)
    print(table(results))
    return results


def targets(runs: dict) -> dict:
    """The issue's targets for one game (None where a method was not run)."""
    pc, bc, mcts = (runs.get(m) for m in ("pc", "bc", "mcts"))
    found = {"pc_ge_bc": None, "pc_within_10pct_of_mcts": None, "pc_latency_fraction": None}
    if pc and bc:
        found["pc_ge_bc"] = pc["mean_return"] >= bc["mean_return"]
    if pc and mcts:
        found["pc_within_10pct_of_mcts"] = pc["mean_return"] >= 0.9 * mcts["mean_return"]
        found["pc_latency_fraction"] = pc["latency_batch1"]["ms_per_decision"] / max(mcts["ms_per_decision"], 1e-9)
    return found


def _interval(run: dict) -> str:
    half = run.get("return_ci95_half_width")
    return f"{run['mean_return']:.2f} ± {'n/a' if half is None else f'{half:.2f}'}"


def table(results: dict) -> str:
    methods = results["args"]["methods"]
    args = results["args"]
    header = (f"Hardware: {results['hardware']}. Eval setting (sticky actions 0.1, difficulty ramping on), "
              f"{args['eval_episodes']} unseen evaluation seeds per method, episodes capped at "
              f"{args['eval_max_steps']} steps; mean return ± 95% Student-t interval over episodes. Latency: ms per "
              f"decision with one environment (PC/BC at batch 1).")
    columns = " | ".join(methods)
    titles = (f"| game | {columns} | PC ms/decision | BC ms/decision | MCTS ms/decision | PC ≥ BC | PC ≥ 90% MCTS "
              f"| training steps |")
    lines = [header, "", titles, "|---|" + "---|" * (len(methods) + 6)]
    flag = {True: "yes", False: "no", None: "n/a"}
    for game in results["games"]:
        runs = game["runs"]
        ms = {m: f"{(runs[m].get('latency_batch1') or runs[m])['ms_per_decision']:.1f}" if m in runs else "n/a"
              for m in ("pc", "bc", "mcts")}
        lines.append(f"| {game['game']} | " + " | ".join(_interval(runs[m]) for m in methods)
                     + f" | {ms['pc']} | {ms['bc']} | {ms['mcts']} | {flag[game['pc_ge_bc']]} | "
                       f"{flag[game['pc_within_10pct_of_mcts']]} | {steps(runs)} |")
    return "\n".join(lines) + "\n"


def steps(runs: dict) -> str:
    """The optimizer steps the clones trained for (n/a if none ran)."""
    found = sorted({runs[m]["training"]["steps"] for m in TRAINED if m in runs})
    return " / ".join(map(str, found)) or "n/a"


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = results["args"]["methods"]
    games = [g["game"] for g in results["games"]]
    labels = [game.replace("_", "\n") for game in games]  # "space_invaders" on two lines: no overlapping ticks
    width = 0.8 / len(methods)
    fig, (ax, ax_ms) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [2, 1]})
    for i, method in enumerate(methods):
        runs = [g["runs"][method] for g in results["games"]]
        x = np.arange(len(games)) + (i - (len(methods) - 1) / 2) * width
        half = [0.0 if r["return_ci95_half_width"] is None else r["return_ci95_half_width"] for r in runs]
        ax.bar(x, [r["mean_return"] for r in runs], width, yerr=half, capsize=3, label=method, color=COLORS[method])
    ax.set_xticks(np.arange(len(games)), labels)
    ax.set(ylabel="mean return (95% t-interval)", title="Unseen eval setting: sticky actions 0.1, ramping on")
    ax.legend(fontsize=8)
    timed = [m for m in ("pc", "bc", "mcts") if m in methods]
    for i, method in enumerate(timed):
        x = np.arange(len(games)) + (i - (len(timed) - 1) / 2) * (0.8 / len(timed))
        ms = [(g["runs"][method].get("latency_batch1") or g["runs"][method])["ms_per_decision"]
              for g in results["games"]]
        ax_ms.bar(x, ms, 0.8 / len(timed), label=method, color=COLORS[method])
    ax_ms.set_xticks(np.arange(len(games)), labels)
    ax_ms.set_yscale("log")
    ax_ms.set(ylabel="ms per decision (one environment, log scale)", title="Decision latency")
    ax_ms.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "returns.png", dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/benchmarks/minatar", help="output directory")
    parser.add_argument("--games", nargs="+", default=["breakout", "freeway", "asterix"], choices=MINATAR_GAMES)
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS), choices=METHODS,
                        help="aux_bc: BC whose state representation also predicts the procedure (PCConfig objective "
                             "'aux_bc'; in --branch-order), the action read from the state alone")
    parser.add_argument("--episodes", type=int, default=40, help="expert episodes per game (training seeds)")
    parser.add_argument("--max-episode-steps", type=int, default=200, help="cap on an expert episode")
    parser.add_argument("--simulations", type=int, default=100, help="MCTS simulations per decision (data and "
                                                                      "the MCTS baseline)")
    parser.add_argument("--max-depth", type=int, default=None, help="MCTS tree depth cap (default: MCTSConfig's)")
    parser.add_argument("--rollout-depth", type=int, default=None,
                        help="MCTS random rollout steps (default: MCTSConfig's)")
    parser.add_argument("--rollout-hold", type=float, default=None,
                        help="MCTS rollout action-repeat probability (default: MCTSConfig's)")
    parser.add_argument("--game-mcts", nargs="+", default=[], metavar="GAME:FIELD=VALUE",
                        help="an MCTSConfig field for one game only, e.g. freeway:rollout_hold=0.95")
    parser.add_argument("--num-workers", type=int, default=2, help="processes for the expert (data and baseline)")
    parser.add_argument("--branch-order", default="visits", choices=["visits", "action"],
                        help="PC's (and aux-BC's) serialization of the root branches (PCConfig.branch_order); "
                             "'action' records every action's branch in the data (top_k raised to the game's action "
                             "count)")
    parser.add_argument("--steps", type=int, default=600, help="optimizer steps of each clone (PC, BC, aux-BC)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--lr-scheduler", default="constant_with_warmup",
                        help="a transformers scheduler name (warm-up: a tenth of the steps, at most 50)")
    parser.add_argument("--ema-decay", type=float, default=0.0,
                        help="validate, keep and evaluate an exponential moving average of the weights with this "
                             "decay (train.ema_decay; 0: none)")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--state-encoder-size", type=int, default=0,
                        help="width of the MLP state encoder that reads the whole observation (PCConfig."
                             "state_encoder_size; 0: none, the transformer reads the cell tokens alone)")
    parser.add_argument("--eval-every", type=int, default=200, help="validation rollouts (0: none; else keep_best)")
    parser.add_argument("--val-episodes", type=int, default=8, help="validation episodes (train setting)")
    parser.add_argument("--val-random-starts", type=int, default=0,
                        help="validation only: up to N random actions before the policy takes over (eval."
                             "random_starts; varies Breakout's and Space Invaders' starts)")
    parser.add_argument("--eval-episodes", type=int, default=30, help="evaluation episodes (eval setting)")
    parser.add_argument("--eval-max-steps", type=int, default=300, help="episode cap in validation and evaluation")
    parser.add_argument("--latency-episodes", type=int, default=2, help="episodes of the batch-1 latency runs")
    parser.add_argument("--latency-max-steps", type=int, default=50, help="cap of those episodes")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--combine", nargs="+", default=None, metavar="DIR",
                        help="run nothing: merge the results.json of these output directories (e.g. from parallel runs "
                             "with the same evaluation protocol, one per game, or one per method of a game on the same "
                             "expert data) into --out's results.json, table and plot")
    parser.add_argument("--quick", action="store_true",
                        help="tiny MCTS, 2 expert episodes, 3 training steps of a 1-layer model, 2 short episodes "
                             "per method (CI smoke)")
    args = parser.parse_args(argv)
    args.game_mcts = parse_game_mcts(parser, args.game_mcts)
    if args.combine:
        return combine(args.combine, Path(args.out))
    if args.quick:
        args.episodes, args.max_episode_steps, args.simulations, args.max_depth, args.rollout_depth = 2, 12, 4, 3, 3
        args.steps, args.batch_size, args.hidden_size, args.layers, args.heads = 3, 4, 16, 1, 2
        args.eval_every, args.val_episodes, args.eval_episodes, args.eval_max_steps = 0, 1, 2, 10
        args.latency_episodes, args.latency_max_steps = 1, 5
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipe = load_recipe("train")
    results = {"hardware": f"{platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, "
                           f"torch {torch.__version__}", "args": vars(args), "games": []}
    for game in args.games:
        results["games"].append(run_game(recipe, game, args, out))
        (out / "results.json").write_text(json.dumps(results, indent=2, default=float))  # after every game
    return write_outputs(results, out)


if __name__ == "__main__":
    main(sys.argv[1:])
