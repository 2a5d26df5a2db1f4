"""Checkpoints of the training recipe (``recipes/train.py``), in ``{output_dir}/checkpoints/``:

* ``step_XXXXXX/`` (`save_checkpoint`): ``policy/`` (``save_pretrained``: safetensors, tokenizer, config), ``state/``
  (``accelerator.save_state``: optimizer, scheduler, RNG states), ``train_config.yaml`` (the resolved config) and
  ``trainer_state.json``; the file ``last`` names the newest complete one (`last_checkpoint`, `load_checkpoint`);
* ``best/`` (`save_best`, `load_best`): the policy of the best validation evaluation, with ``eval.keep_best``.

Both are written under a temporary name and renamed when complete, so that an interrupted run never leaves a partial
one under its final name. Every process calls these functions, and process 0 writes the files (each process saves
its own RNG state in ``state/``). ``model`` is the evaluated weights: the moving average with ``train.ema_decay``,
else the prepared model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import yaml
from safetensors.torch import load_file

from .training_config import TrainConfig, save_config


def _save_policy(accelerator, model, tokenizer, config: TrainConfig, path: Path) -> None:
    config.policy_class(accelerator.unwrap_model(model), tokenizer, seed=config.seed).save_pretrained(path)
    accelerator.unwrap_model(model).train()  # the policy put it in eval mode


def save_checkpoint(accelerator, model, tokenizer, config: TrainConfig, state: dict) -> Path:
    """Write ``checkpoints/step_XXXXXX`` under a temporary name, rename it, then point ``checkpoints/last`` at it.
    ``policy/`` holds ``model`` (the evaluated weights: the moving average with ``train.ema_decay``); ``state/`` the
    training state, the raw weights included."""
    root = Path(config.output_dir) / "checkpoints"
    name = f"step_{state['step']:06d}"
    final, tmp = root / name, root / f".tmp-{name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "state"))  # every process writes its RNG state; process 0 the rest
    # save_state does not wait for the others: without this, process 0 could rename the directory before a slower
    # process wrote its RNG state, which would then re-create the temporary directory and land there.
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _save_policy(accelerator, model, tokenizer, config, tmp / "policy")
        save_config(config, tmp / "train_config.yaml")
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        (root / ".last.tmp").write_text(name)
        os.replace(root / ".last.tmp", root / "last")
        kept = sorted(p for p in root.glob("step_*") if p.is_dir())
        for old in kept[: -config.save_total_limit] if config.save_total_limit else []:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def last_checkpoint(config: TrainConfig) -> Path:
    """The checkpoint ``checkpoints/last`` names, refusing a config that differs from the one it was saved with."""
    pointer = Path(config.output_dir) / "checkpoints" / "last"
    if not pointer.is_file():
        raise FileNotFoundError(f"--resume: no checkpoint to resume from ({str(pointer)!r} does not exist)")
    checkpoint = pointer.parent / pointer.read_text().strip()
    saved = yaml.safe_load((checkpoint / "train_config.yaml").read_text())
    changed = sorted(k for k in saved if saved[k] != dataclasses.asdict(config).get(k) and k != "push_to_hub")
    if changed:
        raise ValueError(f"--resume: the config differs from the checkpoint's {str(checkpoint)!r} in {changed}; "
                         f"resume with the same config (or start a new output_dir)")
    return checkpoint


def load_checkpoint(accelerator, checkpoint: Path, ema=None) -> dict:
    """Restore the training state from ``checkpoint``, and the moving average ``ema`` (an ``AveragedModel``) if there
    is one; returns the checkpoint's trainer state (step, counters, evaluations)."""
    accelerator.load_state(str(checkpoint / "state"))
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    if ema is not None:  # the checkpoint's policy/ holds the moving average (safetensors)
        ema.module.load_state_dict(load_file(checkpoint / "policy" / "model.safetensors"))
        ema.n_averaged.fill_(state["step"])  # one update per optimizer step
    return state


def save_best(accelerator, model, tokenizer, config: TrainConfig, state: dict, value: float) -> None:
    """Write the current weights to ``checkpoints/best`` (temporary name, then renamed) and note it in ``state``."""
    root = Path(config.output_dir) / "checkpoints"
    final, tmp, old = root / "best", root / ".tmp-best", root / ".old-best"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
        _save_policy(accelerator, model, tokenizer, config, tmp)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    state["best"] = {"step": state["step"], config.metric: value}
    accelerator.wait_for_everyone()


def load_best(accelerator, model, config: TrainConfig, state: dict) -> None:
    """Load ``checkpoints/best`` into ``model`` (every process), if it is not the current step's weights."""
    best = state.get("best")
    if not config.eval.keep_best or best is None or best["step"] == state["step"]:
        return
    weights = load_file(Path(config.output_dir) / "checkpoints" / "best" / "model.safetensors")
    accelerator.unwrap_model(model).load_state_dict(weights)
    value = best[config.metric]
    accelerator.print(f"keep_best: ending with the weights of step {best['step']} (validation "
                      + (f"success {value:.1%})" if config.domain == "maze" else f"mean return {value:.2f})"))
