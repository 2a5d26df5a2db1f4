"""Data of the training recipe (``recipes/train.py``): the expert dataset (`load_data`: an existing ``dataset``
directory, or generated once into ``{output_dir}/data``), the tokenizer and model config for the domain
(`tokenizer_and_model_config`), and the sampler that makes the data order a function of (seed, step) only
(`StepBatchSampler`), so that it is the same for any number of processes and after ``--resume``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .configuration_pc import PCConfig
from .data import (
    generate_maze_dataset,
    generate_minatar_dataset,
    load_maze_dataset,
    load_minatar_dataset,
    save_maze_dataset,
    save_minatar_dataset,
)
from .data.minatar_dataset import minatar_max_reward, minatar_procedure_length
from .envs.minatar import minatar_game_info
from .tokenization_pc import PCTokenizer
from .training_config import TrainConfig


class StepBatchSampler(torch.utils.data.Sampler):
    """Global batches of example indices, from batch ``start`` on: epochs of seeded permutations, one after the
    other (permutation ``e`` is seeded with ``seed + e``), so batch ``k`` depends on (seed, k) only."""

    def __init__(self, num_examples: int, batch_size: int, num_batches: int, seed: int, start: int = 0):
        self.num_examples, self.batch_size, self.num_batches = num_examples, batch_size, num_batches
        self.seed, self.start = seed, start

    def __len__(self) -> int:
        return self.num_batches - self.start

    def __iter__(self):
        epoch, offset = divmod(self.start * self.batch_size, self.num_examples)
        buffer: list[int] = []
        for _ in range(len(self)):
            while len(buffer) < self.batch_size:
                order = torch.randperm(self.num_examples, generator=torch.Generator().manual_seed(self.seed + epoch))
                buffer += order.tolist()[offset:]
                epoch, offset = epoch + 1, 0
            yield buffer[: self.batch_size]
            buffer = buffer[self.batch_size :]


def load_data(config: TrainConfig):
    """The expert dataset: ``config.dataset`` if given, else generated into ``{output_dir}/data`` once."""
    minatar = config.domain == "minatar"
    load = load_minatar_dataset if minatar else load_maze_dataset
    data_dir = Path(config.dataset or Path(config.output_dir) / "data")
    if config.dataset is not None or (data_dir / "data").is_dir():
        dataset = load(data_dir)
    elif minatar:
        dataset = generate_minatar_dataset(config.minatar)
        save_minatar_dataset(dataset, data_dir, config.minatar)
    else:
        dataset = generate_maze_dataset(config.data)
        save_maze_dataset(dataset, data_dir, config.data)
    if minatar and set(dataset["train"].unique("game")) != {config.minatar.game}:
        raise ValueError(f"{data_dir} holds {sorted(set(dataset['train'].unique('game')))} data, but minatar.game is "
                         f"{config.minatar.game!r}")
    return dataset


def tokenizer_and_model_config(config: TrainConfig, train) -> tuple[PCTokenizer, PCConfig]:
    """The tokenizer and the model config for the domain: MinAtar's from the game and the data (largest predicted
    reward, longest procedure), the maze's from the data config."""
    if config.domain == "maze":
        tokenizer = PCTokenizer.for_maze(config.data.procedure_format)
        return tokenizer, PCConfig.from_tokenizer(tokenizer, grid_size=config.data.size, **config.model)
    game = minatar_game_info(config.minatar.game)
    tokenizer = PCTokenizer.for_minatar(max_reward=minatar_max_reward(train))
    length = minatar_procedure_length(train, config.model.get("branch_order", "visits"))
    model = {"max_procedure_steps": length, **config.model}
    return tokenizer, PCConfig.from_tokenizer(tokenizer, num_channels=game.num_channels,
                                              num_actions=game.num_actions, **model)
