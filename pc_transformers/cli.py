"""The ``pc-transformers`` command line.

    pc-transformers generate maze --size 16 --wall-type tunnel --train-mazes 5 --trajectories 4 --out data/maze16
    pc-transformers generate minatar --game breakout --episodes 50 --num-workers 2 --out data/breakout
    pc-transformers demo --out outputs/demo
    pc-transformers train pc_maze16 train.max_steps=500          # recipes/train.py with a ready-made config
    pc-transformers train pc_minatar_breakout                    # MinAtar: MCTS expert data, PC, eval setting
    pc-transformers finetune --checkpoint outputs/pc_maze8/final --size 16 --output_dir outputs/ft16
    pc-transformers evaluate outputs/demo/pc/final --mazes 100 --starts 5
    pc-transformers evaluate outputs/pc_minatar_breakout/final --episodes 100   # its game, eval setting
    pc-transformers push outputs/demo/pc/final --repo-id me/pc-maze16     # reads final/results.json
    pc-transformers push-dataset outputs/demo/data --repo-id me/maze16-bfs
    pc-transformers visualize outputs/demo/pc/final --maze-seed 1000000 --out figures
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path


def _add_generate(subparsers) -> None:
    generate = subparsers.add_parser("generate", help="generate expert datasets")
    domains = generate.add_subparsers(dest="domain", required=True)
    maze = domains.add_parser("maze", help="BFS expert in mazes (datasets Parquet + card)")
    maze.add_argument("--size", type=int, default=16, help="side of the square mazes (>= 5)")
    maze.add_argument("--wall-type", default="tunnel", help="tunnel, blocks, blocks:N or empty")
    maze.add_argument("--train-mazes", type=int, default=5, help="training maze seeds 0 .. N-1")
    maze.add_argument("--test-mazes", type=int, default=20, help="held-out maze seeds (disjoint range)")
    maze.add_argument("--trajectories", type=int, default=4, help="expert trajectories per maze")
    maze.add_argument("--procedure", default="bfs_maps", choices=["bfs_maps", "bfs_trace"])
    maze.add_argument("--max-steps", type=int, default=100, help="trajectory cap")
    maze.add_argument("--seed", type=int, default=0, help="seeds the random starts")
    maze.add_argument("--out", required=True, help="output directory")
    minatar = domains.add_parser("minatar", help="MCTS expert in a MinAtar game (datasets Parquet + card; needs the "
                                                 "minatar extra)")
    from .data.minatar_dataset import add_generate_arguments

    add_generate_arguments(minatar)


def _generate(args) -> None:
    if args.domain == "maze":
        _generate_maze(args)
    else:
        _generate_minatar(args)


def _generate_minatar(args) -> None:
    from .data.minatar_dataset import (
        config_from_arguments,
        generate_minatar_dataset,
        save_minatar_dataset,
    )

    config = config_from_arguments(args)
    dataset = generate_minatar_dataset(config, progress=sys.stderr.isatty())
    out = save_minatar_dataset(dataset, args.out, config)
    train = dataset["train"]
    returns = [r for r, s in zip(train["episode_return"], train["step"]) if s == 0]
    shard = f" (shard {config.shard_index} of {config.num_shards})" if config.num_shards > 1 else ""
    print(f"wrote {len(train)} expert decisions from {len(returns)} {config.game} episodes{shard} to {out}; expert "
          f"mean return {sum(returns) / len(returns):.2f}")


def _generate_maze(args) -> None:
    from .data import MazeDataConfig, generate_maze_dataset, save_maze_dataset

    config = MazeDataConfig(
        size=args.size, wall_type=args.wall_type, train_mazes=args.train_mazes, test_mazes=args.test_mazes,
        trajectories=args.trajectories, procedure_format=args.procedure, max_steps=args.max_steps, seed=args.seed,
    )
    dataset = generate_maze_dataset(config)
    out = save_maze_dataset(dataset, args.out, config)
    counts = {split: len(ds) for split, ds in dataset.items()}
    print(f"wrote {counts} expert decisions to {out}")


def _field_help(cls) -> dict[str, str]:
    """``name: text`` lines of a dataclass docstring's ``Args:`` section, for ``--help``."""
    lines = (cls.__doc__ or "").split("Args:", 1)[-1].splitlines()
    return {name.strip(): text.strip() for name, _, text in (line.partition(":") for line in lines) if text}


def _add_demo(subparsers) -> None:
    from .demo import DemoConfig

    demo = subparsers.add_parser("demo", help="the small end-to-end maze demo: data, PC and BC, unseen mazes",
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    helps = _field_help(DemoConfig)
    for field in fields(DemoConfig):
        demo.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=field.default,
                          help=helps.get(field.name, " "))


def _add_evaluate(subparsers) -> None:
    from .evaluation import add_evaluate_arguments

    evaluate = subparsers.add_parser("evaluate", help="roll a PCPolicy checkpoint out on held-out mazes or "
                                                           "MinAtar episodes")
    add_evaluate_arguments(evaluate)


def _add_push(subparsers) -> None:
    push = subparsers.add_parser("push", help="upload a PCPolicy checkpoint with a generated model card to the Hub")
    push.add_argument("checkpoint", help="directory written by PCPolicy.save_pretrained")
    push.add_argument("--results", help="results JSON (pc-transformers evaluate --json-out, the demo's results.json; "
                                        "default: CHECKPOINT/results.json when a training run wrote one)")
    push.add_argument("--dataset-id", help="Hub dataset the policy was trained on (linked in the card)")
    push_dataset = subparsers.add_parser("push-dataset", help="upload an expert dataset directory to the Hub")
    push_dataset.add_argument("data_dir", help="directory written by pc-transformers generate maze / minatar")
    for parser in (push, push_dataset):
        parser.add_argument("--repo-id", required=True, help="NAMESPACE/NAME of the Hub repository")
        parser.add_argument("--token", help="Hugging Face token (default: HF_TOKEN or the `hf auth login` token)")
        parser.add_argument("--private", action="store_true", help="create the repository as private")


def _push(args) -> None:
    from .hub import push_checkpoint, push_dataset, read_results, results_for

    if args.command == "push-dataset":
        url = push_dataset(args.data_dir, args.repo_id, token=args.token, private=args.private)
    else:
        evaluation = training = curve = None
        if args.results is None and (Path(args.checkpoint) / "results.json").is_file():
            args.results = Path(args.checkpoint) / "results.json"
        if args.results:
            config_file = Path(args.checkpoint) / "config.json"
            objective = json.loads(config_file.read_text()).get("objective") if config_file.is_file() else None
            results = read_results(args.results)
            if "mean_return" in results:  # a MinAtar run (recipes/train.py, domain: minatar): returns
                evaluation = {k: v for k, v in results.items()
                              if k not in ("training", "evaluations", "returns", "seeds")}
                training, curve = results.get("training"), results.get("evaluations")
            else:
                evaluation, training, curve = results_for(results, objective)
        url = push_checkpoint(args.checkpoint, args.repo_id, token=args.token, private=args.private,
                              eval_results=evaluation, training=training, dataset_id=args.dataset_id,
                              curve=curve)
    print(f"pushed to {args.repo_id}: {url}")


def _add_recipes(subparsers) -> None:
    train = subparsers.add_parser("train", help="recipes/train.py: train a policy from a YAML config (Accelerate)")
    train.add_argument("config", help="a YAML file, or a ready-made config name (pc_maze8, bc_maze16, "
                                      "pc_minatar_breakout, ...)")
    train.add_argument("--resume", action="store_true", help="continue from {output_dir}/checkpoints/last")
    train.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.max_steps=100")
    finetune = subparsers.add_parser("finetune", add_help=False,
                                     help="recipes/finetune_trainer.py: fine-tune a checkpoint with transformers.Trainer")
    finetune.add_argument("arguments", nargs=argparse.REMAINDER, help="the recipe's arguments (see --help)")


def _add_visualize(subparsers) -> None:
    visualize = subparsers.add_parser("visualize", help="PNG and GIF of a policy's procedure and path in one maze")
    visualize.add_argument("checkpoint", help="a PCPolicy directory (e.g. outputs/demo/pc/final)")
    visualize.add_argument("--maze-seed", type=int, required=True, help="maze seed (held-out seeds start at 1000000)")
    visualize.add_argument("--wall-type", default="tunnel", help="maze generator of that seed")
    visualize.add_argument("--start-seed", type=int, default=0, help="seeds the random start")
    visualize.add_argument("--max-steps", type=int, default=100, help="episode cap")
    visualize.add_argument("--out", default="figures", help="output directory")


def _run_recipe(args) -> int:
    from .recipes import config_path, load_recipe

    if args.command == "finetune":
        return load_recipe("finetune_trainer").cli(args.arguments)
    options = ["--resume"] if args.resume else []
    return load_recipe("train").cli(["--config", str(config_path(args.config)), *options, *args.overrides])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pc-transformers",
                                     description="Procedure cloning in mazes and MinAtar: expert data, training, "
                                                 "evaluation, Hub.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_generate(subparsers)
    _add_demo(subparsers)
    _add_evaluate(subparsers)
    _add_push(subparsers)
    _add_recipes(subparsers)
    _add_visualize(subparsers)
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "finetune":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "finetune":
        args.arguments = [*unknown, *args.arguments]
    try:
        if args.command == "generate":
            _generate(args)
        elif args.command == "demo":
            from .demo import DemoConfig, run_demo

            config = DemoConfig(**{f.name: getattr(args, f.name) for f in fields(DemoConfig)})
            print(json.dumps(run_demo(config), indent=2))
        elif args.command == "evaluate":
            from .evaluation import format_table, run_evaluation

            options = {k: v for k, v in vars(args).items() if k != "command"}
            print(format_table(run_evaluation(**options, progress=sys.stderr.isatty())))
        elif args.command == "visualize":
            from .visualize import visualize

            png, gif = visualize(args.checkpoint, args.maze_seed, out_dir=args.out, wall_type=args.wall_type,
                                 start_seed=args.start_seed, max_steps=args.max_steps)
            print(f"wrote {png} and {gif}")
        elif args.command in ("train", "finetune"):
            return _run_recipe(args)
        elif args.command in ("push", "push-dataset"):
            try:
                _push(args)
            except RuntimeError as error:  # the Hub refused the push (the message names the repository)
                raise ValueError(str(error)) from error
    # OSError: also from_pretrained on a missing checkpoint; ImportError: an extra that is not installed (minatar)
    except (ValueError, TypeError, OSError, ImportError) as error:
        print(f"pc-transformers {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
