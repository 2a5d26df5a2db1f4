"""Expert datasets (`maze_dataset`) and the path from their rows to model inputs (`collator`)."""

from .collator import IGNORE_INDEX, PCDataCollator, build_examples, examples_from_row
from .maze_dataset import (
    MazeDataConfig,
    dataset_card,
    generate_maze_dataset,
    load_maze_dataset,
    maze_features,
    procedure_format_of,
    record_from_row,
    save_maze_dataset,
)

__all__ = [
    "MazeDataConfig",
    "generate_maze_dataset",
    "save_maze_dataset",
    "load_maze_dataset",
    "dataset_card",
    "maze_features",
    "record_from_row",
    "procedure_format_of",
    "PCDataCollator",
    "build_examples",
    "examples_from_row",
    "IGNORE_INDEX",
]
