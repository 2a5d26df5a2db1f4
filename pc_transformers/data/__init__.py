"""Expert datasets (`maze_dataset`, `minatar_dataset`) and the path from their rows to model inputs (`collator`).

The MinAtar module needs nothing beyond the package's own dependencies to import; generating data needs the
``minatar`` extra."""

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
from .minatar_dataset import (
    MinAtarDataConfig,
    build_minatar_examples,
    generate_minatar_dataset,
    load_minatar_dataset,
    mcts_record_from_row,
    minatar_config_from_card,
    minatar_dataset_card,
    minatar_features,
    save_minatar_dataset,
    write_minatar_card,
)

__all__ = [
    "IGNORE_INDEX",
    "MazeDataConfig",
    "MinAtarDataConfig",
    "PCDataCollator",
    "build_examples",
    "build_minatar_examples",
    "dataset_card",
    "examples_from_row",
    "generate_maze_dataset",
    "generate_minatar_dataset",
    "load_maze_dataset",
    "load_minatar_dataset",
    "maze_features",
    "mcts_record_from_row",
    "minatar_config_from_card",
    "minatar_dataset_card",
    "minatar_features",
    "procedure_format_of",
    "record_from_row",
    "save_maze_dataset",
    "save_minatar_dataset",
    "write_minatar_card",
]
