"""Tests for pc_transformers.data and ``pc-transformers generate maze``: expert datasets, their card, the collator.

Layers: generation is deterministic and seeded; every row is the expert's decision (recomputed here from the row's
maze with the procedures) and every trajectory replays in the environment to the goal; the train/test maze seeds are
`maze_splits`'; explicit Features and every value survive Parquet exactly; the card states what the data holds;
examples and batches follow the token grammar and transformers' padding conventions; the CLI runs as a subprocess.
Configs are tiny (8x8 mazes, 2-3 mazes, 1-2 trajectories).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import asdict
from itertools import groupby

import datasets
import numpy as np
import pytest
import torch
from huggingface_hub import DatasetCard

from pc_transformers import PCConfig, PCTokenizer, cli
from pc_transformers.data import (
    IGNORE_INDEX,
    MazeDataConfig,
    PCDataCollator,
    build_examples,
    generate_maze_dataset,
    load_maze_dataset,
    maze_features,
    procedure_format_of,
    record_from_row,
    save_maze_dataset,
)
from pc_transformers.envs import MazeEnv, make_maze, maze_splits
from pc_transformers.procedures import bfs_maps, bfs_trace

EXPERTS = {"bfs_maps": bfs_maps, "bfs_trace": bfs_trace}
FORMATS = tuple(EXPERTS)
SIZE = 8


def tiny_config(procedure_format: str = "bfs_maps", **overrides) -> MazeDataConfig:
    fields = dict(size=SIZE, wall_type="tunnel", train_mazes=3, test_mazes=2, trajectories=2,
                  procedure_format=procedure_format)
    return MazeDataConfig(**{**fields, **overrides})


@pytest.fixture(autouse=True, scope="module")
def isolated_datasets_cache(tmp_path_factory):
    """Keep `load_dataset`'s Arrow cache out of the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.mktemp("hf_datasets_cache"))
        yield


@pytest.fixture(scope="module")
def generated():
    """``{procedure_format: (config, DatasetDict)}``."""
    out = {}
    for fmt in FORMATS:
        config = tiny_config(fmt)
        out[fmt] = (config, generate_maze_dataset(config, progress=False))
    return out


@pytest.fixture(scope="module")
def saved(generated, tmp_path_factory):
    """``{procedure_format: directory written by save_maze_dataset}``."""
    return {
        fmt: save_maze_dataset(dataset, tmp_path_factory.mktemp(fmt), config)
        for fmt, (config, dataset) in generated.items()
    }


def trajectories_of(split: datasets.Dataset):
    """``[(maze_seed, trajectory, [rows...])]`` in dataset order (rows of one trajectory are consecutive)."""
    rows = split.with_format("numpy")
    keyed = [(int(rows[i]["maze_seed"]), int(rows[i]["trajectory"]), rows[i]) for i in range(len(rows))]
    return [(seed, traj, [r for *_, r in group]) for (seed, traj), group in
            groupby(keyed, key=lambda item: item[:2])]


# ------------------------------------------------------------------------------------------------- generation


def test_generation_is_deterministic_and_seeded():
    config = tiny_config("bfs_maps", train_mazes=3, test_mazes=1)
    first, second = (generate_maze_dataset(config, progress=False) for _ in range(2))
    assert list(first) == list(second) == ["train", "test"]
    for split in first:
        assert first[split].features == second[split].features
        assert first[split].to_list() == second[split].to_list()
    # Keyword arguments are the same as a config.
    assert generate_maze_dataset(progress=False, **asdict(config))["train"].to_list() == first["train"].to_list()

    other = generate_maze_dataset(tiny_config("bfs_maps", train_mazes=3, test_mazes=1, seed=1), progress=False)
    starts = lambda ds: [tuple(r["agent"]) for r in ds if r["step"] == 0]  # noqa: E731
    assert starts(other["train"]) != starts(first["train"])  # another seed draws other starts…
    walls_of = lambda ds: {r["maze_seed"]: (r["walls"], r["goal"]) for r in ds}  # noqa: E731
    assert walls_of(other["train"]) == walls_of(first["train"])  # …in the same mazes (fixed by maze seeds)


@pytest.mark.parametrize("procedure_format", FORMATS)
def test_every_row_is_the_experts_decision(generated, procedure_format):
    config, dataset = generated[procedure_format]
    assert dataset["train"].features == maze_features(SIZE, procedure_format)
    assert procedure_format_of(dataset["train"]) == procedure_format
    for split in dataset.values():
        for row in split.with_format("numpy"):
            walls, goal = make_maze(SIZE, config.wall_type, seed=int(row["maze_seed"]))
            assert np.array_equal(row["walls"], walls)
            assert tuple(row["goal"]) == goal
            agent = tuple(int(c) for c in row["agent"])
            expert = EXPERTS[procedure_format](walls, goal, agent)  # from scratch, not sliced from a stack
            assert record_from_row(row, procedure_format) == expert
            assert int(row["action"]) == expert.action
            path_length = expert.maps.shape[0] - 1 if procedure_format == "bfs_maps" else expert.path_length
            assert int(row["distance"]) == path_length


@pytest.mark.parametrize("procedure_format", FORMATS)
def test_trajectories_replay_in_the_env_to_the_goal(generated, procedure_format):
    config, dataset = generated[procedure_format]
    for split in dataset.values():
        trajectories = trajectories_of(split)
        seeds = sorted({seed for seed, *_ in trajectories})
        assert len(trajectories) == len(seeds) * config.trajectories  # every (maze, trajectory) once
        for seed, trajectory, rows in trajectories:
            assert [int(r["step"]) for r in rows] == list(range(len(rows)))
            env = MazeEnv(size=SIZE, wall_type=config.wall_type, maze_seed=seed)
            _, info = env.reset(options={"start": tuple(int(c) for c in rows[0]["agent"])})
            assert len(rows) == info["distance"]  # the expert walks a shortest path
            for row in rows:
                assert env.agent == tuple(int(c) for c in row["agent"])
                assert info["distance"] == int(row["distance"])
                _, reward, terminated, truncated, info = env.step(int(row["action"]))
            assert terminated and not truncated and reward == 1.0
            assert env.agent == env.goal


def test_max_steps_caps_trajectories():
    config = tiny_config("bfs_trace", train_mazes=2, test_mazes=0, trajectories=2, max_steps=1)
    dataset = generate_maze_dataset(config, progress=False)
    assert list(dataset) == ["train"]  # no test split without test mazes
    assert dataset["train"]["step"] == [0, 0, 0, 0]


def test_train_and_test_maze_seeds_are_the_splits_seeds(generated):
    config, dataset = generated["bfs_maps"]
    splits = maze_splits(config.train_mazes, config.test_mazes)
    train, test = set(dataset["train"]["maze_seed"]), set(dataset["test"]["maze_seed"])
    assert train == set(splits.train) == {0, 1, 2}
    assert test == set(splits.test)
    assert not train & test


# ------------------------------------------------------------------------------------------------ save and load


@pytest.mark.parametrize("procedure_format", FORMATS)
def test_features_and_values_survive_parquet_exactly(generated, saved, procedure_format):
    config, dataset = generated[procedure_format]
    out = saved[procedure_format]
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "test-00000-of-00001.parquet", "train-00000-of-00001.parquet"]  # no temporary files left behind
    # The variable-length procedure columns really vary in length here, so their round trip is exercised.
    column = "maps" if procedure_format == "bfs_maps" else "visited"
    assert len({len(value) for value in dataset["train"][column]}) > 1

    for loaded in (load_maze_dataset(out), datasets.load_dataset("parquet", data_dir=str(out / "data"))):
        assert set(loaded) == set(dataset)
        for split in dataset:
            assert loaded[split].features == dataset[split].features == maze_features(SIZE, procedure_format)
            assert loaded[split].to_list() == dataset[split].to_list()
        row = loaded["train"].with_format("numpy")[len(loaded["train"]) - 1]
        assert record_from_row(row, procedure_format) == record_from_row(
            dataset["train"].with_format("numpy")[len(dataset["train"]) - 1], procedure_format)


def test_load_maze_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(tmp_path))} holds no data/ folder"):
        load_maze_dataset(tmp_path)
    (tmp_path / "data").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no Parquet shards in"):
        load_maze_dataset(tmp_path)


@pytest.mark.parametrize("procedure_format", FORMATS)
def test_dataset_card_states_what_the_data_holds(generated, saved, procedure_format):
    config, dataset = generated[procedure_format]
    card = DatasetCard.load(saved[procedure_format] / "README.md")
    assert card.data.task_categories == ["reinforcement-learning"]
    assert card.data.license == "apache-2.0"
    assert card.data.pretty_name == f"BFS expert in 8x8 tunnel mazes ({procedure_format})"
    # The configs' data_files point at the shards that exist.
    (default,) = card.data.configs
    for entry in default["data_files"]:
        assert [p.name for p in saved[procedure_format].glob(entry["path"])] == [
            f"{entry['split']}-00000-of-00001.parquet"]

    # How it was made: the whole config, as JSON.
    (made_with,) = re.findall(r"```json\n(.*?)\n```", card.text, flags=re.S)
    assert json.loads(made_with) == asdict(config)
    assert "size 8, wall type `tunnel`" in card.text
    assert f"{config.trajectories} expert trajectories per maze" in card.text
    assert f"Procedure format `{procedure_format}`" in card.text

    # Contents: one table row per split, with its seeds, trajectories and row count.
    table = dict(
        (split, (seeds, int(trajectories), int(rows)))
        for split, seeds, trajectories, rows in re.findall(r"^\| (\w+) \| ([^|]+) \| (\d+) \| (\d+) \|$",
                                                          card.text, flags=re.M)
    )
    assert set(table) == set(dataset)
    for split, ds in dataset.items():
        seeds = sorted(set(ds["maze_seed"]))
        assert table[split] == (", ".join(map(str, seeds)), len(seeds) * config.trajectories, len(ds))


# ---------------------------------------------------------------------------------------- examples and batches


@pytest.mark.parametrize(
    "procedure_format, objective",
    [("bfs_maps", "pc"), ("bfs_maps", "bc"), ("bfs_trace", "pc"), ("bfs_trace", "aux_bc")],
)
def test_build_examples_follow_the_grammar(generated, procedure_format, objective):
    _, dataset = generated[procedure_format]
    split = dataset["test"]
    tokenizer = PCTokenizer.for_maze(procedure_format)
    config = PCConfig.from_tokenizer(tokenizer, grid_size=SIZE, objective=objective)
    examples = build_examples(split, tokenizer, config)
    assert examples.column_names == ["input_ids", "labels"]
    assert len(examples) == len(split)
    proc_id = tokenizer.convert_tokens_to_ids("<proc>")
    for example, row in zip(examples, split.with_format("numpy")):
        assert example["labels"] == example["input_ids"]
        walls, goal, agent = row["walls"], tuple(row["goal"]), tuple(row["agent"])
        parsed = tokenizer.parse(example["input_ids"])
        assert np.array_equal(parsed.walls, walls)
        assert (parsed.goal, parsed.agent, parsed.action) == (goal, agent, int(row["action"]))
        if objective == "bc":
            assert proc_id not in example["input_ids"]
            assert len(example["input_ids"]) == 1 + SIZE * SIZE + 3  # <s> state <act> a </s>
            assert parsed.record is None
        else:
            assert example["input_ids"].count(proc_id) == 1
            assert parsed.record == record_from_row(row, procedure_format)


def test_build_examples_errors(generated):
    _, dataset = generated["bfs_maps"]
    tokenizer = PCTokenizer.for_maze("bfs_trace")
    with pytest.raises(ValueError, match=r"holds 'bfs_maps' procedures but the model is configured for 'bfs_trace'"):
        build_examples(dataset["test"], tokenizer, PCConfig.from_tokenizer(tokenizer, grid_size=SIZE))
    tokenizer = PCTokenizer.for_maze("bfs_maps")
    with pytest.raises(ValueError, match=r"maze of shape \(8, 8\) does not fit the model's grid_size=16"):
        build_examples(dataset["test"], tokenizer, PCConfig.from_tokenizer(tokenizer, grid_size=16))
    with pytest.raises(ValueError, match=r"hold no known procedure format"):
        procedure_format_of(dataset["test"].remove_columns("maps"))
    with pytest.raises(ValueError, match=r"procedure_format must be one of .*got 'bfs_tree'"):
        record_from_row(dataset["test"][0], "bfs_tree")


def test_collator_pads_ids_labels_and_attention(generated):
    _, dataset = generated["bfs_trace"]
    tokenizer = PCTokenizer.for_maze("bfs_trace")
    examples = build_examples(dataset["train"], tokenizer, PCConfig.from_tokenizer(tokenizer, grid_size=SIZE))
    batch_examples = [examples[i] for i in range(4)]
    lengths = [len(e["input_ids"]) for e in batch_examples]
    assert len(set(lengths)) > 1  # padding is really needed
    pad = tokenizer.pad_token_id

    for multiple, expected_length in ((None, max(lengths)), (16, -(-max(lengths) // 16) * 16)):
        batch = PCDataCollator(pad_token_id=pad, pad_to_multiple_of=multiple)(batch_examples)
        assert set(batch) == {"input_ids", "attention_mask", "labels"}
        for name in batch:
            assert batch[name].shape == (4, expected_length) and batch[name].dtype == torch.long
        for i, (example, length) in enumerate(zip(batch_examples, lengths)):
            assert batch["input_ids"][i, :length].tolist() == example["input_ids"]
            assert batch["labels"][i, :length].tolist() == example["labels"]
            assert batch["attention_mask"][i, :length].tolist() == [1] * length
            assert (batch["input_ids"][i, length:] == pad).all()
            assert (batch["labels"][i, length:] == IGNORE_INDEX).all()
            assert (batch["attention_mask"][i, length:] == 0).all()
        # Padding is exactly where the attention mask is 0.
        assert torch.equal(batch["input_ids"] == pad, batch["attention_mask"] == 0)

    # Inference-style inputs carry no labels.
    unlabeled = PCDataCollator(pad_token_id=pad)([{"input_ids": e["input_ids"]} for e in batch_examples])
    assert set(unlabeled) == {"input_ids", "attention_mask"}

    with pytest.raises(ValueError, match=r"cannot collate an empty list"):
        PCDataCollator(pad_token_id=pad)([])
    short = {"input_ids": batch_examples[0]["input_ids"], "labels": batch_examples[0]["labels"][:-1]}
    with pytest.raises(ValueError, match=rf"example 1: labels \({lengths[0] - 1}\) and input_ids \({lengths[0]}\)"):
        PCDataCollator(pad_token_id=pad)([batch_examples[1], short])


# ------------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"procedure_format": "bfs_tree"},
         r"procedure_format must be one of \('bfs_maps', 'bfs_trace'\), got 'bfs_tree'"),
        ({"train_mazes": -1}, r"train_mazes must be a non-negative int, got -1"),
        ({"test_mazes": 1.5}, r"test_mazes must be a non-negative int, got 1.5"),
        ({"trajectories": 0}, r"trajectories must be a positive int, got 0"),
        ({"max_steps": 0}, r"max_steps must be a positive int, got 0"),
        ({"max_steps": "100"}, r"max_steps must be a positive int, got '100'"),
    ],
)
def test_maze_data_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**{"procedure_format": "bfs_maps", **overrides})


@pytest.mark.parametrize(
    "overrides, message",
    [({"size": 3}, r"size must be at least 5 .*got 3"), ({"wall_type": "spiral"}, r"unknown wall_type 'spiral'")],
)
def test_generate_rejects_bad_mazes(overrides, message):
    with pytest.raises(ValueError, match=message):
        generate_maze_dataset(tiny_config("bfs_maps", **overrides), progress=False)


# --------------------------------------------------------------------------------------------------------- CLI


def _cli_command() -> list[str]:
    script = shutil.which("pc-transformers")
    return [script] if script else [sys.executable, "-m", "pc_transformers.cli"]


def test_cli_generate_maze_subprocess(tmp_path):
    out = tmp_path / "out"
    command = _cli_command() + ["generate", "maze", "--size", "8", "--train-mazes", "2", "--test-mazes", "2",
                                "--trajectories", "1", "--out", str(out)]
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(command, env=env, text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"to {out}" in result.stdout
    loaded = load_maze_dataset(out)
    assert set(loaded) == {"train", "test"}
    assert set(loaded["train"]["maze_seed"]) == {0, 1}
    assert set(loaded["test"]["maze_seed"]) == set(maze_splits(2, 2).test)
    assert loaded["train"].features == maze_features(8, "bfs_maps")
    assert set(loaded["train"]["trajectory"]) == {0}
    assert DatasetCard.load(out / "README.md").data.pretty_name == "BFS expert in 8x8 tunnel mazes (bfs_maps)"


# The failure paths run in-process (each subprocess pays the package import again); `main` returns the exit status
# that the console script passes to sys.exit, and argparse exits with 2 itself.
@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "3"], r"pc-transformers generate: error: size must be at least 5 .*got 3"),
        (["--wall-type", "spiral"], r"pc-transformers generate: error: unknown wall_type 'spiral'"),
        (["--trajectories", "0"], r"pc-transformers generate: error: trajectories must be a positive int, got 0"),
        (["--procedure", "bfs_tree"], r"argument --procedure: invalid choice: 'bfs_tree'"),
        (["--size", "eight"], r"argument --size: invalid int value: 'eight'"),
    ],
)
def test_cli_bad_arguments_exit_2_naming_the_value(tmp_path, capsys, args, message):
    argv = ["generate", "maze", "--train-mazes", "1", "--test-mazes", "0", "--trajectories", "1",
            "--out", str(tmp_path / "out"), *args]
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ symmetry augmentation
def test_dihedral_images_are_the_eight_symmetries_of_the_square():
    from pc_transformers.data.maze_dataset import dihedral, dihedral_cell

    grid = np.arange(25).reshape(5, 5)
    images = [dihedral(grid, s) for s in range(8)]
    assert len({image.tobytes() for image in images}) == 8  # all distinct on an asymmetric grid
    assert np.array_equal(images[0], grid)
    assert np.array_equal(images[1], np.rot90(grid)) and np.array_equal(images[4], grid[:, ::-1])
    for s, image in enumerate(images):
        for cell in ((0, 0), (1, 3), (4, 2)):
            assert image[dihedral_cell(cell, 5, s)] == grid[cell]  # cells move with their contents
    with pytest.raises(ValueError, match="symmetry must be in"):
        dihedral(grid, 8)
    with pytest.raises(ValueError, match="square grid"):
        dihedral(np.zeros((3, 4)), 1)
    with pytest.raises(ValueError, match="augment must be one of"):
        tiny_config(augment="rot90")


@pytest.mark.parametrize("procedure_format", FORMATS)
def test_dihedral_augmentation_asks_the_expert_on_every_image(procedure_format):
    from pc_transformers.data.maze_dataset import dihedral, dihedral_cell

    plain = generate_maze_dataset(tiny_config(procedure_format, train_mazes=2, test_mazes=1), progress=False)
    augmented = generate_maze_dataset(tiny_config(procedure_format, train_mazes=2, test_mazes=1, augment="dihedral"),
                                      progress=False)
    train = augmented["train"]
    assert sorted(set(train["symmetry"])) == list(range(8))
    assert set(augmented["test"]["symmetry"]) == {0}  # held-out data is never augmented
    assert augmented["test"].to_list() == plain["test"].to_list()
    originals = [row for row in train.to_list() if row["symmetry"] == 0]
    plain_rows = plain["train"].to_list()
    assert originals == plain_rows  # the original data, unchanged
    by_key = {(r["maze_seed"], r["trajectory"], r["step"]): r for r in train.with_format("numpy") if r["symmetry"] == 0}
    for row in train.with_format("numpy"):
        symmetry = int(row["symmetry"])
        source = by_key[(int(row["maze_seed"]), int(row["trajectory"]), int(row["step"]))]
        walls = dihedral(np.asarray(source["walls"]), symmetry)
        goal = dihedral_cell(tuple(source["goal"]), SIZE, symmetry)
        agent = dihedral_cell(tuple(source["agent"]), SIZE, symmetry)
        assert np.array_equal(row["walls"], walls) and tuple(row["goal"]) == goal and tuple(row["agent"]) == agent
        expert = EXPERTS[procedure_format](walls, goal, agent)  # asked again on the image, from scratch
        assert record_from_row(row, procedure_format) == expert and int(row["action"]) == expert.action
        assert int(row["distance"]) == int(source["distance"])
