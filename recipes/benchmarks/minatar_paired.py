"""PC against BC on the same unseen MinAtar episodes, as a paired interval, from ``pc-transformers evaluate`` JSONs.

    pc-transformers evaluate RUN/runs/breakout_pc/final --episodes 100 --json eval/breakout_pc.json
    pc-transformers evaluate RUN/runs/breakout_bc/final --episodes 100 --json eval/breakout_bc.json
    python recipes/benchmarks/minatar_paired.py --out results/minatar/paired \
        --pair breakout eval/breakout_pc.json eval/breakout_bc.json \
        --experts breakout RUN_EXPERTS/results.json          # optional: the benchmark's mcts / random / greedy runs

PC and BC must have played the same seeds in the same setting with the same step cap (checked). Each episode seed is
then one paired sample: the interval is the Student-t interval of the per-seed differences PC − BC, which removes the
variance the seeds share (a hard start is hard for both) and so is tighter than comparing two separate intervals.
Expert runs (``minatar_generalization.py --methods mcts random greedy --eval-episodes N``) are shown beside them
when their seeds are the same. The second checkpoint may be another clone (``--bc-label aux-BC``: PC against
auxiliary BC); the table then names it.

Writes ``OUT/table.md``, ``OUT/paired.json`` and a copy of every input (``GAME_pc.json``, ``GAME_bc.json``,
``GAME_experts.json``), so the directory holds what the table was built from.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from pc_transformers.envs.minatar import MINATAR_GAMES
from pc_transformers.evaluation_minatar import t_interval

BASELINES = ("mcts", "random", "greedy")
MATCHED = ("game", "setting", "sticky_action_prob", "difficulty_ramping", "max_steps", "random_start_steps", "seeds")


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{what}: no file {str(path)!r}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{what}: {str(path)!r} is not JSON ({error})") from None


def check_same_episodes(reference: dict, other: dict, names: tuple[str, str]) -> None:
    """Raise unless ``other`` played the episodes ``reference`` played (game, setting, cap, seeds)."""
    for key in MATCHED:
        if key not in other or key not in reference:
            raise ValueError(f"{names[1]} has no {key!r}: expected an evaluation JSON of `pc-transformers evaluate` "
                             "or a run of minatar_generalization.py")
        if other[key] != reference[key]:
            theirs, ours = (f"{len(v)} seeds from {v[0]}" if key == "seeds" and v else repr(v)
                            for v in (other[key], reference[key]))
            raise ValueError(f"{names[1]} played {key}={theirs}, but {names[0]} played {key}={ours}: a paired "
                             "comparison needs the same episodes")


def pair(game: str, pc: dict, bc: dict, experts: dict | None) -> dict:
    """One game's row: PC, BC, the paired difference and, if given, the expert runs with the same seeds."""
    for name, result in (("PC", pc), ("BC", bc)):
        if result.get("game") != game:
            raise ValueError(f"the {name} evaluation given for {game!r} played {result.get('game')!r}")
    check_same_episodes(pc, bc, (f"{game} PC", f"{game} BC"))
    diff = t_interval([a - b for a, b in zip(pc["returns"], bc["returns"])])
    row = {"game": game, "episodes": len(pc["seeds"]), "pc": pc, "bc": bc,
           "pc_minus_bc": {k: diff[k] for k in ("mean", "low", "high", "half_width", "std", "n")},
           "pc_ge_bc": diff["mean"] >= 0, "significant": bool(diff["low"] > 0 or diff["high"] < 0)}
    if experts is not None:
        games = [g for g in experts.get("games", []) if g.get("game") == game]
        if len(games) != 1:
            raise ValueError(f"the experts' results.json given for {game!r} holds the games "
                             f"{[g.get('game') for g in experts.get('games', [])]}, expected {game!r} once")
        for method, run in games[0]["runs"].items():
            if method in BASELINES:
                check_same_episodes(pc, run, (f"{game} PC", f"{game} {method}"))
                row[method] = run
    if "mcts" in row:  # undefined when the expert scored nothing
        row["pc_over_mcts"] = pc["mean_return"] / row["mcts"]["mean_return"] if row["mcts"]["mean_return"] else None
    return row


def summarize(row: dict) -> dict:
    """A row for paired.json: the comparison, and each method's mean, half-width and (for PC and BC) checkpoint."""
    methods = {m: {"mean_return": row[m]["mean_return"], "return_ci95_half_width": row[m]["return_ci95_half_width"],
                   **({"checkpoint": row[m].get("checkpoint")} if m in ("pc", "bc") else {})}
               for m in ("pc", "bc", *BASELINES) if m in row}
    return {k: v for k, v in row.items() if k not in methods} | methods


def write_outputs(out: Path, json_name: str, summary: dict, table: str) -> None:
    """``OUT/json_name`` (the summary) and ``OUT/table.md``; prints the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / json_name).write_text(json.dumps(summary, indent=2) + "\n")
    (out / "table.md").write_text(table)
    print(table)


def setting_sentence(result: dict) -> str:
    """Where an evaluation JSON's episodes were played, as the tables' first words."""
    return (f"{result['setting']} setting (sticky actions {result['sticky_action_prob']}, difficulty ramping "
            f"{'on' if result['difficulty_ramping'] else 'off'}), episodes capped at {result['max_steps']} steps; ")


def format_table(rows: list[dict], pc_label: str, bc_label: str = "BC") -> str:
    def cell(result):
        return f"{result['mean_return']:.2f} ± {result['return_ci95_half_width']:.2f}" if result else "not run"

    lines = [(f"| game | episodes | {pc_label} | {bc_label} | MCTS expert | random | greedy | "
              f"{pc_label} − {bc_label}, paired over seeds (95% CI) | verdict | {pc_label} / MCTS |"),
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        d = row["pc_minus_bc"]
        verdict = ("no significant difference" if not row["significant"]
                   else f"{pc_label} > {bc_label}" if d["mean"] > 0 else f"{pc_label} < {bc_label}")
        lines.append(f"| {row['game']} | {row['episodes']} | {cell(row['pc'])} | {cell(row['bc'])} | "
                     f"{cell(row.get('mcts'))} | {cell(row.get('random'))} | {cell(row.get('greedy'))} | "
                     f"{d['mean']:+.2f} ({d['low']:+.2f} to {d['high']:+.2f}) | {verdict} | "
                     + (f"{row['pc_over_mcts']:.2f} |" if row.get("pc_over_mcts") is not None else "— |"))
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pair", nargs=3, action="append", required=True, metavar=("GAME", "PC_JSON", "BC_JSON"),
                        help="a game and its PC and BC evaluation JSONs (`pc-transformers evaluate --json`); repeat "
                             "per game")
    parser.add_argument("--experts", nargs=2, action="append", default=[], metavar=("GAME", "RESULTS_JSON"),
                        help="a game and the results.json of minatar_generalization.py --methods mcts random greedy "
                             "on the same seeds")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--pc-label", default="PC", help="the PC column's heading, e.g. 'PC (ranked)'")
    parser.add_argument("--bc-label", default="BC",
                        help="the BC column's heading, when the second checkpoint is another clone, e.g. 'aux-BC' "
                             "(PC against auxiliary BC); paired.json keeps the keys pc, bc and pc_minus_bc")
    args = parser.parse_args(argv)

    games = [game for game, _, _ in args.pair]
    for game in [*games, *(game for game, _ in args.experts)]:
        if game not in MINATAR_GAMES:
            parser.error(f"unknown game {game!r}; expected one of {', '.join(MINATAR_GAMES)}")
    for given in (games, [game for game, _ in args.experts]):
        if len(set(given)) != len(given):
            parser.error(f"a game is given twice: {given}")
    if unpaired := sorted({game for game, _ in args.experts} - set(games)):
        parser.error(f"--experts for {unpaired} without a --pair for it")
    experts_of = {game: path for game, path in args.experts}

    args.out.mkdir(parents=True, exist_ok=True)
    rows, copies = [], []
    for game, pc_path, bc_path in args.pair:
        pc, bc = read_json(pc_path, f"{game} PC"), read_json(bc_path, f"{game} BC")
        experts = read_json(experts_of[game], f"{game} experts") if game in experts_of else None
        rows.append(pair(game, pc, bc, experts))
        copies += [(pc_path, f"{game}_pc.json"), (bc_path, f"{game}_bc.json")]
        copies += [(experts_of[game], f"{game}_experts.json")] if game in experts_of else []
    for source, name in copies:
        if Path(source).resolve() != (args.out / name).resolve():
            shutil.copyfile(source, args.out / name)
    summary = {"pc_label": args.pc_label, "bc_label": args.bc_label, "games": [summarize(row) for row in rows]}
    head = (setting_sentence(rows[0]["pc"]) + "mean return ± 95% Student-t half-width; the difference is the "
            "t-interval of the per-seed differences (same seeds). "
            "Inputs: the `GAME_*.json` files beside this table; built by `recipes/benchmarks/minatar_paired.py`.\n\n")
    write_outputs(args.out, "paired.json", summary, head + format_table(rows, args.pc_label, args.bc_label))
    return summary


if __name__ == "__main__":
    main()
