"""The evaluate recipe: procedure accuracy against the expert, the JSON, layouts files, CLI errors, a smoke run.

The model that knows something is the ``overfit`` fixture of ``conftest.py`` (maze seed 0, 7×7, start (5, 1)); the
model that knows nothing is an untrained tiny one. Both are saved as PCPolicy directories, as the demo does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pc_transformers import PCForProcedureCloning
from pc_transformers.cli import main as cli_main
from pc_transformers.envs.maze import format_layout, make_maze
from pc_transformers.evaluation import format_table, read_layouts, run_evaluation
from pc_transformers.policy import PCPolicy

GRID_SIZE = 7
OVERFIT_MAZE_SEED, OVERFIT_START = 0, (5, 1)  # as in conftest.py: maze seed 0, the expert trajectory's start
REPO = Path(__file__).resolve().parents[1]
RESULT_KEYS = {"success_rate", "success_ci95", "episodes", "mean_length_ratio", "fallback_rate",
               "mean_forward_passes", "env_steps_per_s", "procedure_step_accuracy", "procedure_exact_rate",
               "procedure_decisions", "checkpoint", "mazes", "starts", "size"}


def _layout(maze_seed: int, start) -> str:
    walls, goal = make_maze(GRID_SIZE, "tunnel", maze_seed)
    return format_layout(walls, goal, start).replace("A", "S")


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory, tokenizer, make_config) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("untrained")
    PCPolicy(PCForProcedureCloning(make_config()), tokenizer).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def overfit_checkpoint(tmp_path_factory, overfit) -> Path:
    assert overfit.matched
    path = tmp_path_factory.mktemp("overfit")
    PCPolicy(overfit.model, overfit.tokenizer).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def overfit_layout(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("layouts") / "overfit.txt"
    path.write_text(_layout(OVERFIT_MAZE_SEED, OVERFIT_START) + "\n")
    return path


def test_overfit_model_reproduces_the_expert_procedure(overfit_checkpoint, overfit_layout, tmp_path):
    out = tmp_path / "eval.json"
    results = run_evaluation(overfit_checkpoint, starts=1, max_steps=10, layouts=overfit_layout, json_out=out,
                             procedure_cache=False)
    assert results["success_rate"] == 1.0 and results["mean_length_ratio"] == 1.0
    assert results["procedure_decisions"] == 6  # one generated procedure per step of the 6-step path
    assert results["procedure_step_accuracy"] == 1.0 and results["procedure_exact_rate"] == 1.0
    written = json.loads(out.read_text())
    assert RESULT_KEYS <= set(written) and written["procedure_exact_rate"] == 1.0
    assert "procedure step accuracy" in format_table(results)


def test_untrained_model_does_not(untrained_checkpoint):
    results = run_evaluation(untrained_checkpoint, mazes=2, starts=2, max_steps=3, procedure_cache=False)
    assert results["episodes"] == 4
    assert results["procedure_decisions"] > 0  # some procedures parsed, and were compared
    assert results["procedure_step_accuracy"] < 1.0 and results["procedure_exact_rate"] < 1.0


def test_layouts_file_with_two_layouts(untrained_checkpoint, tmp_path, capsys):
    path = tmp_path / "two.txt"
    path.write_text(_layout(0, OVERFIT_START) + "\n\n\n" + _layout(1, None) + "\n")
    assert len(read_layouts(path)) == 2
    out = tmp_path / "two.json"
    assert cli_main(["evaluate", str(untrained_checkpoint), "--layouts", str(path), "--starts", "2",
                     "--max-steps", "3", "--batch-size", "3", "--json", str(out)]) == 0
    assert "success rate" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert results["episodes"] == 4 and results["mazes"] == 2 and results["wall_type"] == "layout"
    assert results["batch_size"] == 3


@pytest.mark.parametrize("problem", ["missing_checkpoint", "missing_layouts", "bad_layout", "size", "layout_size",
                                     "batch_size", "minatar_option"])
def test_cli_errors_exit_2_naming_the_value(problem, untrained_checkpoint, tmp_path, capsys):
    checkpoint, extra, named = str(untrained_checkpoint), [], None
    if problem == "missing_checkpoint":
        checkpoint = named = str(tmp_path / "no_such_checkpoint")
    elif problem == "missing_layouts":
        extra = ["--layouts", str(tmp_path / "no_such_layouts.txt")]
        named = "no_such_layouts.txt"
    elif problem == "bad_layout":
        path = tmp_path / "bad.txt"
        path.write_text(_layout(0, OVERFIT_START) + "\n\n#####\n#.X.#\n#####\n")
        extra, named = ["--layouts", str(path)], "layout 2"
    elif problem == "size":
        extra, named = ["--size", "9"], "--size 9"
    elif problem == "batch_size":
        extra, named = ["--batch-size", "0"], "batch_size must be at least 1, got 0"
    elif problem == "minatar_option":
        extra, named = ["--episodes", "3", "--setting", "train"], "episodes=3, setting='train': only for MinAtar"
    else:
        path = tmp_path / "small.txt"
        path.write_text("#####\n#S..#\n#.#.#\n#..G#\n#####\n")
        extra, named = ["--layouts", str(path)], "5x5"
    assert cli_main(["evaluate", checkpoint, *extra]) == 2
    err = capsys.readouterr().err
    assert "pc-transformers evaluate: error:" in err and named in err


def test_recipe_smoke_subprocess(untrained_checkpoint, tmp_path):
    out = tmp_path / "smoke.json"
    # The script's own folder, not the repo, heads sys.path: point the subprocess at this checkout explicitly.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "evaluate.py"), str(untrained_checkpoint), "--mazes", "2",
         "--starts", "1", "--max-steps", "5", "--json", str(out)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "success rate" in proc.stdout and "forward passes / step" in proc.stdout
    assert RESULT_KEYS <= set(json.loads(out.read_text()))
