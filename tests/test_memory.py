"""`pc_transformers.memory.keep_freed_memory`: glibc keeps freed memory, so re-allocating it faults no pages in."""

import os
import platform
import subprocess
import sys

import pytest

from pc_transformers import memory
from pc_transformers.recipes import config_path, load_recipe

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc")

# Tensors of 4-20 MiB, written, then freed, as a training step's activations are: the page faults of four rounds.
CHURN = """
import resource, sys, torch
from pc_transformers.memory import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def churn(count):
    tensors = [torch.ones((1 + i % 5) << 20) for i in range(count)]
    del tensors
churn(12)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for count in (6, 7, 8, 9):
    churn(count)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str, **env) -> int:
    clean = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES" and not k.startswith("MALLOC_")}
    proc = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True,
                          env={**clean, "OMP_NUM_THREADS": "1", **env})
    return int(proc.stdout.split()[-1])


@glibc_only
def test_freed_memory_is_reused_without_page_faults():
    """Without it glibc hands the freed top of the heap back to the kernel and the next round faults it in again
    (tens of thousands of pages here); with it, the second rounds reuse it."""
    default, kept = page_faults("default"), page_faults("keep")
    pages = 4 * 15 * (1 << 20) // 4096  # about one round's worth of 4 KiB pages: 15 MiB average, 4 rounds
    assert default > pages // 4, (default, kept)
    assert kept < default / 4, (default, kept)


@pytest.mark.parametrize("env, match", [
    ({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, "LD_PRELOAD"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"}, "GLIBC_TUNABLES"),
    ({"MALLOC_MMAP_THRESHOLD_": "1048576"}, "MALLOC_MMAP_THRESHOLD_"),
])
@glibc_only
def test_the_environments_own_choice_is_left_alone(monkeypatch, env, match):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *a: pytest.fail("mallopt called despite " + match))
    assert match in memory.environment_choice()
    assert memory.keep_freed_memory() is False


def test_not_glibc_is_left_alone(monkeypatch):
    monkeypatch.setattr(memory.platform, "libc_ver", lambda: ("musl", "1.2"))
    monkeypatch.setattr(memory.ctypes, "CDLL", lambda *a: pytest.fail("mallopt called on musl"))
    assert "musl" in memory.environment_choice()
    assert memory.keep_freed_memory() is False


@pytest.mark.parametrize("kwargs, match", [
    ({"mmap_threshold": 64 << 20}, "mmap_threshold must be a number of bytes from 1 to 33554432, got 67108864"),
    ({"trim_threshold": 0}, "trim_threshold .* got 0"),
    ({"trim_threshold": 1 << 31}, "trim_threshold .* got 2147483648"),
    ({"trim_threshold": 1.5e9}, "trim_threshold .* got 1500000000.0"),
    ({"mmap_threshold": True}, "mmap_threshold .* got True"),
])
def test_bad_thresholds_name_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        memory.keep_freed_memory(**kwargs)


@pytest.mark.parametrize("flag, applies, calls, kept", [
    ("true", True, 1, True), ("true", False, 1, False), ("false", True, 0, False)])
def test_cpu_training_applies_it_unless_switched_off(monkeypatch, tmp_path, flag, applies, calls, kept):
    """The recipe asks for it on CPU unless switched off, and records whether it took effect (the environment may have
    chosen its own allocator: `keep_freed_memory` then returns False)."""
    train = load_recipe("train")
    called = []
    monkeypatch.setattr(train, "keep_freed_memory", lambda: called.append(True) or applies)
    config = train.load_config(config_path("bc_maze8"), [
        "data.size=5", "data.train_mazes=2", "data.trajectories=1", "model.hidden_size=16",
        "model.num_hidden_layers=1", "model.num_attention_heads=2", "model.intermediate_size=32",
        "train.batch_size=4", f"train.keep_freed_memory={flag}", f"output_dir={tmp_path}"])
    run = train.build_training(config)
    assert len(called) == calls
    assert run.freed_memory_kept is kept
