"""Train a procedure-cloning (PC), BC or aux-BC policy (mazes or MinAtar) with Accelerate, from one typed YAML config.

    accelerate launch recipes/train.py --config recipes/configs/pc_maze16.yaml
    accelerate launch recipes/train.py --config recipes/configs/pc_minatar_breakout.yaml
    accelerate launch --multi_gpu --num_processes 2 recipes/train.py --config recipes/configs/pc_maze8.yaml
    python recipes/train.py --config recipes/configs/bc_maze8.yaml train.max_steps=100 output_dir=outputs/try
    python recipes/train.py --config recipes/configs/pc_maze16.yaml --resume   # continue from the last checkpoint
    pc-transformers train recipes/configs/pc_maze16.yaml                        # the same script, installed

The config (`TrainConfig`, in `pc_transformers.training_config`; ``key.sub=value`` arguments override it) names the
domain, the expert data (generated here from ``data`` or ``minatar``, or an existing ``dataset`` directory), the model
(`PCConfig` fields), the optimization and the evaluation.

Two domains (``domain:``):

* ``maze`` (default): BFS-expert data from the ``data:`` section (`MazeDataConfig`); rollouts report the success
  rate (95% Wilson interval) on held-out mazes.
* ``minatar``: MCTS-expert data from the ``minatar:`` section (`MinAtarDataConfig`: game, setting, episodes, MCTS
  settings; generated in ``minatar.num_workers`` processes) instead of ``data:``. The tokenizer is
  ``PCTokenizer.for_minatar`` (rewards up to the data's largest), the model gets the game's ``num_channels`` and
  ``num_actions``; PC examples are ``state <proc> MCTS tokens <act> a``, BC examples ``state <act> a``, and PC
  decodes the procedure token by token with the KV cache (`MinAtarPolicy`). Validation rollouts are played in the
  data's setting (``"train"``: no sticky actions, no difficulty ramp) on ``eval.episodes`` validation seeds (from
  2,000,000; up to ``eval.random_starts`` random actions first, to vary the start); the final evaluation in the
  *unseen* ``"eval"`` setting (sticky actions 0.1, ramping on) on ``eval.final_episodes`` evaluation seeds (from
  1,000,000), both capped at ``eval.max_steps`` policy steps. They report
  the mean return with a 95% Student-t interval over episodes, and ms and forward passes per decision
  (`pc_transformers.evaluation_minatar`); ``eval.keep_best`` keeps the best validation mean return.

The run:

1. generates or loads the expert dataset (process 0 first; the others read its files; `pc_transformers.training_data`);
2. trains with AdamW, data-parallel over the launched processes (GPUs, or CPU processes over gloo when there is no
   GPU: `accelerate launch --cpu` starts one process whatever ``--num_processes`` says, see the README);
   ``train.batch_size`` is the global batch per optimizer step, split across processes and gradient-accumulation
   micro-steps, and the data order is a function of (seed, step) only, so it is the same for any number of
   processes and after ``--resume``;
3. logs ``train/…``, ``eval/…`` and ``perf/…`` scalars to TensorBoard (``{output_dir}/runs``) and shows a progress bar;
4. every ``eval.every`` steps rolls the policy out on held-out *validation* mazes or episodes (seeds from 2,000,000);
5. every ``save_every`` steps writes ``{output_dir}/checkpoints/step_XXXXXX/`` atomically (written under a temporary
   name, then renamed; `pc_transformers.training_checkpoints`): ``policy/`` (``save_pretrained``: safetensors,
   tokenizer, config), ``state/`` (``accelerator.save_state``: optimizer, scheduler, RNG states), ``train_config.yaml``
   (the resolved config) and ``trainer_state.json``; ``checkpoints/last`` names the newest complete one. With
   ``train.ema_decay``, an exponential moving average of the weights is kept (`torch.optim.swa_utils.AveragedModel`);
   it is what is validated and what ``policy/``, ``best/`` and ``final/`` hold, and ``--resume`` reads it back from
   ``policy/``;
6. with ``eval.keep_best``, keeps the weights of the best validation evaluation in ``checkpoints/best/`` (written
   atomically too) and ends with them, as ``load_best_model_at_end`` does in transformers' Trainer;
7. at the end evaluates on unseen *test* mazes or evaluation episodes (seeds from 1,000,000) and saves
   ``{output_dir}/final/`` (the policy, ``train_config.yaml``, ``results.json``); with ``push_to_hub: NAME`` it
   uploads that with a generated model card.
"""

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DataLoaderConfiguration
from accelerate.utils import broadcast_object_list, set_seed
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm
from transformers import get_scheduler

from pc_transformers import PCConfig, PCForProcedureCloning, PCTokenizer
from pc_transformers.data import PCDataCollator, build_examples, build_minatar_examples
from pc_transformers.envs import maze_splits
from pc_transformers.envs.minatar import episode_seeds
from pc_transformers.evaluation import evaluate_policy, json_safe
from pc_transformers.evaluation_minatar import evaluate_minatar_policy
from pc_transformers.memory import keep_freed_memory
from pc_transformers.training_checkpoints import (
    last_checkpoint,
    load_best,
    load_checkpoint,
    save_best,
    save_checkpoint,
)
from pc_transformers.training_config import (  # noqa: F401  (re-exported: callers use recipe.TrainConfig, ...)
    METRICS,
    EvalArgs,
    OptimArgs,
    TrainConfig,
    hparams,
    load_config,
    save_config,
    typed,
)
from pc_transformers.training_data import StepBatchSampler, load_data, tokenizer_and_model_config

LOSSES = ("loss", "procedure_loss", "action_loss")  # logged as train/{name}


# ------------------------------------------------------------------------------------------------------ training
def new_window() -> dict:
    """What is summed between two log steps: losses, examples, tokens, and when the window started."""
    return {"loss": [], "procedure_loss": [], "action_loss": [], "examples": 0, "tokens": 0,
            "start": time.perf_counter()}


def train_step(model, batch, accelerator, optimizer, scheduler, max_grad_norm: float):
    """One micro-step; the optimizer steps when Accelerate has accumulated a full batch."""
    with accelerator.accumulate(model):
        # No logits: the model computes its losses from the positions that have a target, so the (B, T, V) logits
        # would be projected (and under mixed precision cast to float32 by Accelerate) only to be dropped.
        outputs = model(**batch, logits_to_keep=batch["input_ids"].new_zeros(0))
        accelerator.backward(outputs.loss)
        if accelerator.sync_gradients and max_grad_norm > 0:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    return outputs


def rollouts(accelerator, model, tokenizer, config: TrainConfig, final: bool = False) -> dict:
    """The current weights on validation (or, ``final``, unseen test) mazes or episodes (process 0 rolls out; the
    others wait). MinAtar: validation in the data's setting, the final evaluation in the unseen "eval" setting."""
    metrics, cfg = {}, config.eval
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        policy = config.policy_class(unwrapped, tokenizer, seed=config.seed)
        if config.domain == "minatar":
            setting, seeds = ("eval", episode_seeds("eval", cfg.final_episodes)) if final else (
                config.minatar.setting, episode_seeds("validation", cfg.episodes))
            metrics = evaluate_minatar_policy(policy, config.minatar.game, setting, seeds, max_steps=cfg.max_steps,
                                              batch_size=cfg.batch_size or None,
                                              random_start_steps=0 if final else cfg.random_starts)
        else:
            seeds = maze_splits(0, cfg.final_mazes).test if final else maze_splits(
                0, 0, num_validation=cfg.mazes).validation
            metrics = evaluate_policy(policy, seeds, size=config.data.size, wall_type=config.data.wall_type,
                                      starts_per_maze=cfg.final_starts if final else cfg.starts,
                                      max_steps=cfg.max_steps, seed=config.seed, batch_size=cfg.batch_size or None)
        unwrapped.train()
    accelerator.wait_for_everyone()
    if accelerator.num_processes > 1:  # every process takes the same keep_best decision (save_best waits for all)
        metrics = broadcast_object_list([metrics])[0]
    return metrics


@dataclasses.dataclass
class Training:
    """What a training run is made of (`build_training`): the prepared model, optimizer and scheduler, and the data."""

    accelerator: Accelerator
    dataset: object  # the DatasetDict the examples were built from
    tokenizer: PCTokenizer
    model_config: PCConfig
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    examples: list
    micro_batch: int  # examples per micro-step (all processes): batch_size // gradient_accumulation_steps
    ema: AveragedModel | None = None  # train.ema_decay > 0: the moving average of the weights (ema.module)
    # train.keep_freed_memory took effect: CPU training, and `keep_freed_memory` applied (the environment had not
    # chosen an allocator or malloc settings itself)
    freed_memory_kept: bool = False

    @property
    def evaluated(self) -> torch.nn.Module:
        """The weights that are validated, kept and saved: the moving average if there is one, else the model."""
        return self.model if self.ema is None else self.ema.module


def build_training(config: TrainConfig, **accelerator_kwargs) -> Training:
    """The Accelerator (``config.train``'s mixed precision and gradient accumulation, plus ``accelerator_kwargs``),
    the seeded model, AdamW, the learning-rate schedule, the weights' moving average (``train.ema_decay``) and the
    tokenized examples; `main` trains with them and
    ``recipes/benchmarks/training_throughput.py`` times them."""
    args = config.train
    accelerator = Accelerator(
        # Without a GPU, ask for CPU explicitly: Accelerate then forms a gloo process group when launched with
        # several processes (`accelerate launch --multi_gpu --num_processes 2` or torchrun); see the README.
        cpu=not torch.accelerator.is_available(),
        mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.gradient_accumulation_steps,
        **accelerator_kwargs,
    )
    freed_memory_kept = bool(args.keep_freed_memory and accelerator.device.type == "cpu" and keep_freed_memory())
    if args.batch_size % (args.gradient_accumulation_steps * accelerator.num_processes):
        raise ValueError(f"train.batch_size={args.batch_size} must be divisible by gradient_accumulation_steps "
                         f"({args.gradient_accumulation_steps}) x processes ({accelerator.num_processes})")
    set_seed(config.seed)
    with accelerator.main_process_first():
        dataset = load_data(config)
    tokenizer, model_config = tokenizer_and_model_config(config, dataset["train"])
    model = PCForProcedureCloning(model_config)
    with accelerator.main_process_first():
        build = build_minatar_examples if config.domain == "minatar" else build_examples
        examples = build(dataset["train"], tokenizer, model_config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scheduler = get_scheduler(args.lr_scheduler, optimizer, num_warmup_steps=args.warmup_steps,
                              num_training_steps=args.max_steps)
    ema = None if args.ema_decay == 0 else AveragedModel(model, device=accelerator.device,
                                                         multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay))
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    return Training(accelerator, dataset, tokenizer, model_config, model, optimizer, scheduler, examples,
                    args.batch_size // args.gradient_accumulation_steps, ema, freed_memory_kept)


def main(config: TrainConfig, resume: bool = False) -> dict:
    """Train, evaluate and save as described in the module docstring; returns the final results."""
    args, out = config.train, Path(config.output_dir)
    checkpoint = last_checkpoint(config) if resume else None
    run = build_training(
        config, log_with=None if config.report_to == "none" else config.report_to, project_dir=str(out / "runs"),
        dataloader_config=DataLoaderConfiguration(split_batches=True),  # global batches, split across processes
    )
    accelerator, dataset, tokenizer, model = run.accelerator, run.dataset, run.tokenizer, run.model
    optimizer, scheduler, examples, micro_batch = run.optimizer, run.scheduler, run.examples, run.micro_batch
    evaluated = run.evaluated  # the moving average of the weights (train.ema_decay), or the model itself

    state = {"step": 0, "train_seconds": 0.0, "examples": 0, "tokens": 0, "evaluations": []}
    if checkpoint is not None:
        state = load_checkpoint(accelerator, checkpoint, run.ema)
        accelerator.print(f"resuming from {checkpoint} (step {state['step']})")
    micro_steps = args.max_steps * args.gradient_accumulation_steps
    sampler = StepBatchSampler(len(examples), micro_batch, micro_steps, config.seed,
                               start=state["step"] * args.gradient_accumulation_steps)
    # Its own generator: creating an iterator draws a seed from it, which must not shift the global (dropout) RNG
    # between an uninterrupted run and a resumed one.
    loader = torch.utils.data.DataLoader(examples, batch_sampler=sampler, generator=torch.Generator().manual_seed(
        config.seed), collate_fn=PCDataCollator(tokenizer.pad_token_id))
    loader = accelerator.prepare(loader)

    setting = (f"minatar-{config.minatar.game}" if config.domain == "minatar"
               else f"maze{config.data.size}-{config.data.wall_type}")
    run_name = config.run_name or f"{config.objective}-{setting}-seed{config.seed}"
    accelerator.init_trackers(run_name, config=hparams(config))
    bar = tqdm(total=args.max_steps, initial=state["step"], desc=f"train {config.objective}",
               disable=not accelerator.is_local_main_process)
    window = new_window()
    model.train()
    for micro_step, batch in enumerate(loader, start=sampler.start + 1):
        outputs = train_step(model, batch, accelerator, optimizer, scheduler, args.max_grad_norm)
        for name in LOSSES:
            value = getattr(outputs, name)
            if value is not None:
                window[name].append(value.detach())
        counts = accelerator.reduce(torch.stack([batch["attention_mask"].new_tensor(len(batch["input_ids"])),
                                                 batch["attention_mask"].sum()]), "sum")
        window["examples"] += int(counts[0])
        window["tokens"] += int(counts[1])
        if micro_step % args.gradient_accumulation_steps:
            continue
        state["step"] += 1
        step = state["step"]
        if run.ema is not None:
            run.ema.update_parameters(accelerator.unwrap_model(model))
        is_log_step = step % config.log_every == 0 or step == args.max_steps
        is_eval_step = config.eval.every > 0 and step % config.eval.every == 0
        is_save_step = (config.save_every > 0 and step % config.save_every == 0) or step == args.max_steps
        bar.update(1)
        if is_log_step:
            seconds = time.perf_counter() - window["start"]
            logs = {f"train/{name}": accelerator.reduce(torch.stack(window[name]), "mean").mean().item()
                    for name in LOSSES if window[name]}
            logs.update({"train/learning_rate": scheduler.get_last_lr()[0],
                         "perf/examples_per_s": window["examples"] / seconds,
                         "perf/tokens_per_s": window["tokens"] / seconds})
            accelerator.log(logs, step=step)
            bar.set_postfix(loss=f"{logs['train/loss']:.4f}", ex_s=f"{logs['perf/examples_per_s']:.0f}")
            state["train_seconds"] += seconds
            state["examples"] += window["examples"]
            state["tokens"] += window["tokens"]
            window = new_window()
        if is_eval_step:
            metrics = rollouts(accelerator, evaluated, tokenizer, config)
            if metrics:
                names = (("success_rate", "mean_length_ratio") if config.domain == "maze"
                         else ("mean_return", "mean_length", "ms_per_decision"))
                accelerator.log({f"eval/{name}": metrics[name] for name in names}, step=step)
                value = metrics[config.metric]
                state["evaluations"].append({"step": step, "train_seconds": state["train_seconds"],
                                             config.metric: value})
                if accelerator.is_local_main_process:  # every process has the metrics (rollouts broadcasts them)
                    bar.write(f"step {step}: validation success {value:.1%}" if config.domain == "maze" else
                              f"step {step}: validation mean return {value:.2f} ({len(metrics['returns'])} episodes)")
                best = state.get("best")
                if config.eval.keep_best and (best is None or value > best[config.metric]):
                    save_best(accelerator, evaluated, tokenizer, config, state, value)
        if is_save_step:
            save_checkpoint(accelerator, evaluated, tokenizer, config, state)
        if is_log_step or is_eval_step or is_save_step:
            window["start"] = time.perf_counter()  # throughput excludes evaluation and checkpoint time
    bar.close()
    results = finish(accelerator, evaluated, tokenizer, config, state, dataset["train"])
    leave_together(accelerator)
    return results


def leave_together(accelerator) -> None:
    """End a run's processes together: a process that tears the (gloo) group down while process 0 still writes
    (``final/``, a benchmark's JSON) can leave the other one waiting forever at exit."""
    accelerator.wait_for_everyone()
    accelerator.end_training()  # closes the trackers and the process group
    if accelerator.num_processes > 1:
        # The gloo group itself is freed with the DDP wrapper that holds it, when the caller's locals go, and its
        # destructor joins gloo's worker threads while holding the GIL. A worker may still be releasing the last
        # collective's tensors, which takes the GIL: a deadlock, seen as a run that never exits (py-spy: main thread
        # in ~ProcessGroupGloo -> thread::join, worker in ~AsyncWork -> gil_scoped_acquire). Sleeping releases the
        # GIL so that the worker finishes first.
        time.sleep(0.5)


def finish(accelerator, model, tokenizer, config: TrainConfig, state: dict, train) -> dict:
    """Final evaluation on unseen test mazes (MinAtar: episodes in the eval setting); saves ``final/`` and pushes it
    when configured."""
    results = {}
    load_best(accelerator, model, config, state)
    minatar = config.domain == "minatar"
    if config.eval.final_episodes if minatar else config.eval.final_mazes:
        results = rollouts(accelerator, model, tokenizer, config, final=True)
    if not accelerator.is_main_process:
        return results
    final = Path(config.output_dir) / "final"
    shutil.rmtree(final, ignore_errors=True)
    config.policy_class(accelerator.unwrap_model(model), tokenizer, seed=config.seed).save_pretrained(final)
    save_config(config, final / "train_config.yaml")
    data = ({"game": config.minatar.game, "setting": config.minatar.setting,
             "episodes": len(set(train["episode"])), "decisions": len(train)} if minatar else
            {"train_mazes": config.data.train_mazes, "trajectories": config.data.trajectories,
             "size": config.data.size, "wall_type": config.data.wall_type, "augment": config.data.augment})
    training = {"objective": config.objective, "steps": state["step"], "batch_size": config.train.batch_size,
                "learning_rate": config.train.learning_rate, **data, "train_seconds": round(state["train_seconds"], 1),
                "examples_per_s": round(state["examples"] / max(state["train_seconds"], 1e-9), 1),
                "tokens_per_s": round(state["tokens"] / max(state["train_seconds"], 1e-9), 1),
                "processes": accelerator.num_processes,
                "selected_step": (state.get("best") or {}).get("step", state["step"]) if config.eval.keep_best
                else state["step"],
                "hardware": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"}
    if minatar:
        results = {"game": config.minatar.game, "setting": "eval", "episodes": config.eval.final_episodes,
                   "max_steps": config.eval.max_steps, "objective": config.objective, **results}
    else:
        results = {"mazes": config.eval.final_mazes, "starts": config.eval.final_starts,
                   "wall_type": config.data.wall_type, "size": config.data.size, "max_steps": config.eval.max_steps,
                   "objective": config.objective, **results}
    results = json_safe({**results, "training": training, "evaluations": state["evaluations"]})
    (final / "results.json").write_text(json.dumps(results, indent=2))
    if "success_rate" in results:
        low, high = results["success_ci95"]
        print(f"{config.objective}: success {results['success_rate']:.1%} (95% CI {low:.1%}-{high:.1%}) on "
              f"{config.eval.final_mazes} unseen mazes x {config.eval.final_starts} starts; saved to {final}")
    if "mean_return" in results:
        half = results["return_ci95_half_width"]
        print(f"{config.objective}: mean return {results['mean_return']:.2f} ± "
              f"{'n/a' if half is None else f'{half:.2f}'} (95% Student-t interval) on {results['episodes']} unseen "
              f"{config.minatar.game} episodes in the eval setting (sticky actions 0.1, ramping on, at most "
              f"{config.eval.max_steps} steps); {results['ms_per_decision']:.1f} ms per decision; saved to {final}")
    if config.push_to_hub:
        from pc_transformers.hub import push_checkpoint

        evaluation = {k: v for k, v in results.items() if k not in ("training", "evaluations", "returns", "seeds")}
        url = push_checkpoint(final, config.push_to_hub, private=config.hub_private,
                              eval_results=evaluation if evaluation.keys() & set(METRICS.values()) else None,
                              training=training, curve=state["evaluations"])
        print(f"pushed {final} to {config.push_to_hub}: {url}")
    return results


def cli(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="recipes/train.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="config keys:\n" + TrainConfig.__doc__.split("Args:")[1]
                                     + "\ntrain.* keys:\n" + OptimArgs.__doc__.split("Args:")[1]
                                     + "\neval.* keys:\n" + EvalArgs.__doc__.split("Args:")[1])
    parser.add_argument("--config", required=True, help="YAML file (recipes/configs/*.yaml)")
    parser.add_argument("--resume", action="store_true", help="continue from {output_dir}/checkpoints/last")
    parser.add_argument("overrides", nargs="*", help="section.key=value overrides, e.g. train.max_steps=100")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        if args.resume:
            last_checkpoint(config)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as error:  # ImportError: the minatar extra
        print(f"recipes/train.py: error: {error}", file=sys.stderr)
        return 2
    main(config, resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
