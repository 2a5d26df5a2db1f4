"""The recipes: ``recipes/train.py`` (typed config, checkpoints, resume, logs, 2 processes, Hub push),
``recipes/finetune_trainer.py`` (Trainer) and the demo, as in-process calls and as subprocesses with tiny budgets."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from pc_transformers.data import load_maze_dataset
from pc_transformers.memory import environment_choice
from pc_transformers.recipes import config_path, load_recipe

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import run_client

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "recipes" / "train.py"
FINETUNE = REPO / "recipes" / "finetune_trainer.py"
# A 1-layer d=16 model on 5x5 mazes: seconds per run.
TINY = ["data.size=5", "data.train_mazes=2", "data.trajectories=1", "model.hidden_size=16",
        "model.num_hidden_layers=1", "model.num_attention_heads=2", "model.intermediate_size=32", "train.batch_size=4",
        "train.warmup_steps=0", "eval.mazes=2", "eval.starts=1", "eval.final_mazes=2", "eval.final_starts=1",
        "log_every=2"]


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("train")


def subprocess_env(**extra) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **extra}
    return env


def run(args, env=None, cwd=None, timeout=300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], env=env or subprocess_env(), cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return proc


def free_port() -> int:
    """A free local port for a launch's rendezvous: never the default 29500 another (or a stale) job may hold."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_launched(args, timeout: int) -> subprocess.CompletedProcess:
    """`run` for an ``accelerate launch`` of several processes. If it outlives ``timeout``, each worker, then the
    launcher, gets SIGABRT in turn, so that with ``PYTHONFAULTHANDLER`` each prints where it waits, and the test fails
    with those stacks instead of a bare timeout (how the exit deadlock at the end of `recipes/train.py`'s `main` was
    found). The workers run in sessions of their own (torch elastic starts them so), hence the signals per process
    rather than per group."""
    import signal

    import psutil

    proc = subprocess.Popen([str(a) for a in args], env=subprocess_env(PYTHONFAULTHANDLER="1"), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        launched = psutil.Process(proc.pid)
        for process in [*launched.children(recursive=True), launched]:
            try:
                process.send_signal(signal.SIGABRT)
                psutil.wait_procs([process], timeout=5)  # one stack at a time: they share stderr
                process.kill()
            except psutil.NoSuchProcess:
                pass
        out, err = proc.communicate()
        pytest.fail(f"{args[:2]} still running after {timeout} s; the processes' stacks:\n{err[-12000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def weights(path) -> dict:
    return load_file(str(Path(path) / "model.safetensors"))


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- config ----------------------------------------------------------------------------------------------------

def test_ready_made_configs_load_and_match_the_paper_budget(recipe):
    names = {p.stem for p in (REPO / "recipes" / "configs").glob("*maze*.yaml")}
    assert {"pc_maze8", "bc_maze8", "pc_maze16", "bc_maze16"} <= names
    for name in names:
        config = recipe.load_config(config_path(name))
        assert (config.data.train_mazes, config.data.trajectories) == (5, 4), name
        assert config.data.size == (16 if "16" in name else 8) and config.objective == name.split("_")[0]
    assert config_path("pc_maze8") == REPO / "recipes" / "configs" / "pc_maze8.yaml"


def test_config_overrides_and_types(recipe, tmp_path):
    config = recipe.load_config(config_path("pc_maze8"), ["train.learning_rate=5e-4", "train.max_steps=7",
                                                          "model.factorization=autoregressive", "push_to_hub=me/x"])
    assert config.train.learning_rate == 5e-4 and isinstance(config.train.learning_rate, float)
    assert config.train.max_steps == 7 and config.model["factorization"] == "autoregressive"
    assert config.push_to_hub == "me/x" and config.data.size == 8


def test_config_reads_yes_and_no_as_words(recipe, tmp_path):
    """YAML 1.2's booleans (true/false): ``mixed_precision=no``, Accelerate's value, is the string, in an override
    and in a config file (PyYAML's YAML 1.1 made it False and the config refused it)."""
    assert recipe.load_config(config_path("pc_maze8"), ["train.mixed_precision=no"]).train.mixed_precision == "no"
    path = tmp_path / "config.yaml"
    text = config_path("pc_maze8").read_text()
    assert "\ntrain:\n" in text and "mixed_precision" not in text
    path.write_text(text.replace("\ntrain:\n", "\ntrain:\n  mixed_precision: no\n  keep_freed_memory: False\n", 1))
    config = recipe.load_config(path)
    assert config.train.mixed_precision == "no" and config.train.keep_freed_memory is False
    with pytest.raises(TypeError, match="'train.keep_freed_memory' must be bool, got 'yes'"):
        recipe.load_config(config_path("pc_maze8"), ["train.keep_freed_memory=yes"])


@pytest.mark.parametrize("override, error, match", [
    ("train.max_step=3", ValueError, "unknown config key train.'max_step'"),
    ("bogus=1", ValueError, "bogus"),
    ("train.max_steps=many", TypeError, "'train.max_steps' must be int, got 'many'"),
    ("train.batch_size=true", TypeError, "train.batch_size"),
    ("train.max_steps=0", ValueError, "max_steps must be at least 1, got 0"),
    ("model.objective=imitation", ValueError, "imitation"),
    ("model.grid_size=16", ValueError, "data.size"),
    ("data.size=3", ValueError, "3"),
    ("report_to=wandb", ValueError, "wandb"),
    ("train.mixed_precision=fp8", ValueError, "fp8"),
    ("train.ema_decay=1", ValueError, r"train.ema_decay must be in \[0, 1\) \(0: no moving average\), got 1.0"),
    ("train.ema_decay=-0.5", ValueError, "got -0.5"),
    ("eval.random_starts=3", ValueError, "eval.random_starts is for minatar validation .* got 3 with domain 'maze'"),
    ("eval.batch_size=-1", ValueError, "batch_size must be non-negative, got -1"),
    ("no_equals_sign", ValueError, "section.key=value"),
])
def test_config_errors_name_the_value(recipe, override, error, match):
    with pytest.raises(error, match=match):
        recipe.load_config(config_path("pc_maze8"), [override])


def test_help_lists_the_keys_of_the_config_and_its_sections(recipe, capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe.cli(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    sections = [text.index(header) for header in ("config keys:", "train.* keys:", "eval.* keys:")]
    assert sections == sorted(sections)
    for key in ("output_dir:", "push_to_hub:", "ema_decay:", "keep_freed_memory:", "keep_best:", "batch_size:"):
        assert f"    {key}" in text, key


def test_cli_errors_exit_2(tmp_path):
    from pc_transformers.cli import main

    assert main(["train", "pc_maze8", "train.max_steps=-1"]) == 2
    with pytest.raises(FileNotFoundError, match="nope"):
        config_path("nope")
    proc = run([sys.executable, TRAIN, "--config", config_path("pc_maze8"), f"output_dir={tmp_path}", "--resume"])
    assert proc.returncode == 2 and "no checkpoint to resume from" in proc.stderr, proc.stderr[-2000:]


# --- data order ------------------------------------------------------------------------------------------------

def test_step_batch_sampler_is_resumable_and_covers_each_epoch(recipe):
    full = list(recipe.StepBatchSampler(10, 4, num_batches=9, seed=3))
    assert len(full) == 9 and all(len(b) == 4 for b in full)
    flat = [i for b in full for i in b]
    assert sorted(flat[:10]) == list(range(10)) and sorted(flat[10:20]) == list(range(10))  # epochs are permutations
    for start in range(9):
        assert list(recipe.StepBatchSampler(10, 4, num_batches=9, seed=3, start=start)) == full[start:]
    assert list(recipe.StepBatchSampler(10, 4, num_batches=9, seed=4)) != full


# --- training, checkpoints, resume -----------------------------------------------------------------------------

def test_train_writes_checkpoints_logs_and_resumes_to_identical_weights(recipe, tmp_path):
    """Train 6 steps (dropout on, checkpoints every 3); then interrupt after step 3's checkpoint and resume."""
    config = recipe.load_config(config_path("pc_maze8"), [*TINY, f"output_dir={tmp_path}", "train.max_steps=6",
                                                          "save_every=3", "eval.every=3", "model.hidden_dropout=0.2",
                                                          "save_total_limit=null"])
    results = recipe.main(config)
    checkpoints = tmp_path / "checkpoints"
    assert (checkpoints / "last").read_text() == "step_000006"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["last", "step_000003", "step_000006"]  # no temporaries
    for step in (3, 6):
        ckpt = checkpoints / f"step_{step:06d}"
        assert {"model.safetensors", "optimizer.bin", "scheduler.bin", "random_states_0.pkl"} <= {
            p.name for p in (ckpt / "state").iterdir()}
        assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == step
        assert recipe.load_config(ckpt / "train_config.yaml") == config  # the resolved config reruns as is
    final = tmp_path / "final"
    assert same_weights(weights(final), weights(checkpoints / "step_000006" / "policy"))
    assert not same_weights(weights(checkpoints / "step_000003" / "policy"), weights(final))
    saved = json.loads((final / "results.json").read_text())
    assert saved["success_rate"] == results["success_rate"] and saved["training"]["steps"] == 6
    assert [e["step"] for e in saved["evaluations"]] == [3, 6]
    assert yaml.safe_load((final / "train_config.yaml").read_text())["train"]["max_steps"] == 6

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for events in (tmp_path / "runs").rglob("events.out.tfevents.*"):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/procedure_loss", "train/action_loss", "eval/success_rate", "perf/tokens_per_s",
            "perf/examples_per_s"} <= tags, tags

    uninterrupted = weights(final)
    # The run "died" after step 3's checkpoint: remove what came later, and resume.
    import shutil

    shutil.rmtree(checkpoints / "step_000006")
    shutil.rmtree(final)
    (checkpoints / "last").write_text("step_000003")
    resumed = recipe.main(config, resume=True)
    assert same_weights(weights(final), uninterrupted)  # same data order, RNG (dropout) and optimizer state
    assert resumed["training"]["steps"] == 6 and [e["step"] for e in resumed["evaluations"]] == [3, 6]

    with pytest.raises(ValueError, match="differs from the checkpoint"):
        recipe.main(recipe.load_config(config_path("pc_maze8"), [*TINY, f"output_dir={tmp_path}",
                                                                 "train.max_steps=9"]), resume=True)


def test_keep_best_ends_with_the_best_validation_weights(recipe, tmp_path):
    """eval.keep_best: final/ holds the weights of the best validation evaluation (earliest on ties), evaluated."""
    config = recipe.load_config(config_path("pc_maze8"), [*TINY, f"output_dir={tmp_path}", "train.max_steps=6",
                                                          "save_every=1", "eval.every=1", "save_total_limit=null",
                                                          "eval.keep_best=true", "train.learning_rate=0.03"])
    results = recipe.main(config)
    curve = [(e["success_rate"], -e["step"]) for e in results["evaluations"]]
    best_step = -max(curve)[1]
    assert results["training"]["selected_step"] == best_step
    checkpoints = tmp_path / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir() if not p.name.startswith("step_")) == ["best", "last"]
    assert same_weights(weights(checkpoints / "best"), weights(checkpoints / f"step_{best_step:06d}" / "policy"))
    assert same_weights(weights(tmp_path / "final"), weights(checkpoints / "best"))
    if best_step != 6:  # (with this seed: step 1)
        assert not same_weights(weights(tmp_path / "final"), weights(checkpoints / "step_000006" / "policy"))
    saved = json.loads((checkpoints / "last").parent.joinpath("step_000006", "trainer_state.json").read_text())
    assert saved["best"]["step"] == best_step  # kept in the resumable state


def test_ema_decay_keeps_the_moving_average_and_resumes_to_it(recipe, tmp_path):
    """train.ema_decay: every checkpoint's policy/ and final/ hold the moving average of the raw weights, computed
    here from an identical run without it; training itself is unchanged, and an interrupted run resumes to the same
    average."""
    common = [*TINY, "train.max_steps=4", "eval.every=0", "eval.final_mazes=0", "report_to=none", "save_every=1",
              "save_total_limit=null", "model.hidden_dropout=0.2"]
    recipe.main(recipe.load_config(config_path("pc_maze8"), [*common, f"output_dir={tmp_path / 'raw'}"]))
    decay = 0.6
    config = recipe.load_config(config_path("pc_maze8"), [*common, f"output_dir={tmp_path / 'ema'}",
                                                          f"train.ema_decay={decay}"])
    recipe.main(config)
    checkpoints = tmp_path / "ema" / "checkpoints"
    raw = [weights(tmp_path / "raw" / "checkpoints" / f"step_{step:06d}" / "policy") for step in range(1, 5)]
    expected = raw[0]  # the first update copies the weights
    for step, current in enumerate(raw, start=1):
        if step > 1:
            expected = {k: decay * expected[k] + (1 - decay) * current[k] for k in current}
        average = weights(checkpoints / f"step_{step:06d}" / "policy")
        assert average.keys() == expected.keys()
        assert all(torch.allclose(average[k], expected[k], atol=1e-6) for k in expected), step
    # The raw weights train on as without the average (state/ holds them), and differ from it.
    trained = load_file(str(checkpoints / "step_000004" / "state" / "model.safetensors"))
    assert same_weights({k: trained[k] for k in raw[-1]}, raw[-1])
    assert not same_weights(weights(tmp_path / "ema" / "final"), raw[-1])
    uninterrupted = weights(tmp_path / "ema" / "final")
    assert same_weights(uninterrupted, weights(checkpoints / "step_000004" / "policy"))

    import shutil

    for name in ("step_000003", "step_000004"):
        shutil.rmtree(checkpoints / name)
    shutil.rmtree(tmp_path / "ema" / "final")
    (checkpoints / "last").write_text("step_000002")
    recipe.main(config, resume=True)
    assert same_weights(weights(tmp_path / "ema" / "final"), uninterrupted)


def test_gradient_accumulation_matches_the_full_batch(recipe, tmp_path):
    """batch 4 in one step == 2 micro-steps of 2 (the model's loss is not mis-scaled by accumulation)."""
    common = [*TINY, "train.max_steps=2", "eval.every=0", "eval.final_mazes=0", "report_to=none", "save_every=0"]
    recipe.main(recipe.load_config(config_path("bc_maze8"), [*common, f"output_dir={tmp_path / 'a'}"]))
    recipe.main(recipe.load_config(config_path("bc_maze8"), [*common, f"output_dir={tmp_path / 'b'}",
                                                             "train.gradient_accumulation_steps=2"]))
    a, b = weights(tmp_path / "a" / "final"), weights(tmp_path / "b" / "final")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_train_step_asks_for_the_losses_only(recipe, tmp_path, request, precision):
    """The recipe's step gets no (B, T, V) logits from the model (nor, under mixed precision, Accelerate's float32
    copy of them): its loss is the full call's, bit for bit, and it still trains."""
    from accelerate.state import AcceleratorState

    from pc_transformers.data import PCDataCollator

    config = recipe.load_config(config_path("pc_maze8"), [*TINY, f"output_dir={tmp_path}"])
    config.train = dataclasses.replace(config.train, mixed_precision=precision)
    AcceleratorState._reset_state(reset_partial_state=True)  # the process's Accelerator state holds one precision
    request.addfinalizer(lambda: AcceleratorState._reset_state(reset_partial_state=True))
    run = recipe.build_training(config)
    examples = list(run.examples)[:4]
    batch = PCDataCollator(run.tokenizer.pad_token_id)(examples)
    run.model.train()
    full = run.model(**batch)  # with gradients, as in the step (autocast caches its casts only then)
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    out = recipe.train_step(run.model, batch, run.accelerator, run.optimizer, run.scheduler, 1.0)
    assert full.logits.shape[:2] == batch["input_ids"].shape
    assert out.logits.shape == (len(examples), 0, run.model_config.vocab_size)
    assert torch.equal(out.loss, full.loss) and torch.isfinite(out.loss)
    assert not same_weights(before, run.model.state_dict())


def test_train_cli_subprocess(tmp_path):
    """`pc-transformers train CONFIG` runs recipes/train.py; the final policy evaluates with `pc-transformers evaluate`."""
    proc = run([sys.executable, "-m", "pc_transformers.cli", "train", "bc_maze8", *TINY, f"output_dir={tmp_path}",
                "train.max_steps=2", "eval.every=0"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "bc: success" in proc.stdout and (tmp_path / "final" / "model.safetensors").is_file()
    proc = run([sys.executable, "-m", "pc_transformers.cli", "evaluate", tmp_path / "final", "--mazes", "2",
                "--starts", "1"])
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.timeout(600)
def test_train_two_processes(tmp_path):
    """Data parallel over 2 CPU processes (gloo) with `accelerate launch`; checkpoints written once; the weights'
    moving average is kept on both processes."""
    proc = run_launched(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                "--main_process_port", free_port(), "--mixed_precision", "no", "--dynamo_backend", "no", TRAIN, "--config", config_path("pc_maze8"),
                *TINY, f"output_dir={tmp_path}", "train.max_steps=4", "save_every=2", "eval.every=2",
                "train.ema_decay=0.5"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:]
    results = json.loads((tmp_path / "final" / "results.json").read_text())
    assert results["training"]["processes"] == 2 and results["training"]["steps"] == 4
    state = tmp_path / "checkpoints" / "step_000004" / "state"
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= {p.name for p in state.iterdir()}
    assert not same_weights(weights(tmp_path / "final"), {k: v for k, v in load_file(
        str(state / "model.safetensors")).items() if k in weights(tmp_path / "final")})


def test_checkpoint_waits_for_every_process_before_renaming(tmp_path, monkeypatch):
    """`save_checkpoint` as two processes (threads with a barrier for ``wait_for_everyone``) where process 1 writes
    its RNG state late: its file must be in the renamed checkpoint, not in a re-created temporary directory."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from pc_transformers import training_checkpoints
    from pc_transformers.training_config import TrainConfig

    barrier = threading.Barrier(2, timeout=30)

    class Process:  # the parts of an Accelerator that save_checkpoint uses
        def __init__(self, index):
            self.process_index, self.is_main_process = index, index == 0

        def wait_for_everyone(self):
            barrier.wait()

        def save_state(self, path):
            os.makedirs(path, exist_ok=True)  # as Accelerator.save_state does
            time.sleep(0.5 * self.process_index)
            Path(path, f"random_states_{self.process_index}.pkl").write_text("rng")

    monkeypatch.setattr(training_checkpoints, "_save_policy", lambda acc, model, tok, config, path: path.mkdir())
    config = TrainConfig(output_dir=str(tmp_path))
    with ThreadPoolExecutor(2) as pool:
        saves = [pool.submit(training_checkpoints.save_checkpoint, Process(i), None, None, config, {"step": 4})
                 for i in (0, 1)]
        for save in saves:
            save.result()  # raises what the thread raised
    state = tmp_path / "checkpoints" / "step_000004" / "state"
    assert sorted(p.name for p in state.iterdir()) == ["random_states_0.pkl", "random_states_1.pkl"]
    assert not (tmp_path / "checkpoints" / ".tmp-step_000004").exists()


# --- Hub ---------------------------------------------------------------------------------------------------------

CHECK_PUSHED = """
import torch
from huggingface_hub import HfApi, ModelCard, snapshot_download
from safetensors.torch import load_file
files = set(HfApi().list_repo_files("user/pc-trained"))
assert {{"README.md", "model.safetensors", "config.json", "tokenizer.json", "modeling_pc.py", "train_config.yaml",
        "results.json"}} <= files, files
card = ModelCard.load("user/pc-trained")
assert card.data.eval_results[0].metric_type == "success_rate", card.data
assert "| train_seconds |" in card.text and "| steps | 2 |" in card.text, card.text
assert "| step | training time (s) | validation success |" in card.text and "\\n| 2 | " in card.text, card.text
local, hubbed = load_file({local!r}), load_file(snapshot_download("user/pc-trained") + "/model.safetensors")
assert all(torch.equal(local[k], hubbed[k]) for k in local)
print("TRAIN_PUSH_OK")
"""


def test_train_pushes_to_hub_from_the_config(hub_env, tmp_path):
    env = {**hub_env, "HF_TOKEN": "test", "OMP_NUM_THREADS": "1"}
    proc = run([sys.executable, TRAIN, "--config", config_path("pc_maze8"), *TINY, f"output_dir={tmp_path / 'run'}",
                "train.max_steps=2", "eval.every=1", "report_to=none", "push_to_hub=user/pc-trained"], env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "pushed" in proc.stdout and "user/pc-trained" in proc.stdout
    local = tmp_path / "run" / "final" / "model.safetensors"
    assert "TRAIN_PUSH_OK" in run_client(hub_env, CHECK_PUSHED.format(local=str(local)), tmp_path)


# --- fine-tuning with transformers.Trainer ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_checkpoint(recipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained")
    recipe.main(recipe.load_config(config_path("pc_maze8"), [*TINY, f"output_dir={out}", "train.max_steps=2",
                                                             "eval.every=0", "eval.final_mazes=0", "report_to=none"]))
    return out / "final"


def test_finetune_trainer_to_a_larger_maze(small_checkpoint, tmp_path):
    proc = run([sys.executable, FINETUNE, "--checkpoint", small_checkpoint, "--size", "6", "--wall_type", "blocks",
                "--train_mazes", "1", "--trajectories", "1", "--eval_mazes", "2", "--eval_starts", "1",
                "--output_dir", tmp_path, "--max_steps", "3", "--per_device_train_batch_size", "2",
                "--learning_rate", "1e-3", "--logging_steps", "1", "--save_steps", "3", "--report_to", "none"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    final = tmp_path / "final"
    config = json.loads((final / "config.json").read_text())
    assert config["grid_size"] == 6 and config["use_cache"] is True
    before, after = weights(small_checkpoint), weights(final)
    assert before.keys() == after.keys() and not same_weights(before, after)
    results = json.loads((final / "results.json").read_text())
    assert results["training"]["steps"] == 3 and results["zero_shot"] is not None and "success_rate" in results
    assert (tmp_path / "checkpoint-3" / "model.safetensors").is_file()  # Trainer's own checkpoint

    from pc_transformers.policy import PCPolicy

    policy = PCPolicy.from_pretrained(final)
    assert policy.model.config.grid_size == 6 and same_weights(policy.model.state_dict(), after)


def test_finetune_cli_wrapper_and_errors(small_checkpoint, tmp_path, recipe):
    proc = run([sys.executable, "-m", "pc_transformers.cli", "finetune", "--checkpoint", tmp_path / "missing",
                "--output_dir", tmp_path / "out"])
    assert proc.returncode == 2 and "finetune_trainer: error:" in proc.stderr and "missing" in proc.stderr

    absolute = tmp_path / "absolute"
    recipe.main(recipe.load_config(config_path("pc_maze8"), [*TINY, f"output_dir={absolute}", "train.max_steps=1",
                                                             "model.position_encoding=absolute", "eval.every=0",
                                                             "eval.final_mazes=0", "report_to=none"]))
    proc = run([sys.executable, FINETUNE, "--checkpoint", absolute / "final", "--size", "6", "--output_dir",
                tmp_path / "out", "--max_steps", "1"])
    assert proc.returncode == 2 and "position_encoding='absolute'" in proc.stderr, proc.stderr[-2000:]


# --- the README's main command -----------------------------------------------------------------------------------

def test_demo_runs_end_to_end(tmp_path):
    proc = run([sys.executable, "-m", "pc_transformers.cli", "demo", "--out", tmp_path, "--size", "5",
                "--train-mazes", "1", "--trajectories", "1", "--test-mazes", "2", "--starts-per-maze", "1",
                "--steps", "2", "--batch-size", "2"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "PC  success" in proc.stdout and "BC  success" in proc.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    for objective in ("pc", "bc"):
        assert results[objective]["objective"] == objective and results[objective]["episodes"] == 2
        assert json.loads((tmp_path / objective / "final" / "config.json").read_text())["objective"] == objective
    assert (tmp_path / "data" / "data" / "train-00000-of-00001.parquet").is_file()


# --- the benchmark recipes ----------------------------------------------------------------------------------------

def test_benchmark_recipes_run(small_checkpoint, tmp_path):
    out = tmp_path / "bfs.json"
    proc = run([sys.executable, REPO / "recipes" / "benchmarks" / "bfs_speed.py", "--sizes", "8", "--seconds", "0.1",
                "--mazes", "2", "--starts", "2", "--json", out])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(out.read_text())
    out = tmp_path / "acting.json"
    proc = run([sys.executable, REPO / "recipes" / "benchmarks" / "acting_latency.py", small_checkpoint, "--mazes",
                "2", "--starts", "1", "--batch-sizes", "2", "--json", out])
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert runs[0]["batch_size"] == 2 and runs[0]["cache"]["env_steps"] > 0


def test_training_throughput_benchmark_counts_map_pairs(tmp_path):
    """The throughput benchmark runs the recipe's loop; its map pairs are the maps of the rows it trained on."""
    out = tmp_path / "throughput.json"
    proc = run([sys.executable, REPO / "recipes" / "benchmarks" / "training_throughput.py", "--config", "pc_maze8",
                f"output_dir={tmp_path / 'run'}", "data.train_mazes=2", "data.trajectories=2", "train.batch_size=4",
                "--steps", "2", "--warmup", "1", "--json", out])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    train = load_recipe("train")
    rows = load_maze_dataset(tmp_path / "run" / "data")["train"]
    timed = list(train.StepBatchSampler(len(rows), 4, 3, seed=0))[1:]  # the warm-up batch is not timed
    maps = sum(len(rows[i]["maps"]) for batch in timed for i in batch)
    assert result["map_pairs_per_sequence"] == pytest.approx(maps / 8)
    assert result["map_pairs_per_s"] == pytest.approx(result["sequences_per_s"] * maps / 8)
    assert result["steps"] == 2 and result["hardware"]["torch_threads"] >= 1
    # train.keep_freed_memory is on by default; it takes effect unless the environment chose malloc's settings.
    assert result["keep_freed_memory"] is True
    assert result["freed_memory_kept"] is (environment_choice() is None)
    # Gradient accumulation: micro-batches of 2, two per optimizer step; the warm-up step's two are not timed.
    proc = run([sys.executable, REPO / "recipes" / "benchmarks" / "training_throughput.py", "--config", "pc_maze8",
                f"dataset={tmp_path / 'run' / 'data'}", "train.batch_size=4", "train.gradient_accumulation_steps=2",
                "--steps", "2", "--warmup", "1", "--json", out])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    timed = list(train.StepBatchSampler(len(rows), 2, 6, seed=0))[2:]
    maps = sum(len(rows[i]["maps"]) for batch in timed for i in batch)
    assert result["gradient_accumulation_steps"] == 2 and len(timed) == 4
    assert result["map_pairs_per_sequence"] == pytest.approx(maps / 8)
    assert result["map_pairs_per_s"] == pytest.approx(result["sequences_per_s"] * maps / 8)
    proc = run([sys.executable, REPO / "recipes" / "benchmarks" / "training_throughput.py", "--steps", "0"])
    assert proc.returncode != 0 and "--steps must be ≥ 1, got 0" in proc.stderr


@pytest.mark.timeout(600)
def test_training_throughput_benchmark_two_processes(tmp_path):
    """Under ``accelerate launch`` with 2 CPU processes the benchmark splits the same global batches across them and
    sums the counts: the map pairs per sequence are those of the one-process run on the same data, and process 0
    alone writes the JSON."""
    bench = REPO / "recipes" / "benchmarks" / "training_throughput.py"
    options = ["--config", "pc_maze8", "data.train_mazes=2", "data.trajectories=2", "train.batch_size=4",
               "train.gradient_accumulation_steps=2", "--steps", "2", "--warmup", "1", "--threads", "1"]
    one = tmp_path / "one.json"
    proc = run([sys.executable, bench, *options, f"output_dir={tmp_path / 'run'}", "--json", one])
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = tmp_path / "two.json"
    proc = run_launched(["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                         "--main_process_port", free_port(), "--mixed_precision", "no", "--dynamo_backend", "no", bench,
                         *options, f"dataset={tmp_path / 'run' / 'data'}", f"output_dir={tmp_path / 'run2'}",
                         "--json", two], timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert proc.stdout.count('"map_pairs_per_s"') == 1  # printed by process 0 only
    one, two = json.loads(one.read_text()), json.loads(two.read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    assert two["map_pairs_per_sequence"] == pytest.approx(one["map_pairs_per_sequence"])
    assert two["sequences_per_s"] * two["seconds"] == pytest.approx(2 * 4)  # 2 timed steps of 4 sequences


@pytest.mark.timeout(600)
def test_maze_generalization_benchmark_quick(tmp_path):
    """The benchmark's CI configuration: every method, 8x8, a few steps; outputs exist, quality is not asserted."""
    proc = run([sys.executable, REPO / "recipes" / "benchmarks" / "maze_generalization.py", "--quick", "--out",
                tmp_path], timeout=540)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    methods = {"pc_markov", "pc_autoregressive", "pc_absolute", "convnet_pc", "bc", "aux_bc", "random"}
    assert {r["method"] for r in results["runs"]} == methods and results["matmul_peak_gflops"] > 0
    for r in results["runs"]:
        assert 0 <= r["success_rate"] <= 1 and r["episodes"] == 2
        if r["method"] == "random":  # nothing trained, nothing to time
            assert r["training"]["steps"] == 0 and "efficiency" not in r and r["mean_forward_passes"] == 0
            continue
        assert [a["batch"] for a in r["efficiency"]["acting"]] == [1, 2]
        if r["method"] != "convnet_pc":
            assert 0 < r["efficiency"]["mfu"] < 1 and r["efficiency"]["train_gflops_per_example"] > 0
    for name in ("table.md", "success_vs_train_mazes.png", "success_vs_time.png", "best_pc/model.safetensors"):
        assert (tmp_path / name).is_file(), name

    # --merge: the runs of several invocations (a main setting, its sweep) in one results.json, table and plots.
    other = json.loads((tmp_path / "results.json").read_text())
    other["args"]["methods"], other["runs"] = ["bc"], [{**r, "train_mazes": 4} for r in other["runs"] if r["method"] == "bc"]
    (tmp_path / "sweep.json").write_text(json.dumps(other))
    proc = run([sys.executable, REPO / "recipes" / "benchmarks" / "maze_generalization.py", "--merge",
                tmp_path / "results.json", tmp_path / "sweep.json", "--out", tmp_path / "merged"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert merged["runs"] == results["runs"] + other["runs"] and set(merged["args"]["methods"]) == methods
    table = (tmp_path / "merged" / "table.md").read_text()
    assert table.count("\n| bc | 8 |") == 2 and (tmp_path / "merged" / "success_vs_train_mazes.png").is_file()

    # --replace: a later run of the same (method, size, train_mazes) takes the earlier one's place; others stay.
    longer = json.loads((tmp_path / "results.json").read_text())
    bc = next(r for r in longer["runs"] if r["method"] == "bc")
    longer["runs"] = [{**bc, "success_rate": 0.5, "training": {**bc["training"], "steps": 99}}]
    (tmp_path / "longer.json").write_text(json.dumps(longer))
    proc = run([sys.executable, REPO / "recipes" / "benchmarks" / "maze_generalization.py", "--merge",
                tmp_path / "results.json", tmp_path / "longer.json", "--replace", "--out", tmp_path / "replaced"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    replaced = json.loads((tmp_path / "replaced" / "results.json").read_text())
    assert replaced["runs"] == [longer["runs"][0] if r["method"] == "bc" else r for r in results["runs"]]
    assert replaced["replaced"] == [{"method": "bc", "size": 8, "train_mazes": 2, "steps": bc["training"]["steps"],
                                     "success_rate": bc["success_rate"], "from": str(tmp_path / "results.json"),
                                     "by": str(tmp_path / "longer.json")}]
    assert "| bc | 8 | 2 | 50.0% |" in (tmp_path / "replaced" / "table.md").read_text()
    proc = run([sys.executable, REPO / "recipes" / "benchmarks" / "maze_generalization.py", "--replace"])
    assert proc.returncode != 0 and "--replace only applies to --merge" in proc.stderr


@pytest.mark.timeout(300)
def test_maze_generalization_benchmark_precision_and_micro_batches(tmp_path):
    """--mixed-precision, --gradient-accumulation-steps and --eval-batch-size reach the transformers' recipe config
    (the saved one)."""
    script = REPO / "recipes" / "benchmarks" / "maze_generalization.py"
    proc = run([sys.executable, script, "--quick", "--methods", "bc", "--mixed-precision", "bf16",
                "--gradient-accumulation-steps", "2", "--eval-batch-size", "1", "--out", tmp_path], timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    saved = yaml.safe_load((tmp_path / "runs" / "maze8_train2_bc" / "final" / "train_config.yaml").read_text())
    assert saved["train"]["mixed_precision"] == "bf16" and saved["train"]["gradient_accumulation_steps"] == 2
    assert saved["eval"]["batch_size"] == 1
    assert saved["train"]["batch_size"] == 4  # --quick's batch, split into 2 micro-batches of 2
    proc = run([sys.executable, script, "--quick", "--methods", "bc", "--mixed-precision", "fp8", "--out", tmp_path])
    assert proc.returncode != 0 and "invalid choice: 'fp8'" in proc.stderr
