"""Shared tiny fixtures: tokenizers, configs, expert datasets, batches and one model overfit on one maze.

Everything is sized to run in seconds on a shared CPU: 7×7 mazes (the smallest size whose tunnel maze has a
6-step shortest path), models of hidden size 32 with 2 layers.
"""

from __future__ import annotations

from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch

from pc_transformers import PCConfig, PCForProcedureCloning, PCTokenizer
from pc_transformers.data import PCDataCollator, build_examples, generate_maze_dataset, record_from_row

# The test machine's few cores are shared: one intra-op thread is an order of magnitude faster than several
# threads that spin against other jobs, and keeps every result deterministic.
torch.set_num_threads(1)
datasets.disable_progress_bars()

GRID_SIZE = 7
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)

# The overfit fixture: maze seed 0 (7×7), one expert trajectory from (5, 1), 6 steps from the goal (seed=3 of
# generate_maze_dataset draws that start), so its decisions need 2 to 7 maps.
OVERFIT_MAZE_SEED = 0
OVERFIT_DATA_SEED = 3
OVERFIT_START = (5, 1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def tokenizer() -> PCTokenizer:
    return PCTokenizer.for_maze()


@pytest.fixture(scope="session")
def trace_tokenizer() -> PCTokenizer:
    return PCTokenizer.for_maze("bfs_trace")


@pytest.fixture(scope="session")
def make_config(tokenizer, trace_tokenizer):
    """``make_config(procedure_format="bfs_maps", **overrides)``: a tiny config with the tokenizer's token layout."""

    def make(procedure_format: str = "bfs_maps", **kwargs) -> PCConfig:
        tok = trace_tokenizer if procedure_format == "bfs_trace" else tokenizer
        return PCConfig.from_tokenizer(tok, **{"grid_size": GRID_SIZE, **TINY, **kwargs})

    return make


@pytest.fixture(scope="session")
def maze_dataset():
    """Two 7×7 training mazes, one expert trajectory each, ``bfs_maps`` procedures."""
    return generate_maze_dataset(size=GRID_SIZE, train_mazes=2, test_mazes=0, trajectories=1, progress=False)["train"]


@pytest.fixture(scope="session")
def trace_dataset():
    """As `maze_dataset`, with ``bfs_trace`` procedures."""
    return generate_maze_dataset(size=GRID_SIZE, train_mazes=2, test_mazes=0, trajectories=1,
                                 procedure_format="bfs_trace", progress=False)["train"]


@pytest.fixture(scope="session")
def make_examples(tokenizer, trace_tokenizer, maze_dataset, trace_dataset):
    """``make_examples(config)``: the tokenized training examples of the tiny dataset for ``config``."""

    def make(config: PCConfig):
        text = config.procedure_format == "bfs_trace"
        return build_examples(trace_dataset if text else maze_dataset, trace_tokenizer if text else tokenizer, config)

    return make


@pytest.fixture(scope="session")
def make_batch(make_examples, tokenizer):
    """``make_batch(config, num_examples=3)``: a right-padded batch (input_ids, attention_mask, labels)."""

    def make(config: PCConfig, num_examples: int = 3) -> dict[str, torch.Tensor]:
        examples = make_examples(config)
        return PCDataCollator(tokenizer.pad_token_id)([examples[i] for i in range(num_examples)])

    return make


def _grid_prompts(tokenizer, rows) -> torch.Tensor:
    """``<s> state <proc>`` prompts for dataset rows (numpy format)."""
    states = [tokenizer.state_tokens(r["walls"], tuple(r["goal"]), tuple(r["agent"])) for r in rows]
    return torch.tensor([tokenizer.strict_ids(["<s>", *state, "<proc>"]) for state in states])


def _decode_matches_expert(out, records) -> list[bool]:
    """Per example: the decoded maps and action equal the expert's `BFSMapsRecord` exactly."""
    from pc_transformers.procedures import BFSMapsRecord

    matches = []
    for j, record in enumerate(records):
        n = int(out.num_maps[j])
        ok = bool(out.valid[j]) and n == record.maps.shape[0]
        ok = ok and BFSMapsRecord(maps=out.maps[j, :n].numpy(), action=int(out.actions[j])) == record
        matches.append(bool(ok))
    return matches


@pytest.fixture(scope="session")
def grid_prompts():
    """``grid_prompts(tokenizer, rows)``: ``(len(rows), N + 2)`` prompts ``<s> state <proc>`` for dataset rows."""
    return _grid_prompts


@pytest.fixture(scope="session")
def expert_match():
    """``expert_match(decode_output, records)``: per example, whether the decoded maps and action equal the expert's
    `BFSMapsRecord` exactly."""
    return _decode_matches_expert


@pytest.fixture(scope="session")
def overfit(tokenizer, make_config):
    """A grid PC Markov model trained with plain AdamW until ``generate_grid`` reproduces, from every state of one
    expert trajectory, the expert's maps and action exactly (a few seconds on one CPU thread)."""
    dataset = generate_maze_dataset(size=GRID_SIZE, train_mazes=1, test_mazes=0, trajectories=1,
                                    seed=OVERFIT_DATA_SEED, progress=False)["train"]
    rows = dataset.with_format("numpy")
    assert int(rows[0]["maze_seed"]) == OVERFIT_MAZE_SEED and tuple(rows[0]["agent"]) == OVERFIT_START
    records = [record_from_row(r, "bfs_maps") for r in rows]
    prompts = _grid_prompts(tokenizer, rows)
    config = make_config(num_attention_heads=4)
    examples = build_examples(dataset, tokenizer, config)
    batch = PCDataCollator(tokenizer.pad_token_id)(list(examples))

    torch.manual_seed(0)
    model = PCForProcedureCloning(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    matched, step = False, 0
    for step in range(1, 401):
        model.train()
        out = model(**batch)
        optimizer.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        is_check_step = step % 10 == 0 and out.procedure_loss.item() < 0.05
        if is_check_step:
            model.eval()
            matched = all(_decode_matches_expert(model.generate_grid(prompts), records))
            if matched:
                break
    model.eval()
    return SimpleNamespace(model=model, tokenizer=tokenizer, dataset=dataset, rows=rows, records=records,
                           prompts=prompts, batch=batch, matched=matched, steps=step,
                           maze_seed=OVERFIT_MAZE_SEED, start=OVERFIT_START)


# ---------------------------------------------------------------------------------------------- loopback Hub
@pytest.fixture(scope="module")
def hub():
    """A loopback Hub-compatible server (tests/hub_server.py) for the module's tests."""
    from hub_server import HubServer

    server = HubServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def hub_env(hub, tmp_path):
    """Environment for a client subprocess talking to ``hub`` with fresh caches."""
    from hub_server import client_env

    return client_env(hub.url, tmp_path)
