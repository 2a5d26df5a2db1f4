"""Expert datasets: BFS-expert rollouts in mazes as Hugging Face `datasets` (Parquet, explicit `Features`).

One row is one decision of the expert: the maze, the goal, the agent's cell, the expert's procedure and its action.
Rows of the same maze, trajectory and symmetry are consecutive, ``step`` counts within a trajectory.

Symmetry augmentation (``augment="dihedral"``, training split only): every expert trajectory is also written in the 7
other images of the square under rotations and reflections. The walls, goal and the agent's cells along the trajectory
are transformed, and the expert is asked again on the transformed maze (so the procedure and the action follow its own
tie-breaking, never a remapped copy that could disagree with it). The maze layouts and the start cells stay those of
the original data budget; only their symmetric images are added. The ``symmetry`` column says which image a row is
(0: the original, see `dihedral`).

On disk (the layout of a Hub dataset repository, so it can be pushed as is)::

    DIR/README.md                                  dataset card (YAML: configs, license, tags)
    DIR/data/train-00000-of-00001.parquet          training mazes
    DIR/data/test-00000-of-00001.parquet           held-out mazes (seeds disjoint from training)

Load it with ``load_maze_dataset(DIR)`` or ``datasets.load_dataset("parquet", data_dir=f"{DIR}/data")``.
"""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
from datasets import Array2D, Array3D, ClassLabel, Dataset, DatasetDict, Features, List, Value
from huggingface_hub import DatasetCard, DatasetCardData
from tqdm.auto import tqdm

from ..envs.maze import MazeEnv, make_maze, maze_splits
from ..grid import ACTION_NAMES
from ..procedures import BFSMapsRecord, BFSTraceRecord, all_bfs_maps, bfs_trace, record_from_maps

PROCEDURE_COLUMNS = {"bfs_maps": ("maps",), "bfs_trace": ("visited", "path")}
AUGMENTATIONS = ("none", "dihedral")
# The paper, as the dataset cards (maze and MinAtar) cite it.
PAPER_BIBTEX = """```bibtex
@inproceedings{yang2022chain,
  title={Chain of Thought Imitation with Procedure Cloning},
  author={Yang, Mengjiao and Schuurmans, Dale and Abbeel, Pieter and Nachum, Ofir},
  booktitle={Advances in Neural Information Processing Systems},
  year={2022}
}
```"""
NUM_SYMMETRIES = 8


def dihedral(grid: np.ndarray, symmetry: int) -> np.ndarray:
    """Image of a ``(size, size, ...)`` array under symmetry ``0 … 7`` of the square: ``symmetry % 4`` quarter turns
    (``np.rot90``), then a left-right reflection if ``symmetry >= 4``. Symmetry 0 is the identity."""
    if not 0 <= symmetry < NUM_SYMMETRIES:
        raise ValueError(f"symmetry must be in [0, {NUM_SYMMETRIES}), got {symmetry!r}")
    if grid.ndim < 2 or grid.shape[0] != grid.shape[1]:
        raise ValueError(f"dihedral images need a square grid, got shape {grid.shape}")
    out = np.rot90(grid, symmetry % 4, axes=(0, 1))
    return np.ascontiguousarray(out[:, ::-1] if symmetry >= 4 else out)


def dihedral_cell(cell, size: int, symmetry: int) -> tuple[int, int]:
    """Where ``cell`` (x, y) of a ``size × size`` grid lands in its image under `dihedral` ``symmetry``."""
    marker = np.zeros((size, size), dtype=bool)
    marker[tuple(cell)] = True
    x, y = np.argwhere(dihedral(marker, symmetry))[0]
    return int(x), int(y)


@dataclass(frozen=True)
class MazeDataConfig:
    """What `generate_maze_dataset` builds; saved in the card so a dataset says how it was made.

    Args:
        size: side of the square mazes.
        wall_type: maze generator (``tunnel``, ``blocks``, ``empty``).
        train_mazes: number of training maze seeds (``0 … train_mazes-1``, the paper's convention).
        test_mazes: number of held-out maze seeds, drawn from a range disjoint from training (`maze_splits`).
        trajectories: expert trajectories per maze, each from a random start.
        procedure_format: ``bfs_maps`` or ``bfs_trace``.
        max_steps: cap on a trajectory's length (the paper: 100).
        seed: seeds the random starts.
        augment: ``none``, or ``dihedral`` to add the 7 rotated/reflected images of every training trajectory (the
            test split is never augmented).
    """

    size: int = 16
    wall_type: str = "tunnel"
    train_mazes: int = 5
    test_mazes: int = 20
    trajectories: int = 4
    procedure_format: str = "bfs_maps"
    max_steps: int = 100
    seed: int = 0
    augment: str = "none"

    def __post_init__(self):
        # Fail at construction, not at the first maze: make a throwaway maze of this size and wall type.
        make_maze(self.size, self.wall_type, seed=0)
        if self.procedure_format not in PROCEDURE_COLUMNS:
            raise ValueError(f"procedure_format must be one of {tuple(PROCEDURE_COLUMNS)}, got {self.procedure_format!r}")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {self.augment!r}")
        for name in ("train_mazes", "test_mazes", "trajectories", "max_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (name in ("trajectories", "max_steps") and value == 0):
                raise ValueError(f"{name} must be a {'positive' if name in ('trajectories', 'max_steps') else 'non-negative'} int, got {value!r}")


def maze_features(size: int, procedure_format: str) -> Features:
    """Explicit schema; survives Parquet, ``push_to_hub`` and ``load_dataset`` exactly."""
    features = {
        "maze_seed": Value("int64"),
        "trajectory": Value("int32"),
        "step": Value("int32"),
        "walls": Array2D(shape=(size, size), dtype="bool"),
        "goal": List(Value("int16"), length=2),
        "agent": List(Value("int16"), length=2),
        "distance": Value("int32"),
        "symmetry": Value("int8"),
        "action": ClassLabel(names=list(ACTION_NAMES)),
    }
    if procedure_format == "bfs_maps":
        features["maps"] = Array3D(shape=(None, size, size), dtype="int8")  # (num_steps, size, size)
    else:
        features["visited"] = Array2D(shape=(None, 2), dtype="int16")  # (num_visited, 2)
        features["path"] = List(Value("int8"))  # (path_length,)
    return Features(features)


def record_from_row(row: dict, procedure_format: str):
    """The procedure record stored in a dataset row (as returned by ``dataset[i]`` with the numpy format)."""
    if procedure_format == "bfs_maps":
        return BFSMapsRecord(maps=np.asarray(row["maps"], dtype=np.int8), action=int(row["action"]))
    if procedure_format == "bfs_trace":
        return BFSTraceRecord(
            visited=np.asarray(row["visited"], dtype=np.int16).reshape(-1, 2),
            path=np.asarray(row["path"], dtype=np.int8),
            action=int(row["action"]),
        )
    raise ValueError(f"procedure_format must be one of {tuple(PROCEDURE_COLUMNS)}, got {procedure_format!r}")


def _expert_row(config: MazeDataConfig, walls, goal, agent, maps) -> tuple[int, dict]:
    """The expert's action and procedure columns at one state (``maps``: the maze's goal-rooted maps, or None)."""
    if maps is not None:
        record = record_from_maps(maps, agent)
        return record.action, {"maps": record.maps}
    record = bfs_trace(walls, goal, agent)
    return record.action, {"visited": record.visited, "path": record.path}


def _rollouts(config: MazeDataConfig, maze_seeds, split: str, progress: bool):
    """Yield one row per expert decision on the given mazes (and their symmetric images when augmenting)."""
    symmetries = range(NUM_SYMMETRIES) if split == "train" and config.augment == "dihedral" else range(1)
    for maze_seed in tqdm(maze_seeds, desc=f"{split} mazes", disable=not progress, leave=False):
        env = MazeEnv(size=config.size, wall_type=config.wall_type, maze_seed=int(maze_seed))
        images = []
        for symmetry in symmetries:
            walls, goal = dihedral(env.walls, symmetry), dihedral_cell(env.goal, config.size, symmetry)
            # Goal-rooted maps do not depend on the agent: compute them once per maze, slice them per decision.
            maps = all_bfs_maps(walls, goal) if config.procedure_format == "bfs_maps" else None
            images.append((symmetry, walls, goal, maps))
        for trajectory in range(config.trajectories):
            reset_seed = np.random.SeedSequence([config.seed, int(maze_seed), trajectory]).generate_state(1)[0]
            _, info = env.reset(seed=int(reset_seed))
            visited = []  # (agent, distance, action, procedure) along the expert's trajectory in the original maze
            for _ in range(config.max_steps):
                action, procedure = _expert_row(config, env.walls, env.goal, env.agent, images[0][3])
                visited.append((env.agent, int(info["distance"]), action, procedure))
                _, _, terminated, _, info = env.step(action)
                if terminated:
                    break
            for symmetry, walls, goal, maps in images:
                for step, (agent, distance, action, procedure) in enumerate(visited):
                    if symmetry:
                        agent = dihedral_cell(agent, config.size, symmetry)
                        action, procedure = _expert_row(config, walls, goal, agent, maps)
                    yield {
                        "maze_seed": int(maze_seed),
                        "trajectory": trajectory,
                        "step": step,
                        "walls": walls,
                        "goal": list(goal),
                        "agent": list(agent),
                        "distance": distance,  # distances are invariant under the symmetries
                        "symmetry": symmetry,
                        "action": action,
                        **procedure,
                    }


def generate_maze_dataset(config: MazeDataConfig | None = None, progress: bool = True, **kwargs) -> DatasetDict:
    """Roll the BFS expert out on training and held-out mazes; deterministic for a given config.

    Args:
        config: a `MazeDataConfig`, or its fields as keyword arguments.
        progress: show a progress bar per split.

    Returns:
        ``DatasetDict`` with ``train`` and (if ``test_mazes > 0``) ``test``, whose maze seeds never overlap.
    """
    config = config or MazeDataConfig(**kwargs)
    splits = maze_splits(config.train_mazes, config.test_mazes)
    features = maze_features(config.size, config.procedure_format)
    out = {}
    for split, seeds in (("train", splits.train), ("test", splits.test)):
        if not seeds:
            continue
        rows = list(_rollouts(config, seeds, split, progress))
        out[split] = Dataset.from_list(rows, features=features, split=datasets.Split(split))
    return DatasetDict(out)


def dataset_card(dataset: DatasetDict, config: MazeDataConfig) -> DatasetCard:
    """A dataset card: how the data was made, and what it holds."""
    counts = {split: len(ds) for split, ds in dataset.items()}
    trajectories = {split: len(set(zip(ds["maze_seed"], ds["trajectory"]))) for split, ds in dataset.items()}
    seeds = {split: sorted(set(ds["maze_seed"])) for split, ds in dataset.items()}
    data = DatasetCardData(
        license="apache-2.0",
        task_categories=["reinforcement-learning"],
        tags=["procedure-cloning", "imitation-learning", "maze", "bfs", "pc_transformers"],
        pretty_name=f"BFS expert in {config.size}x{config.size} {config.wall_type} mazes ({config.procedure_format})",
        configs=[{"config_name": "default",
                  "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in dataset]}],
    )
    def fmt_seeds(s):
        return f"{s[0]}…{s[-1]} ({len(s)} mazes)" if len(s) > 6 else ", ".join(map(str, s))

    rows = "\n".join(
        f"| {s} | {fmt_seeds(seeds[s])} | {trajectories[s]} | {counts[s]} |" for s in dataset
    )
    content = f"""---
{data.to_yaml()}
---

# {data.pretty_name}

Expert demonstrations for **procedure cloning** (Yang et al., NeurIPS 2022), generated with
[pc_transformers](https://github.com/pc-transformers/pc_transformers). Each row is one decision of a breadth-first-search
expert: the maze, the goal, the agent's cell, the expert's procedure (`{config.procedure_format}`) and its action.

## How it was made

```json
{json.dumps(asdict(config), indent=2)}
```

- Mazes: `pc_transformers/Maze-v0`, size {config.size}, wall type `{config.wall_type}`; the maze seed fixes the
  layout and the goal. Test maze seeds come from a range disjoint from the training seeds.
- {config.trajectories} expert trajectories per maze, each from a uniformly random free start, capped at
  {config.max_steps} steps.
- Augmentation `{config.augment}`{": every training trajectory also appears in the 7 rotated/reflected images of its maze (column `symmetry`), with the expert asked again there" if config.augment == "dihedral" else ""}.
- Procedure format `{config.procedure_format}`: see the token grammar in `pc_transformers/tokenization_pc.py`.
- Actions: 0 = x+1 (down), 1 = y+1 (right), 2 = x−1 (up), 3 = y−1 (left).
- Generated with datasets {datasets.__version__}, numpy {np.__version__}, Python {platform.python_version()}.

## Contents

| split | maze seeds | trajectories | decisions (rows) |
|---|---|---|---|
{rows}

Columns: `maze_seed`, `trajectory`, `step`, `walls` (bool, size×size), `goal`, `agent` ((x, y)), `distance`
(shortest distance to the goal), `symmetry` (0: original maze, 1–7: rotated/reflected image), `action`, and the procedure: {", ".join(f"`{c}`" for c in PROCEDURE_COLUMNS[config.procedure_format])}.

## Citation

{PAPER_BIBTEX}
"""
    return DatasetCard(content)


def save_maze_dataset(dataset: DatasetDict, out_dir, config: MazeDataConfig) -> Path:
    """Write Parquet shards and the dataset card in the Hub repository layout."""
    out_dir = Path(out_dir)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    for split, ds in dataset.items():
        tmp = out_dir / "data" / f".{split}.parquet.tmp"
        ds.to_parquet(str(tmp))
        tmp.replace(out_dir / "data" / f"{split}-00000-of-00001.parquet")  # atomic: no half-written shard
    dataset_card(dataset, config).save(out_dir / "README.md")
    return out_dir


def load_maze_dataset(path) -> DatasetDict:
    """Load a dataset written by `save_maze_dataset` (features restored from the Parquet schema)."""
    data_dir = Path(path) / "data"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{path} holds no data/ folder; expected a directory written by save_maze_dataset")
    shards = {p.name.split("-")[0]: str(p) for p in data_dir.glob("*.parquet")}
    if not shards:
        raise FileNotFoundError(f"no Parquet shards in {data_dir}")
    files = {split: shards[split] for split in sorted(shards, key=lambda s: (s != "train", s))}  # train first
    return datasets.load_dataset("parquet", data_files=files)


def procedure_format_of(dataset: Dataset) -> str:
    """The procedure format a dataset holds, read from its columns."""
    for fmt, columns in PROCEDURE_COLUMNS.items():
        if all(c in dataset.column_names for c in columns):
            return fmt
    raise ValueError(f"dataset columns {dataset.column_names} hold no known procedure format")
