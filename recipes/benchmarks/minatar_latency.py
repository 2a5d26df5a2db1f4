"""Decision latency of trained MinAtar policies against the MCTS expert, one environment at a time, in one process.

    python recipes/benchmarks/minatar_latency.py outputs/benchmarks/minatar --games breakout freeway asterix \
        --episodes 2 --max-steps 50 --repeats 2 --json latency.json

Reads what ``minatar_generalization.py --out DIR`` left in ``DIR/GAME`` (or ``DIR`` itself for a combined run's game
directories): the PC and BC policies ``runs/GAME_{pc,bc}/final`` and the expert's settings from the data card
``data/GAME`` beside the PC run. Several directories may be given when a game's methods ran as separate processes
(``--methods pc`` in one ``--out``, ``--methods bc`` in another)::

    python recipes/benchmarks/minatar_latency.py outputs/benchmarks/minatar21/breakout_pc \
        outputs/benchmarks/minatar21/breakout_bc --games breakout

 For each game it plays the same evaluation seeds (eval setting) with PC, BC and the MCTS expert,
one environment and one decision at a time (batch 1), and reports milliseconds per decision; the players alternate
``--repeats`` times so that a change of the machine's load touches all of them. PC is played twice from the same
checkpoint: as it acts by default (``pc``: decoding stops once the grammar has fixed the action) and decoding the
whole procedure (``pc_full``, ``PolicyConfig.full_procedure``); both play the same actions. The ratio PC / MCTS is
the figure to quote: this machine is shared and its absolute speed varies from day to day.

The generalization benchmark measures latency too, but inside runs that may share the cores with other games'
runs; this script is meant for an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from pc_transformers.data.minatar_dataset import minatar_config_from_card
from pc_transformers.envs.minatar import MINATAR_GAMES, episode_seeds
from pc_transformers.evaluation_minatar import MCTSActor, evaluate_minatar_policy
from pc_transformers.policy import PCPolicy


def find_run(roots: list[Path], game: str, method: str) -> Path:
    """The one directory among ``roots`` (each as is, or its ``game`` subdirectory) that holds ``runs/GAME_METHOD``."""
    tried = [base for root in roots for base in (root / game, root)]
    found = [base for base in tried if (base / "runs" / f"{game}_{method}" / "final").is_dir()]
    if not found:
        raise FileNotFoundError(f"no {method} run of {game!r}: none of {[str(b) for b in tried]} holds "
                                f"runs/{game}_{method}/final")
    if len(found) > 1:
        raise ValueError(f"{method} of {game!r} was found in {[str(b) for b in found]}; give only one of them")
    return found[0]


def measure(roots: list[Path], game: str, seeds, max_steps: int, repeats: int) -> dict:
    bases = {method: find_run(roots, game, method) for method in ("pc", "bc")}
    players = {method: PCPolicy.from_pretrained(base / "runs" / f"{game}_{method}" / "final")
               for method, base in bases.items()}
    players["pc_full"] = PCPolicy.from_pretrained(bases["pc"] / "runs" / f"{game}_pc" / "final", full_procedure=True)
    mcts = minatar_config_from_card(bases["pc"] / "data" / game).mcts_config
    players["mcts"] = MCTSActor(mcts)
    times = {method: [] for method in players}
    passes, returns = {}, {}
    for _ in range(repeats):
        for method, player in players.items():
            kwargs = {"batch_size": 1} if method != "mcts" else {}
            report = evaluate_minatar_policy(player, game, "eval", seeds, max_steps=max_steps, **kwargs)
            times[method].append(report["ms_per_decision"])
            passes[method], returns[method] = report["mean_forward_passes"], report["returns"]
    if returns["pc"] != returns["pc_full"]:  # the same decisions, whether or not the procedure is finished
        raise RuntimeError(f"{game}: PC returned {returns['pc']} stopping at the action but {returns['pc_full']} "
                           f"with the whole procedure")
    ms = {method: statistics.median(values) for method, values in times.items()}
    print(f"{game}: ms per decision (median of {repeats}) PC {ms['pc']:.1f} ({passes['pc']:.1f} passes; whole "
          f"procedure {ms['pc_full']:.1f}, {passes['pc_full']:.1f} passes), BC {ms['bc']:.1f}, MCTS {ms['mcts']:.1f} "
          f"({mcts.num_simulations} simulations); PC / MCTS = {ms['pc'] / ms['mcts']:.2f}, whole procedure "
          f"{ms['pc_full'] / ms['mcts']:.2f}", flush=True)
    return {"game": game, "ms_per_decision": ms, "all_ms_per_decision": times, "forward_passes_per_decision": passes,
            "mcts_simulations": mcts.num_simulations, "pc_over_mcts": ms["pc"] / ms["mcts"],
            "pc_full_over_mcts": ms["pc_full"] / ms["mcts"], "branch_order": players["pc"].model.config.branch_order}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="the --out directory of minatar_generalization.py, or several when "
                                                "a game's PC and BC ran separately")
    parser.add_argument("--games", nargs="+", default=["breakout", "freeway", "asterix"], choices=MINATAR_GAMES)
    parser.add_argument("--episodes", type=int, default=2, help="evaluation seeds played by each player")
    parser.add_argument("--max-steps", type=int, default=50, help="decisions per episode at most")
    parser.add_argument("--repeats", type=int, default=2, help="rounds of the players, alternating")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    for name in ("episodes", "max_steps", "repeats", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    seeds = episode_seeds("eval", args.episodes)
    roots = [Path(r) for r in args.runs]
    results = {"hardware": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch threads, "
                           f"torch {torch.__version__}", "args": vars(args),
               "games": [measure(roots, game, seeds, args.max_steps, args.repeats) for game in args.games]}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
