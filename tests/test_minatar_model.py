"""Tests for the MinAtar domain: tokenizer (cell bitmasks, the "mcts" procedure grammar), config, model and policy.

Layers: the module docstring's worked example is true; observations of every game round-trip exactly; malformed
states and procedures raise naming what is wrong; the tokenizer and its asset load with ``AutoTokenizer``; config
validation; model losses (the action scored over the game's minimal action set only), the BC readout at ``<act>``,
cached vs uncached decoding, exact save/load (also as remote code in a fresh process); the policy's constrained
decoding always yields a valid `MCTSRecord` and an action of the game; a tiny model overfit on four decisions acts
exactly like the expert records.

Procedure records are the real `MCTSRecord` (``pc_transformers/procedures/mcts.py``), built through the tokenizer's
plug-in protocol (``from_tokens``/``to_tokens``), so these tests depend on that protocol only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from decoding_checks import assert_cached_generate_is_greedy, assert_same_loss_and_gradients
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, DynamicCache

import pc_transformers  # noqa: F401  (registers the Auto classes)
from pc_transformers import PCConfig, PCForProcedureCloning, PCTokenizer
from pc_transformers import tokenization_pc as tp
from pc_transformers.data import PCDataCollator
from pc_transformers.policy import POLICY_CONFIG_NAME, MinAtarPolicy, PCPolicy, _MCTSGrammar
from pc_transformers.procedures.mcts import MCTS_WORDS, MCTSRecord, mcts_words

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
# Channels and minimal action sets of the five games (minatar 1.0.15).
GAMES = {"asterix": (4, 5), "breakout": (4, 3), "freeway": (7, 3), "seaquest": (10, 6), "space_invaders": (6, 4)}
BREAKOUT_CHANNELS, BREAKOUT_ACTIONS = GAMES["breakout"]


def record(text: str, action: int | None = None) -> MCTSRecord:
    return MCTSRecord.from_tokens(text.split(), (10, 10), action)


def game_frames(game: str, count: int, seed: int = 0) -> np.ndarray:
    """``(count, 10, 10, C)`` bool frames of a real game under a seeded random policy."""
    from minatar import Environment

    env = Environment(game, sticky_action_prob=0.0)
    env.seed(seed)
    env.reset()
    rng = np.random.default_rng(seed)
    frames = []
    while len(frames) < count:
        frames.append(env.state().copy())
        _, done = env.act(int(rng.choice(env.minimal_action_set())))
        if done:
            env.reset()
    return np.stack(frames)


def perturb(model, std: float = 0.5, seed: int = 1):
    """Move every parameter off its initialization, so outputs are far from ties."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * std)
    return model


@pytest.fixture(scope="module")
def tok() -> PCTokenizer:
    return PCTokenizer.for_minatar()


@pytest.fixture(scope="module")
def make_config(tok):
    def make(**kwargs) -> PCConfig:
        defaults = {"num_channels": BREAKOUT_CHANNELS, "num_actions": BREAKOUT_ACTIONS, **TINY}
        return PCConfig.from_tokenizer(tok, **{**defaults, **kwargs})

    return make


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    return game_frames("breakout", 4)


# Four breakout decisions (the frames above) and their expert records, one per action and shape of procedure.
RECORDS = [
    "a1 n7 q9 a0 n2 q4 a2 n0 q0 <path> a1 r0 a1 r1 a0 r0",
    "a0 n9 q9 <path> a0 r0",
    "a2 n5 q9 a1 n4 q3 <path> a2 r0 a2 r0 a1 r1 a0 r0",
    "a1 n4 q9 a2 n4 q9 a0 n1 q2 <path> a1 r1",
]


@pytest.fixture(scope="module")
def make_batch(tok, frames):
    """``make_batch(config)``: the four decisions as a right-padded training batch for ``config``'s objective."""

    def make(config: PCConfig) -> dict[str, torch.Tensor]:
        examples = []
        for obs, text in zip(frames, RECORDS):
            rec = record(text)
            ids = tok.encode_minatar_example(obs, None if config.objective == "bc" else rec, rec.action)
            examples.append({"input_ids": ids, "labels": list(ids)})
        return PCDataCollator(tok.pad_token_id)(examples)

    return make


# ============================================================================================ 1. the tokenizer
DOC_LINES = [
    "<s>",
    "c0 c0 c0 c0 c0 c0 c0 c0 c0 c0",
    *["c8 c8 c8 c8 c8 c8 c8 c8 c8 c8"] * 3,
    "c0 c0 c0 c0 c0 c0 c0 c0 c0 c0",
    "c0 c0 c0 c4 c0 c0 c0 c0 c0 c0",
    "c0 c0 c0 c0 c2 c0 c0 c0 c0 c0",
    *["c0 c0 c0 c0 c0 c0 c0 c0 c0 c0"] * 2,
    "c0 c0 c0 c0 c1 c0 c0 c0 c0 c0",
    "<proc> a1 n7 q9 a0 n2 q4 a2 n0 q0 <path> a1 r0 a1 r1 a0 r0 <act> a1 </s>",
]


def doc_observation() -> np.ndarray:
    obs = np.zeros((10, 10, 4), dtype=bool)
    obs[1:4, :, 3] = True  # bricks
    obs[5, 3, 2] = True  # trail
    obs[6, 4, 1] = True  # ball
    obs[9, 4, 0] = True  # paddle
    return obs


def test_module_docstring_worked_example_is_true(tok):
    assert "\n".join("    " + line for line in DOC_LINES) in tp.__doc__  # the test and the docs cannot drift apart
    rec = record(RECORDS[0])
    tokens = tok.minatar_example_tokens(doc_observation(), rec)
    assert " ".join(tokens) == " ".join(DOC_LINES)
    parsed = tok.parse_minatar(" ".join(DOC_LINES), num_channels=4)
    assert parsed.obs.dtype == bool and np.array_equal(parsed.obs, doc_observation())
    assert parsed.record == rec and parsed.action == 1
    two_channels = np.zeros((10, 10, 3), dtype=bool)
    two_channels[0, 0, [0, 2]] = True
    assert "``c5`` a cell where channels 0" in tp.__doc__ and tok.minatar_state_tokens(two_channels)[0] == "c5"


def test_vocabulary(tok):
    vocab = tok.get_vocab()
    assert len(tok) == len(vocab) == 8 + 1024 + 6 + 22
    maze = PCTokenizer.for_maze()
    for token in tp.SPECIAL_TOKENS:  # the same special ids as the maze tokenizer
        assert vocab[token] == maze.convert_tokens_to_ids(token)
    cells = tok.convert_tokens_to_ids([f"c{m}" for m in range(1024)])
    assert cells == list(range(cells[0], cells[0] + 1024))  # contiguous, in bitmask order
    assert tp.MCTS_WORDS == MCTS_WORDS  # the words mcts.py writes
    big = PCTokenizer.for_minatar(max_reward=11)
    assert len(big) == len(tok) + 10 and big.max_reward == 11
    assert set(mcts_words(max_reward=11)) <= set(big.get_vocab())
    assert (tok.domain, tok.procedure_format, tok.max_grid_size, tok.max_reward) == ("minatar", "mcts", 10, 1)


@pytest.mark.parametrize("game", sorted(GAMES))
def test_real_frames_round_trip_exactly(tok, game):
    channels = GAMES[game][0]
    frames = game_frames(game, 20)
    assert frames.shape[1:] == (10, 10, channels)
    for obs in frames:
        ids = tok.encode_minatar_example(obs, action=0)
        assert tok.unk_token_id not in ids and len(ids) == 104  # <s> 100 cells <act> a0 </s>
        parsed = tok.parse_minatar(ids, num_channels=channels)
        assert parsed.obs.dtype == bool and np.array_equal(parsed.obs, obs)
        assert parsed.record is None and parsed.action == 0


@pytest.mark.parametrize("channels", range(1, 11))
def test_random_observations_round_trip_exactly(tok, channels):
    rng = np.random.default_rng(channels)
    obs = rng.random((10, 10, channels)) < 0.5
    obs[0, 0] = True  # the largest bitmask of this channel count
    obs[0, 1] = False
    tokens = tok.minatar_state_tokens(obs)
    assert tokens[0] == f"c{2**channels - 1}" and tokens[1] == "c0"
    expected = [f"c{int(sum(int(b) << i for i, b in enumerate(cell)))}" for cell in obs.reshape(100, channels)]
    assert tokens == expected  # an independent computation of the bitmask
    assert np.array_equal(tok.parse_minatar_state(tokens, channels), obs)
    as_ints = tok.minatar_state_tokens(obs.astype(np.uint8))  # 0/1 numbers are accepted too
    assert as_ints == tokens


def test_ids_tokens_text_and_tensors_parse_the_same(tok, frames):
    rec = record(RECORDS[2])
    ids = tok.encode_minatar_example(frames[0], rec)
    tokens = tok.convert_ids_to_tokens(ids)
    padded = [tok.pad_token_id] * 2 + ids + [tok.pad_token_id] * 3
    for sequence in (ids, tokens, " ".join(tokens), torch.tensor(ids), np.array(ids), padded):
        parsed = tok.parse_minatar(sequence, num_channels=4)
        assert np.array_equal(parsed.obs, frames[0]) and parsed.record == rec and parsed.action == rec.action
    assert tok(" ".join(tokens)).input_ids == ids  # the plain tokenizer call agrees


@pytest.mark.parametrize("state_edit, message", [
    ({0: "c16"}, r"state cell \(0, 0\) is 'c16', which sets channel bits \[4\].*num_channels=4"),
    ({57: "c1023"}, r"state cell \(5, 7\) is 'c1023'.*bits \[4, 5, 6, 7, 8, 9\].*num_channels=4"),
    ({3: "a0"}, r"state cell \(0, 3\) is 'a0'; expected a cell token c0 … c1023"),
    ({3: "<step>"}, r"state cell \(0, 3\) is '<step>'"),
])
def test_state_cells_beyond_the_channel_count_raise(tok, state_edit, message):
    tokens = ["<s>", *["c0"] * 100, "<act>", "a0", "</s>"]
    for index, token in state_edit.items():
        tokens[1 + index] = token
    with pytest.raises(ValueError, match=message):
        tok.parse_minatar(tokens, num_channels=4)


@pytest.mark.parametrize("procedure, message", [
    ("a1 n7 q9 a0 r0", r"exactly one <path>, got 0"),
    ("<path> a1 r0", r"one or more root branches .* got 0 tokens"),
    ("a1 n7 <path> a1 r0", r"root branches .* got 2 tokens"),
    ("a1 q7 n9 <path> a1 r0", r"root branch 0 is 'a1' 'q7' 'n9'"),
    ("a1 n7 q9 <path>", r"one or more principal-variation steps .* got 0 tokens"),
    ("a1 n7 q9 <path> a1", r"principal-variation steps .* got 1 tokens"),
    ("a1 n7 q9 <path> a1 n0", r"principal-variation step 0 is 'a1' 'n0'"),
    ("a1 n7 q9 <path> a1 r0 <path> a1 r0", r"exactly one <path>, got 2"),
    ("a1 n7 q9 a1 n2 q4 <path> a1 r0", r"branch_actions must be distinct"),  # the record's own rule
    ("a1 n2 q9 a0 n7 q4 <path> a1 r0", r"non-increasing"),
    ("a1 n7 q9 <path> a0 r0", r"action must equal branch_actions\[0\] and pv_actions\[0\]"),
    # In action order (n q per action, no action words).
    ("n2 q4 n7 <path> a1 r0", r"in action order starts with one 'n<v> q<q>' pair per action .* got 3 tokens"),
    ("n2 q4 n7 q9 n0 q0 n0 q0 n0 q0 n0 q0 n0 q0 <path> a1 r0", r"at most 6\) before <path>, got 14 tokens"),
    ("n2 q4 n7 r0 n0 q0 <path> a1 r0", r"root branch 1 is 'a1' 'n7' 'r0'"),
    ("n2 q4 n7 q9 n0 q0 <path> a0 r0",
     r"one of the most visited branches \[2, 7, 0\] and equal pv_actions\[0\], got 1 and 0"),
])
def test_malformed_procedures_raise(tok, procedure, message):
    sequence = ["<s>", *["c0"] * 100, "<proc>", *procedure.split(), "<act>", "a1", "</s>"]
    with pytest.raises(ValueError, match=message):
        tok.parse_minatar(sequence, num_channels=4)


def test_action_order_round_trips_and_reads_like_the_ranked_record(tok, frames):
    full = [(text, obs) for text, obs in zip(RECORDS, frames) if record(text).num_branches == BREAKOUT_ACTIONS]
    assert len(full) == 2
    for text, obs in full:
        ranked = record(text)
        ordered = ranked.in_action_order(BREAKOUT_ACTIONS)
        assert not ordered.ranked and ordered.branch_actions.tolist() == list(range(BREAKOUT_ACTIONS))
        for a, n, q in zip(ranked.branch_actions, ranked.branch_visits, ranked.branch_values):
            assert (ordered.branch_visits[a], ordered.branch_values[a]) == (n, q)
        assert ordered.action == ranked.action and ordered.pv_actions.tolist() == ranked.pv_actions.tolist()
        tokens = ordered.to_tokens()
        assert not any(t.startswith("a") for t in tokens[: tokens.index("<path>")])
        assert len(tokens) == len(ranked.to_tokens()) - BREAKOUT_ACTIONS
        ids = tok.encode_minatar_example(obs, ordered)
        parsed = tok.parse_minatar(ids, num_channels=4)
        assert parsed.record == ordered and parsed.action == ranked.action
    doc = record(RECORDS[0]).in_action_order(BREAKOUT_ACTIONS).to_tokens()
    assert f"``{' '.join(doc)}``" in tp.__doc__  # the docstrings' examples are this record
    assert f"\n    {' '.join(doc)}\n" in sys.modules[MCTSRecord.__module__].__doc__


def test_action_order_needs_every_action():
    with pytest.raises(ValueError, match=r"a branch for each of the game's 3 actions, but this record has branches "
                                         r"\[0\] \(make the expert data with top_k >= 3\)"):
        record(RECORDS[1]).in_action_order(BREAKOUT_ACTIONS)
    with pytest.raises(ValueError, match="action order needs a branch for each of the game's 4 actions"):
        record(RECORDS[0]).in_action_order(4)
    ordered = record(RECORDS[0]).in_action_order(3)
    assert ordered.in_action_order(3) is ordered
    with pytest.raises(ValueError, match="this record in action order has 3 branches, not 4"):
        ordered.in_action_order(4)
    with pytest.raises(ValueError, match=r"holds the actions 0 … 2 in order, got branch_actions \[1, 0, 2\]"):
        MCTSRecord(branch_actions=np.array([1, 0, 2]), branch_visits=np.array([7, 2, 0]),
                   branch_values=np.array([9, 4, 0]), pv_actions=np.array([1]), pv_rewards=np.array([0]), action=1,
                   ranked=False)
    with pytest.raises(TypeError, match="ranked must be a bool, got 'no'"):
        MCTSRecord(branch_actions=np.array([0]), branch_visits=np.array([9]), branch_values=np.array([9]),
                   pv_actions=np.array([0]), pv_rewards=np.array([0]), action=0, ranked="no")


def test_bad_arguments_raise(tok, frames):
    obs = frames[0]
    with pytest.raises(ValueError, match=r"\(10, 10, C\) array with 1 <= C <= 10, got shape \(10, 10, 11\)"):
        tok.minatar_state_tokens(np.zeros((10, 10, 11), dtype=bool))
    with pytest.raises(ValueError, match=r"got shape \(9, 10, 4\)"):
        tok.minatar_state_tokens(np.zeros((9, 10, 4), dtype=bool))
    with pytest.raises(ValueError, match=r"must be bool \(or 0/1 numbers\), got dtype int64 with values \[0, 2\]"):
        tok.minatar_state_tokens(obs.astype(np.int64) * 2)
    with pytest.raises(ValueError, match=r"action must be an int in \[0, 6\).*got 6"):
        tok.encode_minatar_example(obs, action=6)
    with pytest.raises(ValueError, match=r"action must be an int in \[0, 6\).*got None"):
        tok.encode_minatar_example(obs)
    with pytest.raises(ValueError, match="action 2 disagrees with the record's action 1"):
        tok.encode_minatar_example(obs, record(RECORDS[0]), action=2)
    with pytest.raises(ValueError, match=r"'r2'; expected 'a<0-5> r<0-1>'.*for_minatar\(max_reward=...\)"):
        tok.encode_minatar_example(obs, record("a1 n9 q9 <path> a1 r2"))
    big = PCTokenizer.for_minatar(max_reward=2)  # Seaquest-like rewards need a larger vocabulary
    assert big.parse_minatar(big.encode_minatar_example(obs, record("a1 n9 q9 <path> a1 r2")), 4).record == record(
        "a1 n9 q9 <path> a1 r2")
    with pytest.raises(ValueError, match=r"num_channels must be an int in \[1, 10\], got 0"):
        tok.parse_minatar(tok.encode_minatar_example(obs, action=0), num_channels=0)
    with pytest.raises(ValueError, match="expected an action token"):
        tok.parse_minatar(["<s>", *["c0"] * 100, "<act>", "n1", "</s>"], num_channels=4)
    with pytest.raises(ValueError, match="a MinAtar state has 100 cell tokens"):
        tok.parse_minatar(["<s>", *["c0"] * 99, "<act>", "a0", "</s>"], num_channels=4)
    with pytest.raises(ValueError, match="unknown tokens"):
        tok.parse_minatar(["<s>", *["c0"] * 100, "<act>", "a6", "</s>"], num_channels=4)
    with pytest.raises(ValueError, match=r"procedure_format must be one of \('mcts',\)"):
        PCTokenizer.for_minatar("bfs_maps")


def test_maze_and_minatar_methods_do_not_mix(tok, frames):
    maze = PCTokenizer.for_maze()
    walls = np.zeros((3, 3), dtype=bool)
    with pytest.raises(ValueError, match=r"state_tokens\(\) is for maze tokenizers.*'minatar' \(use minatar_state"):
        tok.state_tokens(walls, (0, 0), (1, 1))
    with pytest.raises(ValueError, match=r"parse\(\) is for maze tokenizers.*use parse_minatar"):
        tok.parse(tok.encode_minatar_example(frames[0], action=0))
    with pytest.raises(ValueError, match=r"minatar_state_tokens\(\) is for minatar tokenizers.*'maze'"):
        maze.minatar_state_tokens(frames[0])
    with pytest.raises(ValueError, match=r"parse_minatar\(\) is for minatar tokenizers"):
        maze.parse_minatar(["<s>", "</s>"], num_channels=4)
    with pytest.raises(ValueError, match="num_channels/num_actions are MinAtar settings"):
        maze.layout_token_ids(num_channels=4, num_actions=3)
    assert maze.domain == "maze" and "domain" not in maze.init_kwargs  # the maze assets are unchanged


def test_save_pretrained_from_pretrained_round_trip(tmp_path, frames):
    tokenizer = PCTokenizer.for_minatar(max_reward=3)
    tokenizer.save_pretrained(str(tmp_path))
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert (config["domain"], config["procedure_format"], config["max_reward"]) == ("minatar", "mcts", 3)
    rec = record(RECORDS[0])
    ids = tokenizer.encode_minatar_example(frames[1], rec)
    for loaded in (PCTokenizer.from_pretrained(str(tmp_path)), AutoTokenizer.from_pretrained(str(tmp_path))):
        assert type(loaded) is PCTokenizer
        assert loaded.get_vocab() == tokenizer.get_vocab()
        assert (loaded.domain, loaded.procedure_format, loaded.max_reward) == ("minatar", "mcts", 3)
        assert loaded.layout_token_ids(num_channels=4, num_actions=3) == tokenizer.layout_token_ids(
            num_channels=4, num_actions=3)
        assert loaded.encode_minatar_example(frames[1], rec) == ids
        assert loaded.parse_minatar(ids, 4).record == rec


# ============================================================================================== 2. the config
def test_config_from_tokenizer(tok):
    ids = tok.convert_tokens_to_ids
    for game, (channels, actions) in GAMES.items():
        config = PCConfig.from_tokenizer(tok, num_channels=channels, num_actions=actions)
        assert (config.domain, config.procedure_format, config.grid_size, config.num_channels) == (
            "minatar", "mcts", 10, channels), game
        assert config.state_token_ids == ids([f"c{m}" for m in range(2**channels)])
        assert config.action_token_ids == ids([f"a{a}" for a in range(actions)]) and config.num_actions == actions
        assert config.map_token_ids == [] and config.vocab_size == len(tok)
        assert config.hide_agent is False and config.is_grid is False and config.action_readout == "act_token"
        assert [config.act_token_id, config.path_token_id, config.eos_token_id] == ids(["<act>", "<path>", "</s>"])
    maze = PCConfig()
    assert (maze.domain, maze.num_channels, maze.action_readout, maze.num_actions) == ("maze", None, "agent_cell", 4)


def test_config_from_tokenizer_needs_the_game(tok):
    with pytest.raises(ValueError, match="num_channels must be the game's channel count.*got None"):
        PCConfig.from_tokenizer(tok, num_actions=3)
    with pytest.raises(ValueError, match="num_actions must be the size of the game's minimal action set.*got None"):
        PCConfig.from_tokenizer(tok, num_channels=4)
    with pytest.raises(ValueError, match=r"num_actions must be .*\[1, 6\], got 7"):
        PCConfig.from_tokenizer(tok, num_channels=4, num_actions=7)
    with pytest.raises(ValueError, match="num_actions is a MinAtar setting"):
        PCConfig.from_tokenizer(PCTokenizer.for_maze(), num_actions=4, grid_size=8)


def _minatar_kwargs(tok, **overrides):
    layout = tok.layout_token_ids(num_channels=4, num_actions=3)
    return {**layout, "domain": "minatar", "num_channels": 4, "procedure_format": "mcts", "grid_size": 10, **overrides}


INVALID = [
    ({"domain": "atari"}, r"domain must be one of \('maze', 'minatar'\), got 'atari'"),
    ({"procedure_format": "bfs_trace"}, r"procedure_format for domain='minatar' must be .*\('mcts',\), got 'bfs_trace'"),
    ({"grid_size": 16}, r"grid_size must be 10, got 16"),
    ({"num_channels": None}, r"domain='minatar' needs num_channels.*got None"),
    ({"num_channels": 11}, r"num_channels.*\[1, 10\], got 11"),
    ({"num_channels": 5}, r"state_token_ids must hold 2\*\*num_channels = 32 token ids"),
    ({"state_token_ids": None}, r"domain='minatar' needs state_token_ids"),
    ({"action_token_ids": None}, r"domain='minatar' needs action_token_ids"),
    ({"action_token_ids": []}, r"action_token_ids must hold the ids of a0 … a\(K-1\).*got \[\]"),
    ({"action_token_ids": list(range(7))}, r"action_token_ids must hold the ids .*\[1, 6\]"),
    ({"action_token_ids": [1032, 5000]}, r"action_token_ids must hold 1 to 6 token ids in \[0, 1060\)"),
    ({"map_token_ids": [12]}, r"map_token_ids must hold 0 token ids"),
    ({"hide_agent": True}, r"hide_agent=True"),
    ({"branch_order": "value"}, r"branch_order must be one of \('visits', 'action'\), got 'value'"),
    ({"state_encoder_size": -1}, r"state_encoder_size must be a non-negative int \(0: no state encoder\), got -1"),
    ({"state_encoder_size": 1.5}, r"state_encoder_size must be a non-negative int .*got 1.5"),
    ({"state_encoder_size": True}, r"state_encoder_size must be a non-negative int .*got True"),
]


@pytest.mark.parametrize("overrides, message", INVALID, ids=[str(o) for o, _ in INVALID])
def test_config_rejects_invalid_values(tok, overrides, message):
    with pytest.raises(ValueError, match=message):
        PCConfig(**_minatar_kwargs(tok, **overrides))
    with pytest.raises(ValueError, match=r"procedure_format for domain='maze' must be one of .*got 'mcts'"):
        PCConfig(procedure_format="mcts")
    with pytest.raises(ValueError, match="num_channels is a MinAtar setting.*got 4"):
        PCConfig(num_channels=4)
    with pytest.raises(ValueError, match="state_encoder_size is a MinAtar setting .*domain='maze', got 16"):
        PCConfig(state_encoder_size=16)


def test_config_save_load_round_trip(tmp_path, make_config):
    config = make_config(objective="aux_bc", max_procedure_steps=30)
    config.save_pretrained(tmp_path)
    for loaded in (PCConfig.from_pretrained(tmp_path), AutoConfig.from_pretrained(tmp_path)):
        assert type(loaded) is PCConfig
        assert loaded.to_dict() | {"_name_or_path": None} == config.to_dict() | {"_name_or_path": None}
        assert loaded.domain == "minatar" and loaded.action_readout == "act_token"


# =============================================================================================== 3. the model
@pytest.mark.parametrize("objective", ["pc", "bc", "aux_bc"])
def test_forward_shapes_and_losses(make_config, make_batch, objective):
    config = make_config(objective=objective, procedure_loss_weight=0.5, action_loss_weight=2.0)
    model = perturb(PCForProcedureCloning(config)).eval()
    batch = make_batch(config)
    with torch.no_grad():
        out = model(**batch)
    b, t = batch["input_ids"].shape
    assert out.logits.shape == (b, t, config.vocab_size)
    assert torch.isfinite(out.action_loss)
    if objective == "bc":
        assert out.procedure_loss is None and torch.equal(out.loss, 2.0 * out.action_loss)
    else:
        assert torch.isfinite(out.procedure_loss)
        assert torch.equal(out.loss, 0.5 * out.procedure_loss + 2.0 * out.action_loss)

    # Independent computation: the action at <act> over the game's K action tokens only; the procedure as
    # next-token cross-entropy over the whole vocabulary, from <proc> up to the token before <act>.
    procedure_terms, action_terms = [], []
    for i, ids in enumerate(batch["input_ids"].tolist()):
        act = ids.index(config.act_token_id)
        logp = out.logits[i, act, config.action_token_ids].log_softmax(-1)
        action_terms.append(-logp[config.action_token_ids.index(ids[act + 1])])
        if objective != "bc":
            for p in range(ids.index(config.proc_token_id), act):
                procedure_terms.append(-out.logits[i, p].log_softmax(-1)[ids[p + 1]])
    torch.testing.assert_close(out.action_loss, torch.stack(action_terms).mean(), atol=1e-5, rtol=1e-5)
    if procedure_terms:
        torch.testing.assert_close(out.procedure_loss, torch.stack(procedure_terms).mean(), atol=1e-5, rtol=1e-5)


def test_action_loss_ignores_actions_outside_the_game(tok, make_config, make_batch):
    config = make_config()
    model = perturb(PCForProcedureCloning(config)).eval()
    batch = make_batch(config)
    with torch.no_grad():
        before = model(**batch).action_loss
        outside = tok.convert_tokens_to_ids(["a3", "a4", "a5"])  # not in breakout's minimal action set
        model.lm_head.weight[outside] += 10.0
        assert torch.equal(model(**batch).action_loss, before)
    labels = batch["labels"].clone()
    act = (batch["input_ids"][0] == config.act_token_id).nonzero()[0, 0]
    labels[0, act + 1] = tok.convert_tokens_to_ids("a4")
    with pytest.raises(ValueError, match=r"labels hold token ids \[\d+\] where only \[1032, 1033, 1034\] are allowed"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels)


@pytest.mark.parametrize("state_encoder_size", [0, 16])
@pytest.mark.parametrize("objective", ["bc", "aux_bc"])
def test_bc_objectives_read_the_action_at_act_from_the_state_alone(tok, make_config, make_batch, frames, objective,
                                                                   state_encoder_size):
    """MinAtar has no agent cell: BC and auxiliary BC read the action at ``<act>`` itself, which sees ``<s>`` and the
    state only, so ``<s> state <proc> … <act>`` and ``<s> state <act>`` give the same action logits."""
    config = make_config(objective=objective, state_encoder_size=state_encoder_size)
    model = perturb(PCForProcedureCloning(config)).eval()
    act_ids = config.action_token_ids
    with torch.no_grad():
        full = torch.tensor([tok.encode_minatar_example(frames[0], record(RECORDS[0]))])
        other = torch.tensor([tok.encode_minatar_example(frames[0], record(RECORDS[1]))])
        prompt = torch.tensor([tok.strict_ids(["<s>", *tok.minatar_state_tokens(frames[0]), "<act>"])])

        def at_act(ids):
            return model(ids).logits[0, (ids[0] == config.act_token_id).nonzero()[0, 0]]

        reference = at_act(prompt)
        torch.testing.assert_close(at_act(full), reference, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(at_act(other), reference, atol=1e-5, rtol=1e-5)
        # The readout is <act>'s own hidden state (no agent cell to jump to) ...
        out = model.model(full)
        act = int((full[0] == config.act_token_id).nonzero()[0, 0])
        torch.testing.assert_close(model(full).logits[0, act], model.lm_head(out.last_hidden_state[0, act]))
        # ... and it depends on the state.
        prompt2 = torch.tensor([tok.strict_ids(["<s>", *tok.minatar_state_tokens(frames[3]), "<act>"])])
        assert not torch.allclose(at_act(prompt2)[act_ids], reference[act_ids])


def test_pc_action_sees_the_procedure(tok, make_config, frames):
    """PC predicts the action as the token after ``<act>``, which attends to the procedure (unlike BC readouts)."""
    model = perturb(PCForProcedureCloning(make_config())).eval()
    a = torch.tensor([tok.encode_minatar_example(frames[0], record(RECORDS[0]))])
    b = torch.tensor([tok.encode_minatar_example(frames[0], record("a1 n9 q0 <path> a1 r1 a1 r1 a1 r1 a1 r1"))])
    with torch.no_grad():
        logits = [model(ids).logits[0, (ids[0] == model.config.act_token_id).nonzero()[0, 0]] for ids in (a, b)]
    assert not torch.allclose(logits[0], logits[1])


def test_state_encoder_reads_every_channel_bit_of_the_observation(tok, make_config, frames):
    """The encoder's input is the observation itself, flattened (an independent reading of the cell tokens), its
    vector goes to every token but the state cells, and a single changed channel bit changes the model's output."""
    config = make_config(state_encoder_size=16)
    model = perturb(PCForProcedureCloning(config)).eval()
    encoder = model.model.state_encoder
    for obs in frames:
        ids = torch.tensor(tok.strict_ids(tok.minatar_state_tokens(obs)))
        bits = encoder.channel_bits(ids.device)[ids]  # (N, C)
        assert torch.equal(bits, torch.as_tensor(obs.reshape(100, -1), dtype=torch.float32))
    prompt = lambda o: torch.tensor([tok.strict_ids(["<s>", *tok.minatar_state_tokens(o), "<proc>"])])  # noqa: E731
    flipped = frames[0].copy()
    flipped[0, 0, 3] = ~flipped[0, 0, 3]
    with torch.no_grad():
        base = model.model(prompt(frames[0]), output_hidden_states=True)
        other = model.model(prompt(flipped))
        model.model.state_encoder = None
        plain = model.model(prompt(frames[0]), output_hidden_states=True)
        model.model.state_encoder = encoder
        summary = encoder(prompt(frames[0])[:, 1:-1])  # (1, D)
    added = base.hidden_states[0] - plain.hidden_states[0]  # the embeddings, with and without the encoder
    for position in (0, 101):  # <s> and <proc>
        torch.testing.assert_close(added[0, position], summary[0])
    assert summary.abs().sum() > 0 and not added[0, 1:101].any()
    assert not torch.allclose(base.last_hidden_state[0, -1], other.last_hidden_state[0, -1])
    # A decoding step holds no state cell: it reads the state from state_input_ids, as the whole sequence does.
    ids = prompt(frames[0])
    steps = torch.tensor([tok.convert_tokens_to_ids(["a1", "n7"])])
    with torch.no_grad():
        whole = model(torch.cat([ids, steps], 1)).logits[:, -2:]
        cache = DynamicCache(config=config)
        model(ids, past_key_values=cache, use_cache=True)
        step = model(steps, past_key_values=cache, use_cache=True, state_input_ids=ids[:, 1:101]).logits
    torch.testing.assert_close(step, whole, atol=1e-5, rtol=1e-5)
    assert torch.equal(model.state_input_ids(torch.cat([torch.zeros_like(ids[:, :3]), ids], 1)), ids[:, 1:101])
    # Without it, or with part of a state, the call is refused and says what it needs.
    with pytest.raises(ValueError, match=r"state_encoder_size=16: the state encoder reads the whole state: a call "
                                         r"must hold all 100 state cells, or none of them and state_input_ids of "
                                         r"shape \(1, 100\); example 0 holds 0 cells, state_input_ids None"):
        model(steps, past_key_values=cache, use_cache=True)
    with pytest.raises(ValueError, match=r"example 0 holds 40 cells"):
        model(ids[:, :41])


@pytest.mark.parametrize("state_encoder_size", [0, 16])
def test_generate_cached_and_uncached_agree(tok, make_config, frames, state_encoder_size):
    config = make_config(max_position_embeddings=64, state_encoder_size=state_encoder_size)
    model = perturb(PCForProcedureCloning(config)).eval()
    prompts = torch.tensor([tok.strict_ids(["<s>", *tok.minatar_state_tokens(o), "<proc>"]) for o in frames])
    assert_cached_generate_is_greedy(model, prompts, max_new_tokens=15)


def test_a_cached_decoding_step_gives_the_logits_of_the_whole_sequence(tok, make_config, frames):
    # A one-token step after the prompt attends without a mask (PCModel._text_forward); the logits must be those of
    # the whole sequence in one pass, where the mask is built.
    model = perturb(PCForProcedureCloning(make_config())).eval()
    prompts = torch.tensor([tok.strict_ids(["<s>", *tok.minatar_state_tokens(o), "<proc>"]) for o in frames])
    steps = torch.tensor(tok.convert_tokens_to_ids(["a1", "n7", "q9"]))
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        logits = [model(prompts, past_key_values=cache, use_cache=True).logits[:, -1]]
        for token in steps:
            logits.append(model(token.expand(len(frames), 1), past_key_values=cache, use_cache=True).logits[:, -1])
        whole = model(torch.cat([prompts, steps.expand(len(frames), -1)], 1)).logits[:, prompts.shape[1] - 1 :]
    torch.testing.assert_close(torch.stack(logits, 1), whole, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("objective, state_encoder_size", [("pc", 0), ("aux_bc", 0), ("pc", 16)])
def test_save_load_is_exact(tmp_path, make_config, make_batch, objective, state_encoder_size):
    config = make_config(objective=objective, state_encoder_size=state_encoder_size)
    model = perturb(PCForProcedureCloning(config)).eval()
    batch = make_batch(config)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert (saved["domain"], saved["num_channels"], saved["procedure_format"]) == ("minatar", 4, "mcts")
    with torch.no_grad():
        expected = model(**batch)
    for loaded in (PCForProcedureCloning.from_pretrained(tmp_path), AutoModelForCausalLM.from_pretrained(tmp_path)):
        assert type(loaded) is PCForProcedureCloning
        loaded.eval()
        assert loaded.config.to_dict() | {"_name_or_path": None} == config.to_dict() | {"_name_or_path": None}
        for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), name
        with torch.no_grad():
            out = loaded(**batch)
        assert torch.equal(out.logits, expected.logits) and torch.equal(out.loss, expected.loss)


REMOTE_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.modules["pc_transformers"] = None  # the package is not installed, as far as this process knows
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, out_path, obs = sys.argv[1], sys.argv[2], np.array(json.loads(sys.argv[3]), dtype=bool)
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    ids = torch.tensor([tokenizer.strict_ids(["<s>", *tokenizer.minatar_state_tokens(obs), "<proc>"])])
    with torch.no_grad():
        logits = model(ids).logits
    sequences = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False)
    back = tokenizer.parse_minatar_state(tokenizer.convert_ids_to_tokens(ids[0, 1:-1].tolist()), obs.shape[-1])
    save_file({"ids": ids, "logits": logits.contiguous(), "sequences": sequences}, out_path)
    print(json.dumps({"model": type(model).__module__, "tokenizer": type(tokenizer).__module__,
                      "domain": tokenizer.domain, "round_trip": bool(np.array_equal(back, obs))}))
""")


def test_remote_code_in_a_fresh_process(tmp_path, tok, make_config, frames):
    model = perturb(PCForProcedureCloning(make_config())).eval()
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    tok.save_pretrained(checkpoint)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-c", REMOTE_SCRIPT, str(checkpoint), str(tmp_path / "out.safetensors"),
                             json.dumps(frames[0].tolist())], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["model"].startswith("transformers_modules") and info["tokenizer"].startswith("transformers_modules")
    assert info["domain"] == "minatar" and info["round_trip"] is True
    remote = load_file(tmp_path / "out.safetensors")
    ids = torch.tensor([tok.strict_ids(["<s>", *tok.minatar_state_tokens(frames[0]), "<proc>"])])
    assert torch.equal(remote["ids"], ids)
    with torch.no_grad():
        assert torch.equal(remote["logits"], model(ids).logits)
    assert torch.equal(remote["sequences"], model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8,
                                                           do_sample=False))


def test_error_cells_of_more_channels_than_configured(tok, make_config, frames):
    model = PCForProcedureCloning(make_config()).eval()  # breakout: 4 channels, cells c0 … c15
    seven = game_frames("freeway", 1)[0]
    prompt = torch.tensor([tok.strict_ids(["<s>", *tok.minatar_state_tokens(seven), "<proc>"])])
    assert (prompt[0, 1:-1] > max(model.config.state_token_ids)).any()
    with pytest.raises(ValueError, match=r"must be a state cell token \[\d+ … \d+\] \(16 ids\), got id \d+ "
                                         r"\(num_channels=4: does the observation have more channels\?\)"):
        model(prompt)


# ============================================================================================== 4. the policy
def test_untrained_policy_always_yields_valid_records_and_game_actions(tok, make_config, frames):
    config = make_config(max_procedure_steps=40)
    model = perturb(PCForProcedureCloning(config)).eval()
    with torch.no_grad():  # push the untrained model toward actions breakout does not have
        model.lm_head.weight[tok.convert_tokens_to_ids(["a3", "a4", "a5"])] += 5.0
    policy = MinAtarPolicy(model, tok)
    obs = np.concatenate([frames, game_frames("breakout", 8, seed=1)])
    actions, infos = policy.act(obs, return_procedure=True)
    assert actions.dtype == np.int64 and actions.shape == (len(obs),)
    assert ((0 <= actions) & (actions < BREAKOUT_ACTIONS)).all()
    for action, info in zip(actions, infos):
        assert set(info) == {"procedure", "procedure_error", "fallback", "forward_passes", "cached"}
        assert info["fallback"] is False and info["cached"] is False and info["procedure_error"] is None
        rec = info["procedure"]
        assert isinstance(rec, MCTSRecord) and rec.action == action
        tokens = rec.to_tokens()
        tp.check_mcts_tokens(tokens)
        assert len(tokens) <= 40
        assert all(int(t[1:]) < BREAKOUT_ACTIONS for t in tokens if t.startswith("a"))
        assert 1 <= info["forward_passes"] <= len(tokens) + 1  # never a pass after <act>: the action is forced
    single_action, single_info = policy.act(obs[0], return_procedure=True)
    assert isinstance(single_action, int) and single_action == actions[0]
    assert single_info["procedure"] == infos[0]["procedure"]
    # Alone, one pass per token the grammar leaves a choice for (forced tokens are fed with the next pass).
    assert single_info["forward_passes"] == free_choices(tok, model.config, single_info["procedure"], 40)


def free_choices(tok, config, rec: MCTSRecord, budget: int) -> int:
    """How many tokens of ``<proc> rec <act> a </s>`` the policy's grammar had more than one choice for."""
    ids = tok.convert_tokens_to_ids([*rec.to_tokens(), "<act>", f"a{rec.action}", "</s>"])
    grammar = _MCTSGrammar(tok, config, prompt_length=1, max_procedure_steps=budget)
    sequence = [config.proc_token_id]
    count = 0
    for token in ids:
        allowed = grammar(0, torch.tensor(sequence))
        assert token in allowed
        count += len(allowed) > 1
        sequence.append(token)
    return count


def choices_until_action(tok, config, rec: MCTSRecord, budget: int) -> int:
    """How many tokens of ``<proc> rec`` up to the one that decides the action the grammar had more than one choice
    for: the first token of a ranked record, the first step after ``<path>`` in action order."""
    tokens = rec.to_tokens()
    decides = tokens.index("<path>") + 1 if config.branch_order == "action" else 0
    ids = tok.convert_tokens_to_ids(tokens[: decides + 1])
    grammar = _MCTSGrammar(tok, config, prompt_length=1, max_procedure_steps=budget)
    sequence, count = [config.proc_token_id], 0
    for token in ids:
        allowed = grammar(0, sequence)
        count += len(allowed) > 1
        sequence.append(token)
    return count


@pytest.mark.parametrize("branch_order, state_encoder_size", [("visits", 0), ("action", 0), ("action", 16)])
def test_acting_stops_decoding_once_the_action_is_fixed(tok, make_config, frames, branch_order, state_encoder_size):
    config = make_config(branch_order=branch_order, state_encoder_size=state_encoder_size, max_procedure_steps=40)
    model = perturb(PCForProcedureCloning(config)).eval()
    early, full = MinAtarPolicy(model, tok), MinAtarPolicy(model, tok, full_procedure=True)
    obs = np.concatenate([frames, game_frames("breakout", 6, seed=3)])
    for observation in obs:
        action, info = early.act(observation)
        whole_action, whole = full.act(observation)
        _, parsed = full.act(observation, return_procedure=True)
        rec = parsed["procedure"]
        assert action == whole_action == rec.action
        assert whole["forward_passes"] == parsed["forward_passes"] == free_choices(tok, config, rec, 40)
        assert info["forward_passes"] == choices_until_action(tok, config, rec, 40) < whole["forward_passes"]
        assert info["procedure"] is None
    actions, infos = early.act(obs)  # batched: the batch stops when every row's action is fixed
    assert np.array_equal(actions, full.act(obs)[0])
    assert all(1 <= i["forward_passes"] for i in infos)


def test_inference_caches_follow_weight_updates(tok, make_config, make_batch, frames):
    """Without gradients the model keeps the fused q/k/v weights and the state encoder's last summary; after acting,
    a training step, and a state never seen, its logits must still be those of the uncached computation."""
    config = make_config(state_encoder_size=16)
    model = perturb(PCForProcedureCloning(config))
    batch = make_batch(config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    prompts = torch.tensor([tok.strict_ids(["<s>", *tok.minatar_state_tokens(o), "<proc>"]) for o in frames])
    for _ in range(2):
        model.eval()
        fresh = PCForProcedureCloning(config).eval()  # the same weights, nothing kept yet
        fresh.load_state_dict(model.state_dict())
        for rows in (prompts, prompts[:1], prompts[1:2]):  # the first call meets what the last act kept
            with torch.no_grad():
                assert torch.equal(model(rows).logits, fresh(rows).logits)
        MinAtarPolicy(model, tok).act(frames)  # keeps the fused weights and these states' summary
        model.train()
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.inference_mode():  # weights made in inference mode have no version to key on: nothing is kept
        inference_model = PCForProcedureCloning(config).eval()
        inference_model.load_state_dict(model.state_dict())
        expected = inference_model(prompts).logits
        for p in inference_model.parameters():
            p.mul_(1.5)
        changed = inference_model(prompts).logits
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
        assert torch.equal(changed, model(prompts).logits) and not torch.equal(changed, expected)


def test_untrained_policy_in_action_order_yields_valid_records(tok, make_config, frames):
    config = make_config(branch_order="action", max_procedure_steps=40)
    model = perturb(PCForProcedureCloning(config)).eval()
    obs = np.concatenate([frames, game_frames("breakout", 8, seed=1)])
    actions, infos = MinAtarPolicy(model, tok).act(obs, return_procedure=True)
    for action, info in zip(actions, infos):
        rec = info["procedure"]
        assert isinstance(rec, MCTSRecord) and not rec.ranked and rec.num_branches == BREAKOUT_ACTIONS
        assert rec.action == action and rec.branch_visits[action] == rec.branch_visits.max()
        assert 1 <= info["forward_passes"] <= len(rec.to_tokens()) + 1
    assert len({tuple(info["procedure"].branch_visits) for info in infos}) > 1  # the buckets vary: a real decoding
    # The budget is below the shortest procedure in action order (3 pairs, <path>, one step): that still comes.
    _, infos = MinAtarPolicy(model, tok, max_procedure_steps=4).act(obs, return_procedure=True)
    assert all(len(i["procedure"].to_tokens()) == 2 * BREAKOUT_ACTIONS + 3 for i in infos)


@pytest.mark.parametrize("budget", [1, 6, 9])
def test_policy_closes_its_sequences_within_the_budget(tok, make_config, frames, budget):
    model = perturb(PCForProcedureCloning(make_config())).eval()
    _, infos = MinAtarPolicy(model, tok, max_procedure_steps=budget).act(frames, return_procedure=True)
    for info in infos:
        assert info["procedure"] is not None and len(info["procedure"].to_tokens()) <= max(budget, 6)


@pytest.mark.parametrize("objective, branch_order, state_encoder_size", [
    ("pc", "visits", 0), ("pc", "action", 0), ("bc", "visits", 0), ("pc", "action", 16), ("bc", "visits", 16)])
@pytest.mark.parametrize("budget", [9, 30])
def test_policy_decoding_equals_generate_with_and_without_the_cache(tok, make_config, frames, objective, budget,
                                                                     branch_order, state_encoder_size):
    # use_cache=False in the config, as Trainer saves it: the policy still decodes with its KV cache.
    model = perturb(PCForProcedureCloning(make_config(use_cache=False, objective=objective, branch_order=branch_order,
                                                      state_encoder_size=state_encoder_size))).eval()
    policy = MinAtarPolicy(model, tok, max_procedure_steps=budget)
    obs = np.concatenate([frames, game_frames("breakout", 4, seed=2)])
    tail = "<proc>" if objective == "pc" else "<act>"
    prompts = torch.tensor([tok.strict_ids(["<s>", *tok.minatar_state_tokens(o), tail]) for o in obs])
    grammar = _MCTSGrammar(tok, model.config, prompts.shape[1], budget)
    sequences, passes = policy.decode(prompts, grammar)
    for use_cache in (True, False):
        reference = model.generate(
            prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=grammar.max_new_tokens, do_sample=False,
            eos_token_id=model.config.eos_token_id, pad_token_id=model.config.pad_token_id,
            prefix_allowed_tokens_fn=grammar, use_cache=use_cache)
        assert torch.equal(sequences, reference)
    for j, prompt in enumerate(prompts):  # alone, each row decodes as in the batch
        alone, _ = policy.decode(prompt[None], grammar)
        assert torch.equal(alone[0, : sequences.shape[1]], sequences[j, : alone.shape[1]])
    assert len(passes) == len(obs) and max(passes) < sequences.shape[1] - prompts.shape[1]
    actions, infos = policy.act(obs, return_procedure=True)
    assert [i["forward_passes"] for i in infos] == passes
    early, early_infos = policy.act(obs)  # decoding stops once the action is fixed: the same actions
    assert np.array_equal(early, actions)
    assert all(e["forward_passes"] <= i["forward_passes"] for e, i in zip(early_infos, infos))
    act_at = (sequences == model.config.act_token_id).int().argmax(1)
    expected = sequences[torch.arange(len(obs)), act_at + 1]
    assert actions.tolist() == [model.config.action_token_ids.index(int(t)) for t in expected]


@pytest.mark.parametrize("objective", ["bc", "aux_bc"])
def test_bc_policies_read_the_action_in_one_pass(tok, make_config, frames, objective):
    config = make_config(objective=objective)
    model = perturb(PCForProcedureCloning(config)).eval()
    actions, infos = MinAtarPolicy(model, tok).act(frames, return_procedure=True)
    prompts = torch.tensor([tok.strict_ids(["<s>", *tok.minatar_state_tokens(o), "<act>"]) for o in frames])
    with torch.no_grad():
        expected = model(prompts).logits[:, -1, config.action_token_ids].argmax(-1).numpy()
    assert np.array_equal(actions, expected)
    assert all(i["procedure"] is None and i["forward_passes"] == 1 and not i["fallback"] for i in infos)


def test_training_after_the_policy_acted_gives_the_same_gradients(tok, make_config, make_batch, frames):
    """Acting runs under ``torch.inference_mode``; what the model builds lazily there (the state encoder's channel
    table) must still serve training afterwards: same loss and gradients as a copy that never acted."""
    config = make_config(state_encoder_size=16)
    acted = perturb(PCForProcedureCloning(config)).eval()
    fresh = PCForProcedureCloning(config)
    fresh.load_state_dict(acted.state_dict())
    MinAtarPolicy(acted, tok).act(frames)
    assert acted.model.state_encoder._bits is not None and not acted.model.state_encoder._bits.is_inference()
    batch = make_batch(config)
    assert_same_loss_and_gradients(acted, fresh, batch)


def test_policy_save_load_gives_identical_actions(tmp_path, tok, make_config, frames):
    model = perturb(PCForProcedureCloning(make_config())).eval()
    policy = MinAtarPolicy(model, tok, max_procedure_steps=12, seed=3)
    policy.save_pretrained(tmp_path)
    assert json.loads((tmp_path / POLICY_CONFIG_NAME).read_text())["max_procedure_steps"] == 12
    loaded = PCPolicy.from_pretrained(tmp_path)  # the checkpoint's domain picks the class
    assert type(loaded) is MinAtarPolicy and loaded.config == policy.config
    assert type(MinAtarPolicy.from_pretrained(tmp_path)) is MinAtarPolicy
    expected, loaded_out = policy.act(frames, return_procedure=True), loaded.act(frames, return_procedure=True)
    assert np.array_equal(expected[0], loaded_out[0])
    assert [i["procedure"] for i in expected[1]] == [i["procedure"] for i in loaded_out[1]]


def test_policy_errors(tok, make_config, frames):
    model = PCForProcedureCloning(make_config())
    policy = MinAtarPolicy(model, tok)
    with pytest.raises(ValueError, match=r"observations must be \(10, 10, 4\) or \(B, 10, 10, 4\) .*got shape "
                                         r"\(10, 10, 7\)"):
        policy.act(np.zeros((10, 10, 7), dtype=bool))
    with pytest.raises(ValueError, match="env_ids has 1 entries for 4 observations"):
        policy.act(frames, env_ids=[0])
    with pytest.raises(ValueError, match="PCPolicy acts in maze environments, but the model's domain is 'minatar'; "
                                         "use MinAtarPolicy"):
        PCPolicy(model, tok)
    maze_tok = PCTokenizer.for_maze("bfs_trace")
    maze_model = PCForProcedureCloning(PCConfig.from_tokenizer(maze_tok, grid_size=7, **TINY))
    with pytest.raises(ValueError, match="MinAtarPolicy acts in minatar environments, but the model's domain is "
                                         "'maze'; use PCPolicy"):
        MinAtarPolicy(maze_model, maze_tok)
    with pytest.raises(ValueError, match="the tokenizer's domain is 'maze'"):
        MinAtarPolicy(model, maze_tok)


# ===================================================================================== 5. overfit four decisions
@pytest.fixture(scope="module")
def overfit(tok, make_config, make_batch, frames):
    """A PC model trained with plain AdamW until the policy reproduces the four expert records and actions exactly."""
    config = make_config(num_attention_heads=4, max_procedure_steps=30)
    batch = make_batch(config)
    torch.manual_seed(0)
    model = PCForProcedureCloning(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    policy, matched, step = MinAtarPolicy(model, tok), False, 0
    for step in range(1, 301):
        model.train()
        loss = model(**batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 0 and loss.item() < 0.05:
            model.eval()
            _, infos = policy.act(frames, return_procedure=True)
            matched = [i["procedure"] for i in infos] == [record(r) for r in RECORDS]
            if matched:
                break
    model.eval()
    return SimpleNamespace(model=model, policy=policy, matched=matched, steps=step)


def test_overfit_policy_reproduces_the_expert_exactly(overfit, frames):
    assert overfit.matched, f"no exact match after {overfit.steps} steps"
    actions, infos = overfit.policy.act(frames, return_procedure=True)
    assert actions.tolist() == [record(r).action for r in RECORDS]
    assert [i["procedure"] for i in infos] == [record(r) for r in RECORDS]
    assert all(i["forward_passes"] <= len(r.split()) + 1 for i, r in zip(infos, RECORDS))
    for observation, r in zip(frames, RECORDS):
        _, info = overfit.policy.act(observation, return_procedure=True)
        assert info["forward_passes"] == free_choices(overfit.policy.tokenizer, overfit.model.config, record(r), 30)
        action, info = overfit.policy.act(observation)  # ranked: the first procedure token is the action
        assert action == record(r).action and info["forward_passes"] == 1
