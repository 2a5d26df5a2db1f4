"""Tests for pc_transformers.tokenization_pc: the token grammar, strict parsing, saving and the shipped assets.

Layers: encode → parse round trips against the BFS experts on generated mazes; one sequence given as ids, tokens,
text or tensors parses the same; malformed sequences raise ``ValueError`` naming what is wrong (never a silent
``<unk>``); ``save_pretrained`` → ``from_pretrained`` / ``AutoTokenizer`` round trips; the assets in ``tokenizers/``
equal what ``recipes/make_tokenizers.py`` writes; the default token ids of `PCConfig` equal the tokenizer's.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

import pc_transformers  # noqa: F401  (registers PCTokenizer with AutoTokenizer)
from pc_transformers import tokenization_pc
from pc_transformers.configuration_pc import _MAZE_LAYOUT, PCConfig
from pc_transformers.envs import make_maze
from pc_transformers.procedures import BFSTraceRecord, bfs_maps, bfs_trace
from pc_transformers.tokenization_pc import (
    PROCEDURE_FORMATS,
    PCTokenizer,
    build_maze_vocab,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPERTS = {"bfs_maps": bfs_maps, "bfs_trace": bfs_trace}


@pytest.fixture(scope="module")
def tokenizers_by_format():
    return {fmt: PCTokenizer.for_maze(fmt) for fmt in PROCEDURE_FORMATS}


@pytest.fixture(scope="module")
def tok(tokenizers_by_format):
    return tokenizers_by_format["bfs_maps"]


def assert_same_parse(parsed, other):
    assert parsed.walls.dtype == other.walls.dtype == bool
    assert np.array_equal(parsed.walls, other.walls)
    assert (parsed.goal, parsed.agent, parsed.action) == (other.goal, other.agent, other.action)
    assert parsed.record == other.record


def random_agents(walls, goal, rng, count):
    free = [tuple(int(c) for c in cell) for cell in np.argwhere(~walls) if tuple(cell) != goal]
    return [free[i] for i in rng.choice(len(free), size=min(count, len(free)), replace=False)]


# ------------------------------------------------------------------------------------------- the worked example

# The 3x4 maze of the module docstring: goal (1, 2), agent (1, 1), one step away (action 1, right).
DOC_WALLS = np.ones((3, 4), dtype=bool)
DOC_WALLS[1, 1:3] = False
DOC_GOAL, DOC_AGENT = (1, 2), (1, 1)
DOC_TEXT = (
    "<s> # # # # # A G # # # # # <proc> _ _ _ _ _ _ * _ _ _ _ _ <step> _ _ _ _ _ > * _ _ _ _ _ <act> a1 </s>"
)


def test_module_docstring_worked_example_is_true(tok):
    assert DOC_TEXT in tokenization_pc.__doc__  # the test and the docs cannot drift apart
    record = bfs_maps(DOC_WALLS, DOC_GOAL, DOC_AGENT)
    assert " ".join(tok.example_tokens(DOC_WALLS, DOC_GOAL, DOC_AGENT, record)) == DOC_TEXT
    parsed = tok.parse(DOC_TEXT, grid_shape=(3, 4))
    assert np.array_equal(parsed.walls, DOC_WALLS)
    assert (parsed.goal, parsed.agent, parsed.action) == (DOC_GOAL, DOC_AGENT, 1)
    assert parsed.record == record
    assert parsed.record.maps.shape == (2, 3, 4)


# ------------------------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("wall_type", ["tunnel", "blocks", "empty"])
@pytest.mark.parametrize("size", [5, 8, 16, 32])
@pytest.mark.parametrize("procedure_format", PROCEDURE_FORMATS)
def test_encode_parse_round_trip_on_generated_mazes(tokenizers_by_format, procedure_format, size, wall_type):
    tokenizer = tokenizers_by_format[procedure_format]
    rng = np.random.default_rng([size, len(wall_type)])
    for maze_seed in (0, 1):
        walls, goal = make_maze(size, wall_type, seed=maze_seed)
        for agent in random_agents(walls, goal, rng, count=3):
            record = EXPERTS[procedure_format](walls, goal, agent)
            ids = tokenizer.encode_example(walls, goal, agent, record)
            assert all(isinstance(i, int) for i in ids)
            assert tokenizer.unk_token_id not in ids
            parsed = tokenizer.parse(ids)
            assert parsed.record == record  # exact: class, dtypes, shapes and values
            assert np.array_equal(parsed.walls, walls)
            assert (parsed.goal, parsed.agent, parsed.action) == (goal, agent, record.action)

            # Behavioral cloning: no procedure, same state and action.
            bc = tokenizer.parse(tokenizer.encode_example(walls, goal, agent, action=record.action))
            assert bc.record is None
            assert "<proc>" not in tokenizer.convert_ids_to_tokens(
                tokenizer.encode_example(walls, goal, agent, action=record.action)
            )
            assert np.array_equal(bc.walls, walls)
            assert (bc.goal, bc.agent, bc.action) == (goal, agent, record.action)


def test_sequence_lengths_follow_the_grammar(tokenizers_by_format):
    walls, goal = make_maze(8, "tunnel", seed=3)
    agent = random_agents(walls, goal, np.random.default_rng(0), count=1)[0]
    maps = bfs_maps(walls, goal, agent)
    trace = bfs_trace(walls, goal, agent)
    n = walls.size
    # <s> state <proc> x_0 <step> … x_L <act> a </s>
    num_maps = maps.maps.shape[0]
    assert len(tokenizers_by_format["bfs_maps"].encode_example(walls, goal, agent, maps)) == (
        1 + n + 1 + num_maps * n + (num_maps - 1) + 3
    )
    # <s> state <proc> (x y)* <path> a* <act> a </s>
    assert len(tokenizers_by_format["bfs_trace"].encode_example(walls, goal, agent, trace)) == (
        1 + n + 1 + 2 * trace.num_visited + 1 + trace.path_length + 3
    )


@pytest.mark.parametrize("procedure_format", PROCEDURE_FORMATS)
def test_ids_tokens_text_and_tensors_parse_the_same(tokenizers_by_format, procedure_format):
    tokenizer = tokenizers_by_format[procedure_format]
    walls, goal = make_maze(8, "blocks", seed=5)
    agent = random_agents(walls, goal, np.random.default_rng(1), count=1)[0]
    record = EXPERTS[procedure_format](walls, goal, agent)
    tokens = tokenizer.example_tokens(walls, goal, agent, record)
    ids = tokenizer.encode_example(walls, goal, agent, record)
    text = " ".join(tokens)
    assert tokenizer.convert_ids_to_tokens(ids) == tokens
    # The ordinary transformers path agrees with the strict one (no special tokens are added around the example).
    assert tokenizer(text).input_ids == ids
    assert tokenizer.decode(ids) == text

    reference = tokenizer.parse(ids)
    assert reference.record == record
    pad = tokenizer.pad_token_id
    for form in (
        tokens,
        text,
        "  " + text.replace(" ", "   ") + "\n",  # any whitespace separates tokens
        np.array(ids),
        torch.tensor(ids),
        torch.tensor([ids]),  # a batch of one is flattened
        [pad] * 3 + ids + [pad] * 5,  # left and right padding are ignored
        torch.tensor(ids + [pad] * 4),
        ["<pad>"] + tokens + ["<pad>"],
    ):
        assert_same_parse(tokenizer.parse(form), reference)


def test_parse_accepts_an_explicit_procedure_format(tokenizers_by_format):
    walls, goal = make_maze(8, "tunnel", seed=1)
    agent = random_agents(walls, goal, np.random.default_rng(2), count=1)[0]
    trace = bfs_trace(walls, goal, agent)
    ids = tokenizers_by_format["bfs_trace"].encode_example(walls, goal, agent, trace)
    parsed = tokenizers_by_format["bfs_maps"].parse(ids, procedure_format="bfs_trace")
    assert isinstance(parsed.record, BFSTraceRecord) and parsed.record == trace
    # Read with the tokenizer's own (wrong) format, the coordinate tokens are not map cells.
    with pytest.raises(ValueError, match=r"a bfs map holds only"):
        tokenizers_by_format["bfs_maps"].parse(ids)


def test_state_without_agent_and_rectangular_grids(tok):
    walls = np.array([[0, 0, 0, 1, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0]], dtype=bool)  # (3, 5), no border
    goal, agent = (1, 2), (2, 0)
    record = bfs_maps(walls, goal, agent)
    ids = tok.encode_example(walls, goal, None, record)  # the agent is left out of the state
    parsed = tok.parse(ids, grid_shape=(3, 5))
    assert parsed.agent is None and parsed.goal == goal
    assert parsed.record == record
    assert np.array_equal(parsed.walls, walls)


# ----------------------------------------------------------------------------------------------- strict errors


def _trace_example(tokenizer):
    walls = np.array([[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)  # bfs_trace's docstring example
    record = bfs_trace(walls, goal=(1, 2), agent=(2, 0))
    return tokenizer.example_tokens(walls, (1, 2), (2, 0), record)


def _replace(tokens, old, new, count=1):
    return " ".join(tokens).replace(old, new, count).split()


DOC_TOKENS = DOC_TEXT.split()
STATE = DOC_TOKENS[1:13]  # 12 cells
MAP_0 = DOC_TOKENS[14:26]


@pytest.mark.parametrize(
    "sequence, grid_shape, message",
    [
        (DOC_TOKENS[1:], (3, 4), r"must start with <s>, got \['#'\]"),
        ([], (3, 4), r"must start with <s>, got \[\]"),
        (DOC_TOKENS[:-1], (3, 4), r"must end with </s>, got \['a1'\] \(truncated\?\)"),
        (DOC_TOKENS[:-2] + ["<act>", "a1", "</s>"], (3, 4), r"hold one <act>"),
        (["<s>", *STATE, "a1", "</s>"], (3, 4), r"must end with '<act> a<k> </s>' and hold one <act>"),
        (["<s>", *STATE, "<act>", "<act>", "a1", "</s>"], (3, 4), r"hold one <act>"),
        (["<s>", *STATE, "<act>", "x1", "</s>"], (3, 4), r"expected an action token .*got 'x1'"),
        (["<s>", *STATE, "<act>", "v", "</s>"], (3, 4), r"expected an action token .*got 'v'"),
        # state
        (["<s>", *STATE, "<act>", "a1", "</s>"], (4, 4), r"12 cells, which does not fit grid_shape \(4, 4\)"),
        (["<s>", *STATE, "<act>", "a1", "</s>"], None, r"a state of 12 cells is not square; pass grid_shape"),
        (["<s>", "<act>", "a1", "</s>"], None, r"a state of 0 cells is not square"),
        (["<s>", *_replace(STATE, "#", "G"), "<act>", "a1", "</s>"], (3, 4), r"exactly one G .* got 2 and 1"),
        (["<s>", *_replace(STATE, "G", "."), "<act>", "a1", "</s>"], (3, 4), r"exactly one G .* got 0 and 1"),
        (["<s>", *_replace(STATE, "#", "A"), "<act>", "a1", "</s>"], (3, 4), r"at most one A, got 1 and 2"),
        (["<s>", *_replace(STATE, "#", "_"), "<act>", "a1", "</s>"], (3, 4), r"state cell 0 is '_'"),
        (["<s>", *_replace(STATE, "#", "<step>"), "<act>", "a1", "</s>"], (3, 4), r"state cell 0 is '<step>'"),
        # bfs maps
        (["<s>", *STATE, "<proc>", *MAP_0[:-1], "<act>", "a1", "</s>"], (3, 4),
         r"bfs map 0 has 11 cells, expected 12 for a \(3, 4\) grid"),
        (["<s>", *STATE, "<proc>", *MAP_0, "<step>", *MAP_0, "_", "<act>", "a1", "</s>"], (3, 4),
         r"bfs map 1 has 13 cells, expected 12"),
        (["<s>", *STATE, "<proc>", *MAP_0, "<step>", "<act>", "a1", "</s>"], (3, 4), r"bfs map 1 has 0 cells"),
        (["<s>", *STATE, "<proc>", "<act>", "a1", "</s>"], (3, 4), r"bfs map 0 has 0 cells"),
        (["<s>", *STATE, "<proc>", *_replace(MAP_0, "_", "#"), "<act>", "a1", "</s>"], (3, 4),
         r"procedure token 0 is '#'; a bfs map holds only"),
        (["<s>", *STATE, "<proc>", *_replace(MAP_0, "*", "a1"), "<act>", "a1", "</s>"], (3, 4),
         r"procedure token 6 is 'a1'"),
        (["<s>", *STATE, "<proc>", *MAP_0, "<proc>", *MAP_0, "<act>", "a1", "</s>"], (3, 4),
         r"procedure token 12 is '<proc>'"),
    ],
)
def test_malformed_sequences_raise(tok, sequence, grid_shape, message):
    for form in (sequence, " ".join(sequence)):
        with pytest.raises(ValueError, match=message):
            tok.parse(form, grid_shape=grid_shape)
    if sequence:  # and as ids
        with pytest.raises(ValueError, match=message):
            tok.parse(tok.strict_ids(sequence), grid_shape=grid_shape)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: _replace(t, "x2 y1", "y1 x2"), r"visited cell 0 is 'y1' 'x2'; expected 'x<row> y<col>'"),
        (lambda t: _replace(t, "x2 y1", "x2 x2"), r"visited cell 0 is 'x2' 'x2'"),
        (lambda t: _replace(t, "x2 y1", "x2 a1"), r"visited cell 0 is 'x2' 'a1'"),
        (lambda t: _replace(t, "y1 ", "", 1), r"visited cells come as 'x<row> y<col>' pairs, got 11 tokens"),
        (lambda t: _replace(t, "x2 y1", "x9 y1"), r"visited cell \(9, 1\) lies outside the \(3, 4\) grid"),
        (lambda t: _replace(t, "x2 y1", "x2 y4"), r"visited cell \(2, 4\) lies outside the \(3, 4\) grid"),
        (lambda t: _replace(t, "<path> ", ""), r"exactly one <path>, got 0"),
        (lambda t: _replace(t, "<path>", "<path> <path>"), r"exactly one <path>, got 2"),
        (lambda t: _replace(t, "<path> a2", "<path> x2"), r"expected an action token .*got 'x2'"),
        (lambda t: _replace(t, "<path> a2", "<path> <step>"), r"expected an action token .*got '<step>'"),
        (lambda t: _replace(t, "<path> a2 a1 a1", "<path>"), r"path must be a non-empty"),
        (lambda t: _replace(t, "a1 a1 <act>", "a1 a3 <act>"), r"action must equal path\[-1\].*got 1 and 3"),
    ],
)
def test_malformed_traces_raise(tokenizers_by_format, edit, message):
    tokenizer = tokenizers_by_format["bfs_trace"]
    tokens = _trace_example(tokenizer)
    assert " ".join(tokens).endswith("x1 y2 <path> a2 a1 a1 <act> a1 </s>")
    assert " ".join(tokens[14:16]) == "x2 y1"  # the first visited cell
    tokenizer.parse(tokens, grid_shape=(3, 4))  # the unedited trace is fine
    with pytest.raises(ValueError, match=message):
        tokenizer.parse(edit(tokens), grid_shape=(3, 4))


def test_unknown_tokens_and_ids_are_never_accepted(tok):
    with pytest.raises(ValueError, match=r"unknown tokens \['Q'\]"):
        tok.parse(DOC_TEXT.replace("A", "Q"), grid_shape=(3, 4))
    with pytest.raises(ValueError, match=r"unknown tokens \['x64', 'y99'\]"):
        tok.parse(DOC_TEXT.replace("<step>", "x64 y99"), grid_shape=(3, 4))
    with pytest.raises(ValueError, match=r"unknown tokens \['<unk>'\]"):  # a literal <unk> is refused too
        tok.parse(DOC_TEXT.replace("G", "<unk>"), grid_shape=(3, 4))
    with pytest.raises(ValueError, match=r"unknown tokens \['Q'\]"):
        tok.parse(_replace(DOC_TOKENS, "A", "Q"), grid_shape=(3, 4))
    with pytest.raises(ValueError, match=r"unknown tokens \['Q'\]"):
        tok.strict_ids(["<s>", "Q"])
    # The lenient transformers path maps unknown words to <unk>; strict parsing then refuses the id.
    ids = tok(DOC_TEXT.replace("A", "Q")).input_ids
    assert tok.unk_token_id in ids
    with pytest.raises(ValueError, match=r"<unk> at position 6: unknown tokens are never accepted"):
        tok.parse(ids, grid_shape=(3, 4))
    good = tok.strict_ids(DOC_TOKENS)
    for bad_id in (len(tok), 10_000, -1):
        with pytest.raises(ValueError, match=rf"token ids \[{bad_id}\] are outside the vocabulary \[0, 150\)"):
            tok.parse(good[:5] + [bad_id] + good[5:], grid_shape=(3, 4))


def test_bad_arguments_raise(tok):
    with pytest.raises(ValueError, match=r"procedure_format must be one of .*got 'bfs_tree'"):
        PCTokenizer.for_maze("bfs_tree")
    with pytest.raises(ValueError, match=r"procedure_format must be one of .*got 'maps'"):
        tok.parse(DOC_TEXT, grid_shape=(3, 4), procedure_format="maps")
    with pytest.raises(ValueError, match=r"max_grid_size must be a positive int, got 0"):
        build_maze_vocab(0)
    with pytest.raises(ValueError, match=r"grid \(65, 65\) is larger than this tokenizer's max_grid_size=64"):
        tok.state_tokens(np.zeros((65, 65), dtype=bool), (1, 1))
    with pytest.raises(ValueError, match=r"walls must be a 2D \(height, width\) array, got shape \(12,\)"):
        tok.state_tokens(DOC_WALLS.ravel(), (1, 2))
    with pytest.raises(ValueError, match=r"goal \(0, 0\) must be a free cell"):
        tok.state_tokens(DOC_WALLS, (0, 0))
    with pytest.raises(ValueError, match=r"agent \(1, 7\) must be a free cell"):
        tok.state_tokens(DOC_WALLS, DOC_GOAL, (1, 7))
    record = bfs_maps(DOC_WALLS, DOC_GOAL, DOC_AGENT)
    with pytest.raises(ValueError, match=r"action 3 disagrees with the record's action 1"):
        tok.example_tokens(DOC_WALLS, DOC_GOAL, DOC_AGENT, record, action=3)
    for action in (None, 4, -1):
        with pytest.raises(ValueError, match=rf"action must be an int in \[0, 4\), got {action}"):
            tok.example_tokens(DOC_WALLS, DOC_GOAL, DOC_AGENT, action=action)
    with pytest.raises(TypeError, match=r"no token grammar for a procedure record of type str"):
        tok.procedure_tokens("not a record")


# ------------------------------------------------------------------------------------------------ save and load


@pytest.mark.parametrize("procedure_format, max_grid_size", [("bfs_maps", 64), ("bfs_trace", 20)])
def test_save_pretrained_from_pretrained_round_trip(tmp_path, procedure_format, max_grid_size):
    tokenizer = PCTokenizer.for_maze(procedure_format, max_grid_size=max_grid_size)
    assert len(tokenizer) == 22 + 2 * max_grid_size
    tokenizer.save_pretrained(str(tmp_path))
    walls, goal = make_maze(16, "tunnel", seed=2)
    agent = random_agents(walls, goal, np.random.default_rng(3), count=1)[0]
    record = EXPERTS[procedure_format](walls, goal, agent)
    ids = tokenizer.encode_example(walls, goal, agent, record)

    for loaded in (PCTokenizer.from_pretrained(str(tmp_path)), AutoTokenizer.from_pretrained(str(tmp_path))):
        assert type(loaded) is PCTokenizer
        assert loaded.get_vocab() == tokenizer.get_vocab()
        assert len(loaded) == len(tokenizer)
        assert loaded.procedure_format == procedure_format
        assert loaded.max_grid_size == max_grid_size
        assert loaded.layout_token_ids() == tokenizer.layout_token_ids()
        assert (loaded.pad_token, loaded.unk_token, loaded.bos_token, loaded.eos_token) == (
            "<pad>", "<unk>", "<s>", "</s>")
        assert loaded.padding_side == "right"
        assert loaded.encode_example(walls, goal, agent, record) == ids
        assert loaded(" ".join(tokenizer.convert_ids_to_tokens(ids))).input_ids == ids
        assert loaded.parse(ids).record == record


# ------------------------------------------------------------------------------------------- the shipped assets


def _load_recipe():
    spec = importlib.util.spec_from_file_location("make_tokenizers", REPO_ROOT / "recipes" / "make_tokenizers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tokenizers_folder_holds_json_only_and_does_not_shadow_the_library():
    import tokenizers

    assert hasattr(tokenizers, "Tokenizer"), f"`import tokenizers` found {tokenizers!r}, not the library"
    assert Path(tokenizers.__file__).resolve().parent != REPO_ROOT / "tokenizers"
    folder = REPO_ROOT / "tokenizers"
    assert {"maze-bfs-maps", "maze-bfs-trace", "minatar-mcts"} <= {p.name for p in folder.iterdir()}
    assert [p for p in folder.rglob("*") if p.is_file() and p.suffix != ".json"] == []


@pytest.mark.parametrize("procedure_format", PROCEDURE_FORMATS)
def test_shipped_assets_equal_a_fresh_tokenizer(tmp_path, procedure_format):
    path = REPO_ROOT / "tokenizers" / f"maze-{procedure_format.replace('_', '-')}"
    assert sorted(p.name for p in path.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    fresh = PCTokenizer.for_maze(procedure_format)

    raw = json.loads((path / "tokenizer.json").read_text())
    assert raw["model"]["type"] == "WordLevel"
    assert raw["model"]["vocab"] == build_maze_vocab()  # same tokens, same ids
    config = json.loads((path / "tokenizer_config.json").read_text())
    assert "auto_map" not in config  # no remote code beside it to point at
    assert (config["tokenizer_class"], config["procedure_format"], config["max_grid_size"]) == (
        "PCTokenizer", procedure_format, 64)

    for loaded in (PCTokenizer.from_pretrained(str(path)), AutoTokenizer.from_pretrained(str(path))):
        assert type(loaded) is PCTokenizer
        assert loaded.get_vocab() == fresh.get_vocab()
        assert loaded.procedure_format == procedure_format
        assert loaded.layout_token_ids() == fresh.layout_token_ids()
        assert loaded.strict_ids(DOC_TOKENS) == fresh.strict_ids(DOC_TOKENS)

    # The recipe is the source of truth: what it writes now is exactly what is checked in.
    recipe = _load_recipe()
    written = recipe.write_tokenizer(procedure_format, tmp_path)
    assert written.name == path.name
    recipe.check_tokenizer(procedure_format, written)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert json.loads((written / name).read_text()) == json.loads((path / name).read_text()), (
            f"{path / name} differs from what recipes/make_tokenizers.py writes; rerun the script"
        )


def test_shipped_minatar_asset_equals_a_fresh_tokenizer(tmp_path):
    path = REPO_ROOT / "tokenizers" / "minatar-mcts"
    assert sorted(p.name for p in path.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    fresh = PCTokenizer.for_minatar()

    raw = json.loads((path / "tokenizer.json").read_text())
    assert raw["model"]["type"] == "WordLevel"
    assert raw["model"]["vocab"] == tokenization_pc.build_minatar_vocab()  # same tokens, same ids
    config = json.loads((path / "tokenizer_config.json").read_text())
    assert "auto_map" not in config
    assert {k: config[k] for k in ("tokenizer_class", "domain", "procedure_format", "max_grid_size", "max_reward")} == {
        "tokenizer_class": "PCTokenizer", "domain": "minatar", "procedure_format": "mcts", "max_grid_size": 10,
        "max_reward": 1}

    tokens = ["<s>", *["c0"] * 99, "c1023", "<proc>", "a1", "n7", "q9", "<path>", "a1", "r1", "<act>", "a1", "</s>"]
    for loaded in (PCTokenizer.from_pretrained(str(path)), AutoTokenizer.from_pretrained(str(path))):
        assert type(loaded) is PCTokenizer
        assert loaded.get_vocab() == fresh.get_vocab()
        assert (loaded.domain, loaded.procedure_format) == ("minatar", "mcts")
        assert loaded.layout_token_ids(num_channels=4, num_actions=3) == fresh.layout_token_ids(
            num_channels=4, num_actions=3)
        assert loaded.strict_ids(tokens) == fresh.strict_ids(tokens)

    recipe = _load_recipe()
    assert ("minatar", "mcts") in recipe.ASSETS
    written = recipe.write_tokenizer("mcts", tmp_path, domain="minatar")
    assert written.name == path.name
    recipe.check_tokenizer("mcts", written, domain="minatar")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert json.loads((written / name).read_text()) == json.loads((path / name).read_text()), (
            f"{path / name} differs from what recipes/make_tokenizers.py writes; rerun the script"
        )


def test_recipe_check_catches_a_hand_edited_vocabulary(tmp_path):
    recipe = _load_recipe()
    written = recipe.write_tokenizer("bfs_maps", tmp_path)
    tokenizer_json = written / "tokenizer.json"
    raw = json.loads(tokenizer_json.read_text())
    raw["model"]["vocab"]["a0"], raw["model"]["vocab"]["a1"] = raw["model"]["vocab"]["a1"], raw["model"]["vocab"]["a0"]
    tokenizer_json.write_text(json.dumps(raw))
    with pytest.raises(RuntimeError, match=re.escape("differs from PCTokenizer.for_maze('bfs_maps')")):
        recipe.check_tokenizer("bfs_maps", written)


# ------------------------------------------------------------------------------------- agreement with PCConfig


@pytest.mark.parametrize("procedure_format", PROCEDURE_FORMATS)
def test_layout_token_ids_match_pcconfig_defaults(tokenizers_by_format, procedure_format):
    layout = tokenizers_by_format[procedure_format].layout_token_ids()
    assert layout == _MAZE_LAYOUT
    config = PCConfig()
    assert {name: getattr(config, name) for name in layout} == layout
    # And the ids point at the tokens the config's docstring names, in order.
    tokenizer = tokenizers_by_format[procedure_format]
    assert tokenizer.convert_ids_to_tokens(layout["state_token_ids"]) == ["#", ".", "G", "A"]
    assert tokenizer.convert_ids_to_tokens(layout["map_token_ids"]) == ["v", ">", "^", "<", "_", "*"]
    assert tokenizer.convert_ids_to_tokens(layout["action_token_ids"]) == ["a0", "a1", "a2", "a3"]
    assert tokenizer.convert_ids_to_tokens(
        [layout[f"{name}_token_id"] for name in ("pad", "bos", "eos", "proc", "step", "path", "act")]
    ) == ["<pad>", "<s>", "</s>", "<proc>", "<step>", "<path>", "<act>"]
