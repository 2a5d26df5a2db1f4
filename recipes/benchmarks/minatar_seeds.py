"""PC against BC over several training seeds, on the same unseen MinAtar episodes, from ``pc-transformers evaluate``
JSONs: each training seed's paired difference, and their average.

    python recipes/benchmarks/minatar_seeds.py --out results/minatar/seeds \
        --pair breakout 0 eval/breakout_pc_seed0.json eval/breakout_bc_seed0.json \
        --pair breakout 1 eval/breakout_pc_seed1.json eval/breakout_bc_seed1.json \
        --pair freeway 0 ...                                     # one --pair per game and training seed

For a game whose PC and BC were trained with seeds ``s = 1..S`` and all played the same episode seeds ``e``
(checked: same game, setting, step cap and seeds), ``d[s, e] = PC_s(e) − BC_s(e)``. Each training seed's row is the
paired Student-t interval over episodes of ``d[s, ·]``, as `minatar_paired.py` gives it; the game's **average** row is
the t-interval over episodes of ``mean_s d[s, e]``, the difference between the average PC and the average BC of
these trained models on these episodes. That interval holds the episodes' variation, not the training seeds': with
two seeds there is no estimate of how much a third would differ, so the rows of the seeds are printed beside it and
``seed_spread`` (the largest minus the smallest seed's mean difference) says how far they disagree. With three or
more seeds, ``between_seeds`` is the Student-t interval over the seeds' mean differences (S − 1 degrees of freedom):
what a new training seed's mean difference on these episodes is expected to be, wide with few seeds.

Writes ``OUT/table.md`` and ``OUT/seeds.json``. The inputs are not copied: ``seeds.json`` names their paths, which
should be files committed under ``recipes/benchmarks/results/`` for the table to be rebuilt from the repository.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pc_transformers.envs.minatar import MINATAR_GAMES
from pc_transformers.evaluation_minatar import t_interval
from pc_transformers.recipes import load_recipe

paired = load_recipe("benchmarks/minatar_paired")  # read_json, check_same_episodes, setting_sentence, write_outputs

INTERVAL = ("mean", "low", "high", "half_width", "std", "n")


def compare(game: str, seeds: list[dict]) -> dict:
    """One game: every training seed's paired difference, and the average over seeds per episode. ``seeds``: per
    training seed, ``{"seed", "pc", "bc", "inputs"}`` (the two evaluation JSONs and their paths)."""
    reference, first_seed = seeds[0]["pc"], seeds[0]["seed"]
    rows, differences = [], []
    for entry in seeds:
        seed, pc, bc = entry["seed"], entry["pc"], entry["bc"]
        for name, result in ((f"{game} PC, seed {seed}", pc), (f"{game} BC, seed {seed}", bc)):
            if result.get("game") != game:
                raise ValueError(f"{name}: the evaluation played {result.get('game')!r}, expected {game!r}")
            paired.check_same_episodes(reference, result, (f"{game} PC, seed {first_seed}", name))
        d = np.subtract(pc["returns"], bc["returns"])
        differences.append(d)
        diff = t_interval(d)
        rows.append({"seed": seed, "pc_mean_return": pc["mean_return"], "bc_mean_return": bc["mean_return"],
                     "pc_checkpoint": pc.get("checkpoint"), "bc_checkpoint": bc.get("checkpoint"),
                     "pc_minus_bc": {k: diff[k] for k in INTERVAL},
                     "significant": bool(diff["low"] > 0 or diff["high"] < 0), "inputs": entry["inputs"]})
    average = t_interval(np.mean(differences, axis=0))
    means = [row["pc_minus_bc"]["mean"] for row in rows]
    return {"game": game, "episodes": len(reference["seeds"]), "training_seeds": [row["seed"] for row in rows],
            "seeds": rows,
            "average": {"pc_mean_return": float(np.mean([r["pc_mean_return"] for r in rows])),
                        "bc_mean_return": float(np.mean([r["bc_mean_return"] for r in rows])),
                        "pc_minus_bc": {k: average[k] for k in INTERVAL},
                        "significant": bool(average["low"] > 0 or average["high"] < 0)},
            "seed_spread": max(means) - min(means),
            "between_seeds": ({k: v for k, v in t_interval(means).items() if k in INTERVAL} if len(means) >= 3
                              else None)}


def verdict(entry: dict, pc_label: str, bc_label: str) -> str:
    d = entry["pc_minus_bc"]
    if not entry["significant"]:
        return "no significant difference"
    return f"**{pc_label} > {bc_label}**" if d["mean"] > 0 else f"**{pc_label} < {bc_label}**"


def format_table(games: list[dict], pc_label: str, bc_label: str) -> str:
    lines = [(f"| game | training seed | {pc_label} | {bc_label} | {pc_label} − {bc_label}, paired over episodes "
              "(95% CI) | verdict | between training seeds (95% CI, 3+ seeds) |"), "|---|---|---|---|---|---|---|"]
    for game in games:
        between = game.get("between_seeds")
        spread = f"{between['mean']:+.2f} ({between['low']:+.2f} to {between['high']:+.2f})" if between else ""
        for row in [*game["seeds"], {**game["average"], "seed": "average of " + ", ".join(
                str(s) for s in game["training_seeds"]), "between": spread}]:
            d = row["pc_minus_bc"]
            lines.append(f"| {game['game']} | {row['seed']} | {row['pc_mean_return']:.2f} | "
                         f"{row['bc_mean_return']:.2f} | {d['mean']:+.2f} ({d['low']:+.2f} to {d['high']:+.2f}) | "
                         f"{verdict(row, pc_label, bc_label)} | {row.get('between', '')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", nargs=4, action="append", required=True,
                        metavar=("GAME", "SEED", "PC_JSON", "BC_JSON"),
                        help="a game, the training seed, and that seed's PC and BC evaluation JSONs "
                             "(`pc-transformers evaluate --json`); repeat per game and seed")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pc-label", default="PC", help="the PC column's heading, e.g. 'PC (ranked)'")
    parser.add_argument("--bc-label", default="BC", help="the second clone's heading, e.g. 'aux-BC'")
    args = parser.parse_args(argv)

    by_game: dict[str, list] = {}
    for game, seed, pc_path, bc_path in args.pair:
        if game not in MINATAR_GAMES:
            parser.error(f"unknown game {game!r}; expected one of {', '.join(MINATAR_GAMES)}")
        try:
            seed = int(seed)
        except ValueError:
            parser.error(f"the training seed of a --pair must be an integer, got {seed!r} (for {game})")
        if any(seed == entry["seed"] for entry in by_game.get(game, [])):
            parser.error(f"training seed {seed} of {game} is given twice")
        by_game.setdefault(game, []).append({"seed": seed, "pc": paired.read_json(pc_path, f"{game} PC, seed {seed}"),
                                             "bc": paired.read_json(bc_path, f"{game} BC, seed {seed}"),
                                             "inputs": {"pc": str(pc_path), "bc": str(bc_path)}})
    games = [compare(game, entries) for game, entries in by_game.items()]

    summary = {"pc_label": args.pc_label, "bc_label": args.bc_label, "games": games}
    head = (paired.setting_sentence(by_game[games[0]["game"]][0]["pc"]) + "mean returns; the difference is the "
            "Student-t interval over the episodes of the per-episode differences (same episode seeds for every "
            "checkpoint of a game); the average row averages the training seeds' differences per episode first, "
            "so its interval holds the episodes' variation, not the training seeds'. Inputs: named in "
            "`seeds.json`; built by `recipes/benchmarks/minatar_seeds.py`.\n\n")
    paired.write_outputs(args.out, "seeds.json", summary, head + format_table(games, args.pc_label, args.bc_label))
    return summary


if __name__ == "__main__":
    main()
