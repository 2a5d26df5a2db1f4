"""How much of the MCTS expert's choice does a MinAtar observation determine, how much of it do the trained clones
reproduce, and how many different episodes does validation in the training setting see? A diagnostic for the runs
of ``minatar_generalization.py``.

    python recipes/benchmarks/minatar_probe.py outputs/benchmarks/minatar7 --games breakout freeway asterix \
        --json probe.json

For each game it reads what ``minatar_generalization.py --out DIR`` left in ``DIR/GAME`` (or ``DIR`` itself): the
expert data ``data/GAME`` and, when present, the trained policies ``runs/GAME_{pc,bc}/final``.

1. **Probe**: the decisions of every ``--holdout-every``-th expert episode are held out; a multilayer perceptron on
   the flattened observation (two hidden layers of ``--probe-width``, ReLU; AdamW 1e-3, batches of
   ``--probe-batch-size``, ``--probe-steps`` steps) learns the expert's action from the other episodes. Its accuracy
   on held-out episodes is what of the expert's choice a model that only has to read the observation can predict;
   the majority action's share is the floor. With ``--play-episodes N`` the probe also *plays*, greedily, N unseen
   episodes in the evaluation setting (sticky actions 0.1, ramping on; the seeds and cap of the benchmark's final
   evaluation): plain behavioral cloning by an MLP, the reference for what the clones could reach.
2. **Clones**: the greedy action of each trained policy (`MinAtarPolicy.act`, its grammar and decoding as in
   evaluation) on up to ``--max-decisions`` of the expert's decisions. The policies were trained on every episode, so
   this is how well they fit their own training data; the probe's training accuracy is the figure to compare with.
3. **Validation diversity**: the number of distinct episodes among ``--val-episodes`` validation seeds in the data's
   setting, for a policy that acts deterministically (the same cycle of actions from every start, ``--diversity-steps``
   steps; after up to ``--random-starts`` random actions, as ``eval.random_starts`` plays them). Validation rollouts
   of a greedy policy can tell apart no more episodes than that.

Outputs ``--json`` (every number) and a markdown table on stdout. One process, ``--threads`` torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np
import torch

from pc_transformers.data import load_minatar_dataset
from pc_transformers.data.minatar_dataset import minatar_config_from_card
from pc_transformers.envs.minatar import MINATAR_GAMES, episode_seeds, make_minatar_env, minatar_game_info
from pc_transformers.evaluation_minatar import evaluate_minatar_policy
from pc_transformers.policy import PCPolicy


def game_dir(root: Path, game: str) -> Path:
    """``root/game`` when the game's data have their own directory there (``root/game/data/game``), else ``root``."""
    return root / game if (root / game / "data" / game).is_dir() else root


class ProbePolicy:
    """The trained probe as a batched policy (``act(obs_batch, env_ids=...)``, as `evaluate_minatar_policy` plays
    one): the greedy action among the game's ``num_actions``."""

    def __init__(self, net: torch.nn.Module, num_actions: int):
        self.net, self.num_actions = net, num_actions

    @torch.no_grad()
    def act(self, obs, return_procedure: bool = False, env_ids=None):
        x = torch.as_tensor(np.asarray(obs).reshape(len(obs), -1), dtype=torch.float32)
        actions = self.net(x)[:, : self.num_actions].argmax(-1).numpy()
        return actions, [{"forward_passes": 1, "fallback": False} for _ in actions]


def probe(obs: np.ndarray, actions: np.ndarray, episodes: np.ndarray, args) -> tuple[dict, torch.nn.Module]:
    """Train the MLP probe on the decisions of the kept episodes; accuracy on those and on the held-out ones, and the
    trained network."""
    generator = torch.Generator().manual_seed(args.seed)
    x = torch.as_tensor(obs.reshape(len(obs), -1), dtype=torch.float32)
    y = torch.as_tensor(actions, dtype=torch.long)
    held = torch.as_tensor(episodes % args.holdout_every == 0)
    if held.all() or not held.any():
        raise ValueError(f"--holdout-every {args.holdout_every} leaves no training or no held-out episode among "
                         f"{len(np.unique(episodes))}")
    train_x, train_y, test_x, test_y = x[~held], y[~held], x[held], y[held]
    torch.manual_seed(args.seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], args.probe_width), torch.nn.ReLU(),
                              torch.nn.Linear(args.probe_width, args.probe_width), torch.nn.ReLU(),
                              torch.nn.Linear(args.probe_width, int(y.max()) + 1))
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    for _ in range(args.probe_steps):
        index = torch.randint(len(train_x), (args.probe_batch_size,), generator=generator)
        loss = torch.nn.functional.cross_entropy(net(train_x[index]), train_y[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        train_acc = (net(train_x).argmax(-1) == train_y).float().mean().item()
        test_acc = (net(test_x).argmax(-1) == test_y).float().mean().item()
    majority = int(torch.bincount(train_y).argmax())
    return {"train_decisions": len(train_y), "heldout_decisions": len(test_y), "train_accuracy": train_acc,
            "heldout_accuracy": test_acc, "majority_action": majority,
            "heldout_majority_accuracy": (test_y == majority).float().mean().item()}, net.eval()


def clone_accuracy(policy_dir: Path, obs: np.ndarray, actions: np.ndarray, batch_size: int) -> float:
    policy = PCPolicy.from_pretrained(policy_dir)
    predicted = np.concatenate([policy.act(obs[i : i + batch_size])[0] for i in range(0, len(obs), batch_size)])
    return float((predicted == actions).mean())


def distinct_episodes(game: str, setting: str, seeds, steps: int, random_starts: int = 0) -> int:
    """Distinct observation sequences from these seeds when every episode plays the same cycle of actions (after up
    to ``random_starts`` random ones, `RandomStart`)."""
    env = make_minatar_env(game, setting, random_start_steps=random_starts)
    seen = set()
    for seed in seeds:
        obs, _ = env.reset(seed=seed)
        trajectory = [obs.tobytes()]
        for t in range(steps):
            obs, _, terminated, truncated, _ = env.step(t % env.action_space.n)
            trajectory.append(obs.tobytes())
            if terminated or truncated:
                break
        seen.add(b"".join(trajectory))
    env.close()
    return len(seen)


def measure(root: Path, game: str, args) -> dict:
    base = game_dir(root, game)
    data_dir = base / "data" / game
    data = load_minatar_dataset(data_dir)["train"].with_format("numpy")
    obs, actions, episodes = (np.asarray(data[name]) for name in ("obs", "action", "episode"))
    setting = minatar_config_from_card(data_dir).setting  # where validation rollouts are played
    metrics, net = probe(obs, actions, episodes, args)
    result = {"game": game, "decisions": len(actions), "episodes": int(len(np.unique(episodes))), "probe": metrics,
              "probe_play": None}
    if args.play_episodes:
        played = evaluate_minatar_policy(ProbePolicy(net, minatar_game_info(game).num_actions), game, "eval",
                                         episode_seeds("eval", args.play_episodes), max_steps=args.play_max_steps)
        result["probe_play"] = {k: played[k] for k in ("setting", "sticky_action_prob", "difficulty_ramping",
                                                       "episodes", "max_steps", "mean_return", "return_ci95",
                                                       "return_ci95_half_width", "returns", "ms_per_decision")}
    sample = np.random.default_rng(args.seed).permutation(len(actions))[: args.max_decisions]
    sample.sort()
    result["clone_accuracy"] = {}
    for method in ("pc", "bc"):
        policy_dir = base / "runs" / f"{game}_{method}" / "final"
        if policy_dir.is_dir():
            result["clone_accuracy"][method] = clone_accuracy(policy_dir, obs[sample], actions[sample],
                                                              args.batch_size)
    result["clone_decisions"] = len(sample)
    result["validation_setting"] = str(setting)
    result["validation_seeds"] = args.val_episodes
    result["distinct_validation_episodes"] = distinct_episodes(
        game, str(setting), episode_seeds("validation", args.val_episodes), args.diversity_steps, args.random_starts)
    result["random_starts"] = args.random_starts
    p, played = result["probe"], result["probe_play"]
    clones = ", ".join(f"{m.upper()} {a:.1%}" for m, a in result["clone_accuracy"].items()) or "no runs"
    play = "" if played is None else (f"; the probe plays {played['mean_return']:.2f} ± "
                                      f"{played['return_ci95_half_width'] or 0:.2f} in the eval setting")
    print(f"{game}: probe {p['train_accuracy']:.1%} train / {p['heldout_accuracy']:.1%} held out (majority "
          f"{p['heldout_majority_accuracy']:.1%}); clones on training decisions: {clones}; "
          f"{result['distinct_validation_episodes']} distinct of {args.val_episodes} validation episodes{play}",
          flush=True)
    return result


def table(results: dict) -> str:
    lines = ["| game | majority action, held out | MLP probe, train / held out | PC on its training data | "
             "BC on its training data | distinct validation episodes | the probe's return, eval setting |",
             "|---|---|---|---|---|---|---|"]
    for r in results["games"]:
        p, c, played = r["probe"], r["clone_accuracy"], r.get("probe_play")
        play = "not played" if played is None else (f"{played['mean_return']:.2f} ± "
                                                    f"{played['return_ci95_half_width'] or 0:.2f}")
        lines.append(f"| {r['game']} | {p['heldout_majority_accuracy']:.1%} | {p['train_accuracy']:.1%} / "
                     f"{p['heldout_accuracy']:.1%} | " + " | ".join(f"{c[m]:.1%}" if m in c else "n/a"
                                                                  for m in ("pc", "bc"))
                     + f" | {r['distinct_validation_episodes']} of {r['validation_seeds']} | {play} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", help="the --out directory of minatar_generalization.py")
    parser.add_argument("--games", nargs="+", default=["breakout", "freeway", "asterix"], choices=MINATAR_GAMES)
    parser.add_argument("--holdout-every", type=int, default=5, help="hold out episodes whose index is a multiple")
    parser.add_argument("--probe-steps", type=int, default=2000, help="AdamW steps of the MLP probe")
    parser.add_argument("--probe-width", type=int, default=256, help="hidden units per layer of the probe")
    parser.add_argument("--probe-batch-size", type=int, default=64, help="decisions per probe step")
    parser.add_argument("--play-episodes", type=int, default=0,
                        help="also play the probe greedily on N unseen episodes in the eval setting (0: do not)")
    parser.add_argument("--play-max-steps", type=int, default=300, help="cap of those episodes")
    parser.add_argument("--max-decisions", type=int, default=2000, help="decisions the clones are scored on")
    parser.add_argument("--batch-size", type=int, default=64, help="observations per policy call")
    parser.add_argument("--val-episodes", type=int, default=16, help="validation seeds checked for diversity")
    parser.add_argument("--diversity-steps", type=int, default=60, help="steps per diversity episode")
    parser.add_argument("--random-starts", type=int, default=0,
                        help="up to N random actions before each diversity episode (eval.random_starts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    for name in ("holdout_every", "probe_steps", "probe_width", "probe_batch_size", "max_decisions", "batch_size",
                 "val_episodes", "diversity_steps", "threads", "play_max_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("random_starts", "play_episodes"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be non-negative, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    results = {"hardware": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.threads} torch threads, "
                           f"torch {torch.__version__}", "args": vars(args),
               "games": [measure(Path(args.runs), game, args) for game in args.games]}
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
