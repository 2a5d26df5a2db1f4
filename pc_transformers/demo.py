"""The small end-to-end maze demo (the README's main command): expert data, PC and BC, unseen mazes, checkpoint.

It is one linear path through the library with a plain PyTorch loop; the Accelerate recipes (``recipes/``) add
multi-process training, logging, periodic evaluation and resumable checkpoints on top of the same pieces.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .configuration_pc import PCConfig
from .data import MazeDataConfig, PCDataCollator, build_examples, generate_maze_dataset, save_maze_dataset
from .envs import maze_splits
from .evaluation import evaluate_policy
from .modeling_pc import PCForProcedureCloning
from .policy import PCPolicy
from .tokenization_pc import PCTokenizer


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


def train_model(model, examples, collator, steps: int, batch_size: int, learning_rate: float, seed: int,
                desc: str = "train") -> list[float]:
    """A plain training loop (AdamW, uniform sampling with replacement); returns the loss per step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    with tqdm(range(steps), desc=desc) as bar:
        for _ in bar:
            index = torch.randint(len(examples), (batch_size,), generator=generator).tolist()
            batch = collator([examples[i] for i in index])
            loss = model(**batch).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.4f}")
    model.eval()
    return losses


def run_demo(config: DemoConfig | None = None) -> dict:
    """Generate expert data, train PC and BC with the same backbone, evaluate both on unseen mazes, save both."""
    config = config or DemoConfig()
    out = Path(config.out)
    torch.manual_seed(config.seed)
    data_config = MazeDataConfig(size=config.size, wall_type=config.wall_type, train_mazes=config.train_mazes,
                                 test_mazes=0, trajectories=config.trajectories, seed=config.seed)
    dataset = generate_maze_dataset(data_config)
    save_maze_dataset(dataset, out / "data", data_config)
    tokenizer = PCTokenizer.for_maze("bfs_maps")
    collator = PCDataCollator(tokenizer.pad_token_id)
    test_seeds = maze_splits(config.train_mazes, config.test_mazes).test

    results = {"config": asdict(config), "hardware": f"{platform.machine()}, {torch.get_num_threads()} threads"}
    for objective in ("pc", "bc"):
        torch.manual_seed(config.seed)
        model_config = PCConfig.from_tokenizer(tokenizer, grid_size=config.size, objective=objective)
        model = PCForProcedureCloning(model_config)
        examples = build_examples(dataset["train"], tokenizer, model_config)
        start = time.perf_counter()
        losses = train_model(model, examples, collator, config.steps, config.batch_size, config.learning_rate,
                             config.seed, desc=f"train {objective}")
        train_seconds = time.perf_counter() - start
        policy = PCPolicy(model, tokenizer, seed=config.seed)
        evaluation = evaluate_policy(policy, test_seeds, size=config.size, wall_type=config.wall_type,
                                     starts_per_maze=config.starts_per_maze, seed=config.seed, progress=True)
        policy.save_pretrained(out / objective)
        results[objective] = {"final_loss": losses[-1], "train_seconds": train_seconds, **evaluation}

    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nUnseen {config.size}x{config.size} {config.wall_type} mazes ({config.test_mazes} mazes x "
          f"{config.starts_per_maze} starts), trained on {config.train_mazes} mazes x {config.trajectories} "
          f"trajectories:")
    for objective in ("pc", "bc"):
        r = results[objective]
        low, high = r["success_ci95"]
        print(f"  {objective.upper():3s} success {r['success_rate']:6.1%}  (95% CI {low:.1%}-{high:.1%}), "
              f"trained {r['train_seconds']:.0f}s, saved to {out / objective}")
    return results
