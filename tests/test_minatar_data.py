"""MinAtar expert datasets (`pc_transformers.data.minatar_dataset`): rows are the MCTS expert's decisions, the schema
survives Parquet, generation is deterministic for any number of worker processes and any sharding, the card says how
the data was made, and the command line (``pc-transformers generate minatar``, ``recipes/generate_minatar.py``)
writes it.

Every dataset here is tiny (a few episodes of at most 10 steps, 6 MCTS simulations per decision): seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("PC_TRANSFORMERS_REQUIRE_MINATAR"):  # CI (.ci/run): a missing extra fails instead of skipping
    import minatar  # noqa: F401
else:
    pytest.importorskip("minatar")

import numpy as np
from datasets import ClassLabel, concatenate_datasets
from huggingface_hub import DatasetCard

from pc_transformers import PCTokenizer
from pc_transformers.data import (
    MinAtarDataConfig,
    build_minatar_examples,
    generate_minatar_dataset,
    load_minatar_dataset,
    mcts_record_from_row,
    minatar_config_from_card,
    minatar_features,
    save_minatar_dataset,
)
from pc_transformers.data.minatar_dataset import minatar_procedure_length
from pc_transformers.envs.minatar import (
    episode_seeds,
    make_minatar_env,
    minatar_game_info,
)
from pc_transformers.evaluation_minatar import decision_seed
from pc_transformers.procedures.mcts import MCTSExpert

REPO = Path(__file__).resolve().parents[1]
TINY_MCTS = {"num_simulations": 6, "max_depth": 4, "rollout_depth": 3}
CONFIG = MinAtarDataConfig(game="breakout", episodes=3, max_episode_steps=10, mcts=TINY_MCTS)


def same(a, b) -> bool:
    """Two datasets with the same schema and exactly the same rows."""
    return a.features == b.features and a.data.table.equals(b.data.table)


def subprocess_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
            "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def dataset():
    return generate_minatar_dataset(CONFIG, progress=False)["train"]


# --- config ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fields, error, match", [
    ({"game": "pong"}, ValueError, "pong"),
    ({"episodes": 0}, ValueError, "episodes must be an int >= 1, got 0"),
    ({"max_episode_steps": 2.5}, ValueError, "max_episode_steps"),
    ({"setting": "hard"}, ValueError, "hard"),
    ({"setting": {"sticky": 0.1}}, ValueError, "sticky"),
    ({"shard_index": 2, "num_shards": 2}, ValueError, r"shard_index must be in \[0, num_shards=2\), got 2"),
    ({"num_shards": 4}, ValueError, "num_shards \\(4\\) must not exceed episodes \\(3\\)"),
    ({"num_workers": 0}, ValueError, "num_workers"),
    ({"mcts": {"simulations": 4}}, ValueError, "unknown MCTS setting 'simulations'"),
    ({"mcts": {"num_simulations": 0}}, ValueError, "num_simulations"),
    ({"seed_offset": 1_000_000}, ValueError, "disjoint"),
])
def test_config_errors_name_the_value(fields, error, match):
    with pytest.raises(error, match=match):
        dataclasses.replace(CONFIG, **fields)


def test_shards_are_contiguous_blocks_that_cover_the_episodes():
    config = dataclasses.replace(CONFIG, episodes=10, num_shards=3)
    blocks = [list(dataclasses.replace(config, shard_index=k).shard_episodes) for k in range(3)]
    assert blocks == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert config.seeds == episode_seeds("train", 10)


# --- rows ------------------------------------------------------------------------------------------------------

def test_rows_are_the_experts_decisions(dataset):
    """Replay each episode from its seed with the stored actions: observations, rewards and returns match, and the
    expert, run again on the replayed state with the documented planner seed, makes exactly the stored record."""
    info = minatar_game_info("breakout")
    assert dataset.features == minatar_features(info.num_channels, info.action_names)
    assert sorted(set(dataset["episode"])) == [0, 1, 2] and set(dataset["game"]) == {"breakout"}
    rows = dataset.with_format("numpy")
    mcts = CONFIG.mcts_config
    recomputed = 0
    for episode in range(3):
        index = [i for i, e in enumerate(dataset["episode"]) if e == episode]
        seed = CONFIG.seeds[episode]
        env = make_minatar_env("breakout", "train", max_episode_steps=CONFIG.max_episode_steps)
        obs, _ = env.reset(seed=seed)
        total = 0.0
        for step, i in enumerate(index):
            row = rows[int(i)]
            assert (row["step"], row["seed"]) == (step, seed)
            np.testing.assert_array_equal(row["obs"], obs)
            record = mcts_record_from_row(row)
            assert record.action == row["action"] == record.branch_actions[0]
            assert row["return_so_far"] == total
            if step in (0, len(index) // 2):  # recompute two decisions per episode
                expert = MCTSExpert(dataclasses.replace(mcts, seed=decision_seed(mcts.seed, seed, step)))
                assert expert(env) == record
                recomputed += 1
            obs, reward, terminated, truncated, _ = env.step(int(row["action"]))
            assert row["reward"] == reward
            total += float(reward)
            last = step == len(index) - 1
            assert (terminated or truncated) == last
            assert (row["terminated"], row["truncated"]) == ((terminated, truncated and not terminated) if last
                                                             else (False, False))
        assert set(rows[index]["episode_return"].tolist()) == {total}
    assert recomputed == 6


def test_examples_tokenize_the_rows_exactly(dataset):
    """PC examples read back into the stored observation, record and action; BC examples into observation and
    action only."""
    from pc_transformers import PCConfig

    tok = PCTokenizer.for_minatar()
    rows = dataset.with_format("numpy")
    for objective in ("pc", "bc"):
        config = PCConfig.from_tokenizer(tok, num_channels=4, num_actions=3, objective=objective)
        examples = build_minatar_examples(dataset, tok, config)
        assert len(examples) == len(dataset)
        for i in (0, len(dataset) - 1):
            parsed = tok.parse_minatar(examples[i]["input_ids"], num_channels=4)
            np.testing.assert_array_equal(parsed.obs, rows[i]["obs"])
            assert parsed.action == rows[i]["action"] and examples[i]["labels"] == examples[i]["input_ids"]
            assert parsed.record == (None if objective == "bc" else mcts_record_from_row(rows[i]))
    wrong = PCConfig.from_tokenizer(tok, num_channels=7, num_actions=3)
    with pytest.raises(ValueError, match="4 channels"):
        build_minatar_examples(dataset, tok, wrong)


def test_examples_in_action_order(dataset):
    """With ``branch_order="action"`` every PC example holds its row's record in action order; the procedure length
    that sizes the model's decoding budget follows."""
    from pc_transformers import PCConfig

    tok = PCTokenizer.for_minatar()
    rows = dataset.with_format("numpy")
    config = PCConfig.from_tokenizer(tok, num_channels=4, num_actions=3, branch_order="action")
    examples = build_minatar_examples(dataset, tok, config)
    lengths = []
    for i in range(len(dataset)):
        parsed = tok.parse_minatar(examples[i]["input_ids"], num_channels=4)
        ranked = mcts_record_from_row(rows[i])
        assert parsed.record == ranked.in_action_order(3) and parsed.action == ranked.action
        lengths.append(len(parsed.record.to_tokens()))
    assert minatar_procedure_length(dataset, "action") == max(lengths)
    assert minatar_procedure_length(dataset) == max(len(mcts_record_from_row(r).to_tokens()) for r in rows)
    with pytest.raises(ValueError, match="branch_order must be one of \\('visits', 'action'\\), got 'rank'"):
        minatar_procedure_length(dataset, "rank")


# --- determinism, shards, disk ---------------------------------------------------------------------------------

def test_worker_processes_give_identical_rows(dataset):
    two = generate_minatar_dataset(dataclasses.replace(CONFIG, num_workers=2), progress=False)["train"]
    assert same(two, dataset)


def test_shards_are_disjoint_and_their_union_is_the_dataset(dataset, tmp_path):
    shards = []
    for k in range(3):
        config = dataclasses.replace(CONFIG, shard_index=k, num_shards=3)
        shard = generate_minatar_dataset(config, progress=False)
        shards.append(shard["train"])
        save_minatar_dataset(shard, tmp_path, config)
        # The card is written when the last shard arrives; until then loading names what is missing.
        assert (tmp_path / "README.md").is_file() == (k == 2)
        if k < 2:
            with pytest.raises(FileNotFoundError, match=r"lacks shard\(s\) \[" + ", ".join(map(str, range(k + 1, 3)))):
                load_minatar_dataset(tmp_path)
    episodes = [set(s["episode"]) for s in shards]
    assert all(len(e) == 1 for e in episodes) and set.union(*episodes) == {0, 1, 2}
    assert same(concatenate_datasets(shards), dataset)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [f"train-0000{k}-of-00003.parquet"
                                                                      for k in range(3)]
    loaded = load_minatar_dataset(tmp_path)["train"]
    assert same(loaded, dataset)


def test_features_survive_parquet_exactly(dataset, tmp_path):
    save_minatar_dataset({"train": dataset}, tmp_path, CONFIG)
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["train-00000-of-00001.parquet"]
    loaded = load_minatar_dataset(tmp_path)["train"]
    assert loaded.features == dataset.features and isinstance(loaded.features["action"], ClassLabel)
    assert loaded.features["obs"].shape == (10, 10, 4) and loaded.features["obs"].dtype == "bool"
    assert same(loaded, dataset)
    np.testing.assert_array_equal(loaded.with_format("numpy")[3]["obs"], dataset.with_format("numpy")[3]["obs"])


def test_card_says_how_the_data_was_made(dataset, tmp_path):
    save_minatar_dataset({"train": dataset}, tmp_path, CONFIG)
    card = DatasetCard.load(tmp_path / "README.md")
    assert {"minatar", "mcts", "breakout", "procedure-cloning"} <= set(card.data.tags)
    assert card.data.configs[0]["data_files"] == [{"split": "train", "path": "data/train-*.parquet"}]
    text = card.text
    made = json.loads(text.split("```json\n")[1].split("\n```")[0])
    assert made["mcts"]["num_simulations"] == 6 and made["mcts"]["rollout_depth"] == 3
    assert made["game"] == "breakout" and made["episodes"] == 3 and "num_workers" not in made
    returns = [r for r, s in zip(dataset["episode_return"], dataset["step"]) if s == 0]
    assert f"| 3 | {len(dataset)} | {np.mean(returns):.2f} |" in text  # episodes, decisions, expert mean return
    single = sum(len(v) > 1 and set(v) == {9} for v in dataset["branch_visits"])
    assert f"| {single} ({100 * single / len(dataset):.1f}%) |" in text
    for phrase in ("MinAtar/Breakout-v1", "sticky-action probability 0.0, difficulty ramping off",
                   "6 simulations per decision", "decision_seed(0, seed, step)", "capped at 10 steps"):
        assert phrase in text, phrase
    assert minatar_config_from_card(tmp_path).description() == CONFIG.description()


# --- command line ------------------------------------------------------------------------------------------------

def test_cli_generates_and_errors_exit_2(tmp_path, capsys):
    out = tmp_path / "freeway"
    proc = subprocess.run([sys.executable, "-m", "pc_transformers.cli", "generate", "minatar", "--game", "freeway",
                           "--episodes", "2", "--max-steps", "5", "--simulations", "4", "--rollout-depth", "2",
                           "--num-workers", "2", "--out", out], env=subprocess_env(), capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 10 expert decisions from 2 freeway episodes" in proc.stdout
    loaded = load_minatar_dataset(out)["train"]
    assert loaded.features["obs"].shape == (10, 10, 7) and len(loaded) == 10
    assert minatar_config_from_card(out).mcts["num_simulations"] == 4

    from pc_transformers.cli import main

    assert main(["generate", "minatar", "--episodes", "0", "--out", str(tmp_path / "x")]) == 2
    assert "episodes must be an int >= 1, got 0" in capsys.readouterr().err
    assert main(["generate", "minatar", "--simulations", "0", "--out", str(tmp_path / "x")]) == 2
    assert "num_simulations" in capsys.readouterr().err


def test_generate_recipe_shards_by_index_and_finalizes(dataset, tmp_path):
    """recipes/generate_minatar.py launched for shard 1 of 2 while "another machine" (here: this process) writes
    shard 0 into the same folder: together they are the single-machine dataset, the launch that completes the set
    writes the card, and --finalize rewrites it from the files alone."""
    from pc_transformers.recipes import load_recipe

    common = ["--game", "breakout", "--episodes", "3", "--max-steps", "10", "--simulations", "6", "--max-depth", "4",
              "--rollout-depth", "3", "--rollout-hold", str(CONFIG.mcts_config.rollout_hold), "--out", str(tmp_path),
              "--num-shards", "2"]
    shard0 = dataclasses.replace(CONFIG, shard_index=0, num_shards=2)
    save_minatar_dataset(generate_minatar_dataset(shard0, progress=False), tmp_path, shard0)
    assert not (tmp_path / "README.md").is_file()
    proc = subprocess.run([sys.executable, str(REPO / "recipes" / "generate_minatar.py"), *common, "--shard-index",
                           "1"], env=subprocess_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "shard 1 of 2: episodes 1-2" in proc.stdout and "and the card" in proc.stdout
    assert same(load_minatar_dataset(tmp_path)["train"], dataset)
    assert (tmp_path / "README.md").is_file()
    (tmp_path / "README.md").unlink()
    assert load_recipe("generate_minatar").main([*common, "--finalize"]) == 0
    assert minatar_config_from_card(tmp_path).description() == dataclasses.replace(CONFIG, num_shards=2).description()


# --- Hub -----------------------------------------------------------------------------------------------------------

LOAD_PUSHED = """
import os, datasets
from pc_transformers.data import load_minatar_dataset
local = load_minatar_dataset({local!r})["train"]
loaded = datasets.load_dataset("user/breakout-mcts", split="train", cache_dir=os.path.abspath("fresh_ds_cache"))
assert loaded.features == local.features, (loaded.features, local.features)
assert loaded.data.table.equals(local.data.table)
print("MINATAR_DATASET_OK")
"""


def test_push_dataset_of_two_shards_then_load_dataset(hub_env, tmp_path):
    """`pc-transformers push-dataset` uploads a sharded MinAtar dataset; `load_dataset` on the Hub id gives back the
    same rows, in order, with the same Features (loopback Hub server, real clients; tests/hub_server.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    from hub_server import run_client

    for k in range(2):
        config = dataclasses.replace(CONFIG, shard_index=k, num_shards=2)
        save_minatar_dataset(generate_minatar_dataset(config, progress=False), tmp_path / "data_dir", config)
    proc = subprocess.run([sys.executable, "-m", "pc_transformers.cli", "push-dataset", str(tmp_path / "data_dir"),
                           "--repo-id", "user/breakout-mcts", "--token", "test"], env=hub_env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "MINATAR_DATASET_OK" in run_client(hub_env, LOAD_PUSHED.format(local=str(tmp_path / "data_dir")), tmp_path)
