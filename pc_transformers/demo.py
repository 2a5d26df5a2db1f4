"""The small end-to-end maze demo (the README's main command): expert data, PC and BC, unseen mazes, checkpoints.

It generates one expert dataset and runs the training recipe (``recipes/train.py``, Accelerate) on it twice with the
same backbone and budget, once as PC and once as BC; each run evaluates on the same unseen mazes and saves its policy
to ``{out}/{pc,bc}/final``.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .data import MazeDataConfig, generate_maze_dataset, save_maze_dataset
from .recipes import load_recipe


@dataclass
class DemoConfig:
    """Args:
    out: output directory (data/, pc/, bc/, results.json).
    size: maze side.
    wall_type: maze generator.
    train_mazes: training mazes (the paper: 5).
    trajectories: expert trajectories per training maze (the paper: 4).
    test_mazes: unseen mazes to evaluate on.
    starts_per_maze: random starts per unseen maze.
    steps: optimizer steps per model.
    batch_size: expert decisions per step.
    learning_rate: AdamW learning rate.
    seed: seeds data, initialization and evaluation.
    """

    out: str = "outputs/demo"
    size: int = 8
    wall_type: str = "tunnel"
    train_mazes: int = 5
    trajectories: int = 4
    test_mazes: int = 50
    starts_per_maze: int = 2
    steps: int = 300
    batch_size: int = 8
    learning_rate: float = 3e-3
    seed: int = 0


def run_demo(config: DemoConfig | None = None) -> dict:
    """Generate expert data, train PC and BC with the same backbone, evaluate both on unseen mazes, save both."""
    config = config or DemoConfig()
    out = Path(config.out)
    data_config = MazeDataConfig(size=config.size, wall_type=config.wall_type, train_mazes=config.train_mazes,
                                 test_mazes=0, trajectories=config.trajectories, seed=config.seed)
    save_maze_dataset(generate_maze_dataset(data_config), out / "data", data_config)

    recipe = load_recipe("train")
    results = {"config": asdict(config), "hardware": f"{platform.machine()}, {torch.get_num_threads()} threads"}
    for objective in ("pc", "bc"):
        run = recipe.TrainConfig(
            output_dir=str(out / objective), seed=config.seed, dataset=str(out / "data"), data=data_config,
            model={"objective": objective},
            train=recipe.OptimArgs(max_steps=config.steps, batch_size=config.batch_size,
                                   learning_rate=config.learning_rate, lr_scheduler="constant",
                                   max_grad_norm=0.0),  # unclipped, as in the results the README reports
            eval=recipe.EvalArgs(every=0, final_mazes=config.test_mazes, final_starts=config.starts_per_maze),
            save_every=0, save_total_limit=1,
        )
        results[objective] = recipe.main(run)

    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nUnseen {config.size}x{config.size} {config.wall_type} mazes ({config.test_mazes} mazes x "
          f"{config.starts_per_maze} starts), trained on {config.train_mazes} mazes x {config.trajectories} "
          f"trajectories:")
    for objective in ("pc", "bc"):
        r = results[objective]
        low, high = r["success_ci95"]
        print(f"  {objective.upper():3s} success {r['success_rate']:6.1%}  (95% CI {low:.1%}-{high:.1%}), "
              f"trained {r['training']['train_seconds']:.0f}s, saved to {out / objective / 'final'}")
    return results
