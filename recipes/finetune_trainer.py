"""Fine-tune a pretrained policy with `transformers.Trainer`: e.g. from 8x8 to 16x16 mazes, or to a new wall type.

    python recipes/finetune_trainer.py --checkpoint outputs/pc_maze8/final --size 16 --output_dir outputs/ft_maze16 \
        --max_steps 500 --per_device_train_batch_size 16 --learning_rate 1e-3
    pc-transformers finetune --checkpoint outputs/pc_maze8/final --wall_type blocks --output_dir outputs/ft_blocks
    accelerate launch recipes/finetune_trainer.py ...      # Trainer runs on Accelerate: the same multi-process setup

Every `TrainingArguments` option is accepted (``--help`` lists them). The recipe:

1. loads the checkpoint with ``AutoModelForCausalLM.from_pretrained`` (``grid_size`` overridden by ``--size``: the
   relative-2D attention has no size-dependent weights, so a model trained on 8x8 mazes runs on 16x16 ones) and its
   tokenizer with ``AutoTokenizer``;
2. generates BFS expert data for the new setting (or reads ``--dataset``) and tokenizes it with the package's
   `build_examples` for the model's objective;
3. rolls the policy out on unseen mazes of the new setting before ("zero_shot") and after fine-tuning;
4. trains with `Trainer` and `PCDataCollator` (the model computes its own loss from ``labels``);
5. saves the policy (``PCPolicy.save_pretrained``) to ``{output_dir}/final`` with ``results.json``.
"""

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    HfArgumentParser,
    Trainer,
    TrainingArguments,
)

from pc_transformers.data import (
    MazeDataConfig,
    PCDataCollator,
    build_examples,
    generate_maze_dataset,
    load_maze_dataset,
    save_maze_dataset,
)
from pc_transformers.envs import maze_splits
from pc_transformers.evaluation import evaluate_policy
from pc_transformers.policy import PCPolicy


@dataclass
class FinetuneArguments:
    checkpoint: str = field(metadata={"help": "a save_pretrained directory, e.g. outputs/pc_maze8/final"})
    size: int | None = field(default=None, metadata={"help": "maze side to fine-tune on (default: the checkpoint's)"})
    wall_type: str = field(default="tunnel", metadata={"help": "maze generator: tunnel, blocks, blocks:N, empty"})
    train_mazes: int = field(default=5, metadata={"help": "training maze seeds 0 .. N-1"})
    trajectories: int = field(default=4, metadata={"help": "expert trajectories per training maze"})
    dataset: str | None = field(default=None, metadata={"help": "an existing dataset directory instead of generating"})
    eval_mazes: int = field(default=50, metadata={"help": "unseen test mazes for the before/after evaluation (0: none)"})
    eval_starts: int = field(default=2, metadata={"help": "random starts per test maze"})
    eval_max_steps: int = field(default=100, metadata={"help": "episode cap"})


def load_model(args: FinetuneArguments):
    """The pretrained model, resized to ``args.size`` when that differs from its ``grid_size``."""
    model = AutoModelForCausalLM.from_pretrained(args.checkpoint)
    config = model.config
    if args.size is not None and args.size != config.grid_size:
        if not config.is_grid or config.position_encoding != "relative_2d":
            raise ValueError(f"--size {args.size}: only grid models with relative_2d positions change maze size "
                             f"(this one has procedure_format={config.procedure_format!r}, "
                             f"position_encoding={config.position_encoding!r}, grid_size={config.grid_size})")
        model = AutoModelForCausalLM.from_pretrained(args.checkpoint, grid_size=args.size)
    model.config.use_cache = True
    return model, AutoTokenizer.from_pretrained(args.checkpoint)


def rollouts(model, tokenizer, args: FinetuneArguments, seed: int) -> dict | None:
    if not args.eval_mazes:
        return None
    policy = PCPolicy(model, tokenizer, seed=seed)
    metrics = evaluate_policy(policy, maze_splits(0, args.eval_mazes).test, size=model.config.grid_size,
                              wall_type=args.wall_type, starts_per_maze=args.eval_starts,
                              max_steps=args.eval_max_steps, seed=seed)
    model.train()
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in metrics.items()}


def main(args: FinetuneArguments, training_args: TrainingArguments) -> dict:
    model, tokenizer = load_model(args)
    config = model.config
    out = Path(training_args.output_dir)
    if args.dataset is not None:
        dataset = load_maze_dataset(args.dataset)
    else:
        data_config = MazeDataConfig(size=config.grid_size, wall_type=args.wall_type, train_mazes=args.train_mazes,
                                     test_mazes=0, trajectories=args.trajectories,
                                     procedure_format=config.procedure_format, seed=training_args.seed)
        dataset = generate_maze_dataset(data_config)
        if training_args.process_index == 0:
            save_maze_dataset(dataset, out / "data", data_config)
    examples = build_examples(dataset["train"], tokenizer, config)

    results = {"checkpoint": args.checkpoint, "size": config.grid_size, "wall_type": args.wall_type,
               "mazes": args.eval_mazes, "starts": args.eval_starts, "max_steps": args.eval_max_steps,
               "objective": config.objective}
    zero_shot = rollouts(model, tokenizer, args, training_args.seed) if training_args.process_index == 0 else None
    trainer = Trainer(model=model, args=training_args, train_dataset=examples, processing_class=tokenizer,
                      data_collator=PCDataCollator(tokenizer.pad_token_id))
    train_output = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    if not trainer.is_world_process_zero():
        return {}
    model = trainer.model
    model.config.use_cache = True  # Trainer stores use_cache=False; generation should use the cache
    after = rollouts(model, tokenizer, args, training_args.seed)
    results.update(after or {})
    results["zero_shot"] = zero_shot
    results["training"] = {"finetuned_from": args.checkpoint, **asdict(args), "steps": train_output.global_step,
                           "train_loss": train_output.training_loss,
                           "train_seconds": round(train_output.metrics["train_runtime"], 1),
                           "learning_rate": training_args.learning_rate,
                           "batch_size": training_args.per_device_train_batch_size * training_args.world_size}
    final = out / "final"
    PCPolicy(model, tokenizer, seed=training_args.seed).save_pretrained(final)
    (final / "results.json").write_text(json.dumps(results, indent=2))
    if after:
        before = f"{zero_shot['success_rate']:.1%}" if zero_shot else "n/a"
        print(f"success on {args.eval_mazes} unseen {config.grid_size}x{config.grid_size} {args.wall_type} mazes x "
              f"{args.eval_starts} starts: {before} zero-shot -> {after['success_rate']:.1%} after "
              f"{train_output.global_step} steps; saved to {final}")
    return results


def cli(argv=None) -> int:
    parser = HfArgumentParser((FinetuneArguments, TrainingArguments), description=__doc__.split("\n\n")[0])
    args, training_args = parser.parse_args_into_dataclasses(args=argv)
    try:
        main(args, training_args)
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"finetune_trainer: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
