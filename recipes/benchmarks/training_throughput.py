"""Training throughput of a recipe config, counted in the units the original implementation reports.

    python recipes/benchmarks/training_throughput.py --config pc_maze16 \
        dataset=outputs/benchmarks/maze16_aug/data/maze16_train5_dihedral --steps 40 --threads 2
    python recipes/benchmarks/training_throughput.py --config pc_maze16 --mixed-precision bf16
    accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no \
        recipes/benchmarks/training_throughput.py --config pc_maze16 --threads 1   # data parallel, as train.py

It runs the training loop of ``recipes/train.py`` (its ``build_training``: data, model, AdamW, schedule, mixed
precision, gradient accumulation and ``train.keep_freed_memory``; its batch sampler and ``train_step``) for
``--warmup`` + ``--steps`` optimizer steps, with no evaluation or checkpointing, and reports:

- ``sequences_per_s``: training sequences (one expert decision each: state, procedure, action);
- ``map_pairs_per_s`` (grid procedures): procedure maps predicted per second. Each map is predicted from the block
  before it (the state for map 0), which is the original implementation's example, "one map-to-map pair";
- ``tokens_per_s``: non-padding tokens per second;
- the median and spread of the step times, since this machine is shared and noisy;
- ``keep_freed_memory`` (the config's switch) and ``freed_memory_kept`` (whether it took effect: not where the
  environment preloads an allocator or sets malloc's thresholds, see ``pc_transformers/memory.py``).

Quote ratios measured in the same run, and the hardware (printed) with every absolute figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time

import torch
from accelerate import DataLoaderConfiguration, PartialState

from pc_transformers.data import PCDataCollator
from pc_transformers.recipes import config_path, load_recipe


def map_blocks(input_ids: torch.Tensor, config) -> int:
    """Procedure maps in a batch of grid sequences: ``<s> state <proc> (map <step>)* map <act> a </s>``."""
    if not config.is_grid:
        return 0
    act = (input_ids == config.act_token_id).float().argmax(dim=1)  # (B,) position of <act>
    return int(((act - (config.num_cells + 1)) // (config.num_cells + 1)).sum())


def measure(config, steps: int, warmup: int) -> dict:
    """Time ``warmup + steps`` optimizer steps of ``recipes/train.py`` (its `build_training` and `train_step`, with
    the config's gradient accumulation and mixed precision); the first ``warmup`` are not counted.

    Under ``accelerate launch`` (or torchrun) with several processes, the global batches are split across them as in
    ``recipes/train.py``; the counts are summed over the processes, and the time is process 0's (the processes wait
    for each other at every gradient all-reduce)."""
    train = load_recipe("train")
    if config.domain != "maze":
        raise ValueError(f"domain={config.domain!r}: this benchmark counts map pairs of maze procedures")
    args = config.train
    run = train.build_training(config, dataloader_config=DataLoaderConfiguration(split_batches=True))
    accelerator, accumulation = run.accelerator, args.gradient_accumulation_steps
    sampler = train.StepBatchSampler(len(run.examples), run.micro_batch, (warmup + steps) * accumulation, config.seed)
    # Collated and split outside the timed region, like a loader worker.
    loader = accelerator.prepare(torch.utils.data.DataLoader(
        run.examples, batch_sampler=sampler, collate_fn=PCDataCollator(run.tokenizer.pad_token_id)))
    run.model.train()
    times, counts = [], torch.zeros(3, dtype=torch.long)  # sequences, map pairs, tokens
    elapsed = 0.0
    for micro_step, batch in enumerate(loader, start=1):
        start = time.perf_counter()
        train.train_step(run.model, batch, accelerator, run.optimizer, run.scheduler, args.max_grad_norm)
        elapsed += time.perf_counter() - start
        if micro_step <= warmup * accumulation:
            elapsed = 0.0
            continue
        counts += torch.tensor([len(batch["input_ids"]), map_blocks(batch["input_ids"], run.model_config),
                                int(batch["attention_mask"].sum())])
        if micro_step % accumulation == 0:  # an optimizer step is complete
            times.append(elapsed)
            elapsed = 0.0
    sequences, pairs, tokens = accelerator.reduce(counts.to(accelerator.device), "sum").tolist()
    train.leave_together(accelerator)
    seconds = sum(times)
    return {
        "steps": steps, "batch_size": args.batch_size, "gradient_accumulation_steps": accumulation,
        "processes": accelerator.num_processes,
        "mixed_precision": args.mixed_precision, "keep_freed_memory": args.keep_freed_memory,
        "freed_memory_kept": run.freed_memory_kept,  # whether it took effect (see pc_transformers.memory)
        "sequences_per_s": sequences / seconds, "map_pairs_per_s": pairs / seconds, "tokens_per_s": tokens / seconds,
        "map_pairs_per_sequence": pairs / sequences, "seconds": seconds,
        "step_ms_median": 1000 * statistics.median(times),
        "step_ms_quartiles": [1000 * q for q in statistics.quantiles(times, n=4)] if len(times) > 1 else None,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="pc_maze16", help="a recipe config (file or ready-made name)")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, as for recipes/train.py")
    parser.add_argument("--steps", type=int, default=40, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--mixed-precision", default=None, choices=["no", "bf16", "fp16"],
                        help="override the config's train.mixed_precision")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="write the figures to this JSON file")
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after the options
    for name, value in (("--steps", args.steps), ("--warmup", args.warmup)):
        if value < (1 if name == "--steps" else 0):
            raise SystemExit(f"{name} must be {'≥ 1' if name == '--steps' else '≥ 0'}, got {value}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    train = load_recipe("train")
    config = train.load_config(config_path(args.config), args.overrides)
    if args.mixed_precision is not None:
        config.train = dataclasses.replace(config.train, mixed_precision=args.mixed_precision)
    result = measure(config, args.steps, args.warmup)
    state = PartialState()  # the processes' shared state, set up by measure's Accelerator
    result["hardware"] = {"machine": platform.machine(), "processor": platform.processor() or None,
                          "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),  # per process
                          "torch": torch.__version__, "cuda": torch.cuda.get_device_name() if torch.cuda.is_available()
                          else None}
    result["config"] = str(args.config)
    if state.is_main_process:
        print(json.dumps(result, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
