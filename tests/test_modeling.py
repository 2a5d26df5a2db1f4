"""Tests for PCConfig and PCForProcedureCloning: validation, shapes and losses, exact save/load (also as remote code
in a fresh process), attention backends, windowed attention against a dense reference, translation equivariance,
cached decoding, Trainer, overfitting one maze, and the errors a user meets.

Every model here is tiny (7×7 grid, hidden size 32, 2 layers); fixtures live in ``conftest.py``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from decoding_checks import assert_cached_generate_is_greedy
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, Trainer, TrainingArguments

import pc_transformers  # noqa: F401  (registers the Auto classes)
from pc_transformers import PCConfig, PCForProcedureCloning, PCModel, PCTokenizer
from pc_transformers.data import PCDataCollator
from pc_transformers.modeling_pc import WindowPlan

POSITIVE_FIELDS = ("vocab_size", "grid_size", "max_procedure_steps", "hidden_size", "num_hidden_layers",
                   "num_attention_heads", "intermediate_size", "max_position_embeddings")


def perturb(model, std: float = 0.3, seed: int = 1):
    """Add noise to every parameter, so outputs are far from ties and nothing equals its initial value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * std)
    return model


def state_ids(tokenizer, walls, goal, agent):
    return tokenizer.strict_ids(tokenizer.state_tokens(walls, goal, agent))


# ================================================================================================== 1. config
def test_config_defaults_are_valid_and_match_the_maze_tokenizer(tokenizer):
    config = PCConfig()
    assert config.model_type == "procedure_cloning"
    assert config.is_grid and config.num_cells == config.grid_size**2
    assert config.hide_agent is True  # grid PC hides the agent by default
    layout = tokenizer.layout_token_ids()
    for name, value in layout.items():
        assert getattr(config, name) == value, name


@pytest.mark.parametrize("kwargs, hide_agent", [
    ({}, True),
    ({"objective": "bc"}, False),
    ({"objective": "aux_bc"}, False),
    ({"procedure_format": "bfs_trace"}, False),
    ({"factorization": "autoregressive"}, True),
])
def test_config_hide_agent_default(kwargs, hide_agent):
    assert PCConfig(**kwargs).hide_agent is hide_agent


@pytest.mark.parametrize("procedure_format", ["bfs_maps", "bfs_trace"])
def test_config_from_tokenizer_matches_tokenizer_ids(procedure_format):
    tokenizer = PCTokenizer.for_maze(procedure_format, max_grid_size=12)
    config = PCConfig.from_tokenizer(tokenizer, grid_size=9)
    ids = tokenizer.convert_tokens_to_ids
    assert config.vocab_size == len(tokenizer) == 8 + 4 + 6 + 4 + 2 * 12
    assert config.procedure_format == procedure_format and config.grid_size == 9
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (
        ids("<pad>"), ids("<s>"), ids("</s>")) == (tokenizer.pad_token_id, tokenizer.bos_token_id,
                                                 tokenizer.eos_token_id)
    assert [config.proc_token_id, config.step_token_id, config.path_token_id, config.act_token_id] == ids(
        ["<proc>", "<step>", "<path>", "<act>"])
    assert config.state_token_ids == ids(["#", ".", "G", "A"])
    assert config.map_token_ids == ids(["v", ">", "^", "<", "_", "*"])
    assert config.action_token_ids == ids(["a0", "a1", "a2", "a3"])
    with pytest.raises(ValueError, match="grid_size 13 exceeds the tokenizer's max_grid_size 12"):
        PCConfig.from_tokenizer(tokenizer, grid_size=13)


INVALID_CONFIGS = [
    ({"procedure_format": "maps"}, r"procedure_format .*got 'maps'"),
    ({"factorization": "causal"}, r"factorization .*got 'causal'"),
    ({"objective": "rl"}, r"objective .*got 'rl'"),
    ({"position_encoding": "rope"}, r"position_encoding .*got 'rope'"),
    ({"hidden_size": 30, "num_attention_heads": 4}, r"hidden_size \(30\).*num_attention_heads \(4\)"),
    *[({name: value}, rf"{name} must be a positive int, got {value}") for name in POSITIVE_FIELDS
      for value in (0, -1)],
    ({"hidden_size": 32.0}, r"hidden_size must be a positive int, got 32.0"),
    ({"grid_size": True}, r"grid_size must be a positive int, got True"),
    ({"relative_clip": -1}, r"relative_clip .*got -1"),
    ({"relative_clip": 0}, r"relative_clip must be >= 1 .*got 0"),
    ({"objective": "bc", "factorization": "autoregressive"}, r"objective='bc'.*got 'autoregressive'"),
    ({"procedure_format": "bfs_trace", "hide_agent": True}, r"hide_agent=True .*'bfs_trace'"),
    ({"objective": "bc", "hide_agent": True}, r"hide_agent=True .*objective='bc'"),
    ({"objective": "aux_bc", "hide_agent": True}, r"hide_agent=True .*objective='aux_bc'"),
    ({"state_token_ids": [8, 9, 10]}, r"state_token_ids must hold 4 token ids"),
    ({"map_token_ids": [12, 13, 14, 15, 16, 150]}, r"map_token_ids must hold 6 token ids in \[0, 150\)"),
    ({"action_token_ids": [18, 19, 20, -1]}, r"action_token_ids"),
    ({"procedure_loss_weight": -0.5}, r"procedure_loss_weight .*got -0.5"),
    ({"procedure_format": "bfs_trace", "action_loss_weight": 0}, r"action_loss_weight > 0"),
    ({"branch_order": "action"}, r"branch_order orders the root branches of an 'mcts' procedure; leave it 'visits' "
                                 r"for procedure_format='bfs_maps', got 'action'"),
]


@pytest.mark.parametrize("kwargs, match", INVALID_CONFIGS, ids=[str(k) for k, _ in INVALID_CONFIGS])
def test_config_rejects_invalid_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PCConfig(**kwargs)


def test_config_save_load_round_trip(tmp_path, make_config):
    config = make_config(factorization="autoregressive", objective="aux_bc", position_encoding="absolute",
                         relative_clip=1, procedure_loss_weight=0.5, max_procedure_steps=7)
    config.save_pretrained(tmp_path)
    for loaded in (PCConfig.from_pretrained(tmp_path), AutoConfig.from_pretrained(tmp_path)):
        assert type(loaded) is PCConfig
        without_path = lambda c: {k: v for k, v in c.to_dict().items() if k != "_name_or_path"}  # noqa: E731
        assert without_path(loaded) == without_path(config)
        assert loaded.hide_agent is False and loaded.relative_clip == 1


# ======================================================================================= 2. shapes and losses
GRID_CASES = [("bfs_maps", f, o, p) for f in ("markov", "autoregressive") for o in ("pc", "bc", "aux_bc")
              for p in ("relative_2d", "absolute") if not (o == "bc" and f == "autoregressive")]
TEXT_CASES = [("bfs_trace", "markov", o, "relative_2d") for o in ("pc", "bc")]


@pytest.mark.parametrize("procedure_format, factorization, objective, position_encoding", GRID_CASES + TEXT_CASES)
def test_forward_shapes_and_losses(make_config, make_batch, procedure_format, factorization, objective,
                                   position_encoding):
    config = make_config(procedure_format, factorization=factorization, objective=objective,
                         position_encoding=position_encoding, procedure_loss_weight=0.5, action_loss_weight=2.0)
    model = PCForProcedureCloning(config).eval()
    batch = make_batch(config, 3)
    b, t = batch["input_ids"].shape
    assert b == 3
    with torch.no_grad():
        out = model(**batch)
        unlabelled = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    assert out.logits.shape == (b, t, config.vocab_size)
    assert out.action_loss.shape == () and torch.isfinite(out.action_loss)
    if objective == "bc":
        assert out.procedure_loss is None  # BC has no procedure
        assert torch.equal(out.loss, 2.0 * out.action_loss)
    else:
        assert out.procedure_loss.shape == () and torch.isfinite(out.procedure_loss)
        assert torch.equal(out.loss, 0.5 * out.procedure_loss + 2.0 * out.action_loss)
    assert unlabelled.loss is None and unlabelled.procedure_loss is None and unlabelled.action_loss is None
    assert torch.equal(unlabelled.logits, out.logits)


def reference_grid_losses(config, input_ids, logits):
    """The grid PC losses built from ``logits`` alone: every map cell predicted from the same cell one block earlier
    (state → map 0), softmax over the map tokens; the action from the logits at ``<act>`` over the action tokens."""
    n = config.num_cells
    map_ids, action_ids = torch.tensor(config.map_token_ids), torch.tensor(config.action_token_ids)
    procedure_terms, action_terms = [], []
    for i, ids in enumerate(input_ids.tolist()):
        act = ids.index(config.act_token_id)
        num_maps = (act - (n + 1)) // (n + 1)
        assert act == n + 2 + num_maps * (n + 1) - 1  # <s> state <proc> (map <step>)* map <act>
        for m in range(num_maps):
            source = 1 if m == 0 else n + 2 + (m - 1) * (n + 1)  # the block whose cells predict map m
            target = n + 2 + m * (n + 1)
            for c in range(n):
                logp = logits[i, source + c, map_ids].log_softmax(-1)
                procedure_terms.append(-logp[config.map_token_ids.index(ids[target + c])])
        logp = logits[i, act, action_ids].log_softmax(-1)
        action_terms.append(-logp[config.action_token_ids.index(ids[act + 1])])
    return torch.stack(procedure_terms).mean(), torch.stack(action_terms).mean()


def test_grid_pc_losses_match_an_independent_computation(make_config, make_batch):
    """Procedure loss: every map cell predicted from the same cell one block earlier (state → map 0), softmax over
    the six map tokens; action loss: the logits at ``<act>`` over the four action tokens."""
    config = make_config()
    model = perturb(PCForProcedureCloning(config)).eval()
    batch = make_batch(config, 3)
    with torch.no_grad():
        out = model(**batch)
    procedure, action = reference_grid_losses(config, batch["input_ids"], out.logits)
    torch.testing.assert_close(out.procedure_loss, procedure, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.action_loss, action, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("procedure_format, factorization, objective, position_encoding",
                         [c for c in GRID_CASES if c[3] == "relative_2d"] + TEXT_CASES)
def test_logits_to_keep_leaves_the_losses_and_gradients_alone(make_config, make_batch, procedure_format,
                                                              factorization, objective, position_encoding):
    """``logits_to_keep`` (transformers' convention) picks the positions that get logits; the losses and every
    gradient are those of the full call, bit for bit, also with no logits at all (what ``recipes/train.py`` asks)."""
    config = make_config(procedure_format, factorization=factorization, objective=objective,
                         position_encoding=position_encoding)
    model = perturb(PCForProcedureCloning(config)).eval()
    batch = make_batch(config, 3)
    b, t = batch["input_ids"].shape
    full = model(**batch)
    reference = torch.autograd.grad(full.loss, list(model.parameters()), allow_unused=True)
    none = model(**batch, logits_to_keep=torch.zeros(0, dtype=torch.long))
    assert none.logits.shape == (b, 0, config.vocab_size)
    assert torch.equal(none.loss, full.loss) and torch.equal(none.action_loss, full.action_loss)
    assert (none.procedure_loss is None) == (full.procedure_loss is None)
    if full.procedure_loss is not None:
        assert torch.equal(none.procedure_loss, full.procedure_loss)
    grads = torch.autograd.grad(none.loss, list(model.parameters()), allow_unused=True)
    for (name, _), got, want in zip(model.named_parameters(), grads, reference):
        assert (got is None) == (want is None), name
        if got is not None:
            assert torch.equal(got, want), name

    act = batch["input_ids"][0].tolist().index(config.act_token_id)  # read at the agent's cell under some objectives
    with torch.no_grad():
        logits = model(**batch).logits
        for keep, index in ((1, [t - 1]), (3, [t - 3, t - 2, t - 1]), (torch.tensor([0, act, t - 1]), [0, act, t - 1])):
            torch.testing.assert_close(model(**batch, logits_to_keep=keep).logits, logits[:, index],
                                       atol=1e-6, rtol=1e-5, msg=str(keep))
        assert torch.equal(model(**batch, logits_to_keep=0).logits, logits)  # 0: every position
    for bad in (-1, 1.5, True, torch.zeros(2, 2, dtype=torch.long), torch.tensor([0.5]), torch.tensor([True])):
        with pytest.raises(ValueError, match="logits_to_keep must be"):
            model(**batch, logits_to_keep=bad)


@pytest.mark.parametrize("factorization", ["markov", "autoregressive"])
def test_grid_losses_read_from_the_distinct_rows_have_the_gradients_of_the_logits(make_config, make_batch,
                                                                                 factorization):
    """The head reads its losses from ``row_states`` (one row per padding id, not the padded ``(B, T, D)`` states):
    ``last_hidden_state`` is those rows gathered, and every parameter's gradient equals that of the same losses
    built from ``logits``, i.e. through the padded states."""
    config = make_config(factorization=factorization, procedure_loss_weight=0.5, action_loss_weight=2.0)
    model = perturb(PCForProcedureCloning(config)).train()
    batch = make_batch(config, 3)
    base = model.model(batch["input_ids"])
    assert torch.equal(base.last_hidden_state, base.row_states[base.row_index])
    assert len(base.row_states) < base.row_index.numel()  # the padding tokens share a row
    out = model(**batch)
    grads = torch.autograd.grad(out.loss, list(model.parameters()), allow_unused=True)
    procedure, action = reference_grid_losses(config, batch["input_ids"], model(**batch).logits)
    torch.testing.assert_close(out.loss, 0.5 * procedure + 2.0 * action, atol=1e-5, rtol=1e-5)
    reference = torch.autograd.grad(0.5 * procedure + 2.0 * action, list(model.parameters()), allow_unused=True)
    for (name, _), got, want in zip(model.named_parameters(), grads, reference):
        assert (got is None) == (want is None), name
        if got is not None:
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4, msg=name)


def test_grid_action_is_read_at_the_agent_cell_of_the_last_map(make_config, make_batch):
    config = make_config()
    model = perturb(PCForProcedureCloning(config)).eval()
    batch = make_batch(config, 2)
    with torch.no_grad():
        out = model(**batch)
        hidden = model.model(batch["input_ids"]).last_hidden_state
    n = config.num_cells
    for i, ids in enumerate(batch["input_ids"].tolist()):
        act = ids.index(config.act_token_id)
        agent = ids[1 : n + 1].index(config.state_token_ids[3])
        last_map = act - n
        torch.testing.assert_close(out.logits[i, act], model.lm_head(hidden[i, last_map + agent]))


def test_text_pc_losses_match_an_independent_computation(make_config, make_batch):
    """Text-like PC: next-token cross-entropy (whole vocabulary) over the procedure tokens and the closing ``<act>``;
    the action from the logits at ``<act>`` over the action tokens."""
    config = make_config("bfs_trace")
    model = perturb(PCForProcedureCloning(config)).eval()
    batch = make_batch(config, 3)
    with torch.no_grad():
        out = model(**batch)
    procedure_terms, action_terms = [], []
    for i, ids in enumerate(batch["input_ids"].tolist()):
        proc, act = ids.index(config.proc_token_id), ids.index(config.act_token_id)
        for p in range(proc, act):
            procedure_terms.append(-out.logits[i, p].log_softmax(-1)[ids[p + 1]])
        logp = out.logits[i, act, config.action_token_ids].log_softmax(-1)
        action_terms.append(-logp[config.action_token_ids.index(ids[act + 1])])
    torch.testing.assert_close(out.procedure_loss, torch.stack(procedure_terms).mean(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.action_loss, torch.stack(action_terms).mean(), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("procedure_format, kwargs", [
    ("bfs_maps", {"factorization": "markov"}),
    ("bfs_maps", {"factorization": "autoregressive"}),
    ("bfs_maps", {"factorization": "autoregressive", "position_encoding": "absolute"}),
    ("bfs_trace", {}),
], ids=str)
def test_right_padding_does_not_change_an_examples_outputs(make_config, make_examples, tokenizer, procedure_format,
                                                           kwargs):
    config = make_config(procedure_format, **kwargs)
    model = perturb(PCForProcedureCloning(config)).eval()
    examples = make_examples(config)
    batch = PCDataCollator(tokenizer.pad_token_id)(list(examples))
    lengths = [len(e["input_ids"]) for e in examples]
    assert len(set(lengths)) > 1  # the batch is padded
    with torch.no_grad():
        logits = model(**batch).logits
        for i, example in enumerate(examples):
            ids = torch.tensor([example["input_ids"]])
            torch.testing.assert_close(logits[i, : lengths[i]], model(ids).logits[0], atol=1e-5, rtol=1e-5)


def test_autoregressive_blocks_skip_padding_with_the_same_loss_and_gradients(make_config, make_examples, tokenizer,
                                                                            monkeypatch):
    """Autoregressive blocks run, longest example first, only for the examples whose block is not padding
    (`PCAttention._windowed_blocks`). On a right-padded training batch given shortest first, the loss and every
    gradient equal those of the computation that runs every example for every block (``output_attentions=True``
    turns the skipping off)."""
    from pc_transformers.modeling_pc import PCAttention

    config = make_config(factorization="autoregressive")
    model = perturb(PCForProcedureCloning(config)).train()
    short, *_, long = sorted(make_examples(config), key=lambda e: len(e["input_ids"]))
    assert len(short["input_ids"]) < len(long["input_ids"])
    examples = [short, short, long]  # shortest first: the blocks are reordered and back
    batch = PCDataCollator(tokenizer.pad_token_id)(examples)
    rows = []
    window_tiles = PCAttention._window_tiles
    monkeypatch.setattr(PCAttention, "_window_tiles",
                        lambda self, q, *args: rows.append(q.shape[0]) or window_tiles(self, q, *args))

    def loss_and_grads(**kwargs):
        rows.clear()
        model.zero_grad()
        loss = model(**batch, **kwargs).loss
        loss.backward()
        return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}

    loss, grads = loss_and_grads()
    assert min(rows) < len(examples) and max(rows) == len(examples)  # padding blocks were skipped
    full_loss, full_grads = loss_and_grads(output_attentions=True)
    assert set(rows) == {len(examples)}
    torch.testing.assert_close(loss, full_loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == full_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], full_grads[name], rtol=1e-5, atol=1e-6, msg=name)


# ================================================================================================ 3. save/load
@pytest.mark.parametrize("procedure_format, factorization", [
    ("bfs_maps", "markov"), ("bfs_maps", "autoregressive"), ("bfs_trace", "markov"),
])
def test_save_load_is_exact(tmp_path, make_config, make_batch, procedure_format, factorization):
    config = make_config(procedure_format, factorization=factorization)
    model = perturb(PCForProcedureCloning(config)).eval()  # no parameter keeps its initial value
    batch = make_batch(config, 2)
    model.save_pretrained(tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert "model.safetensors" in files and "config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], files
    saved = load_file(tmp_path / "model.safetensors")
    assert set(saved) == set(model.state_dict())
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())

    with torch.no_grad():
        expected = model(**batch)
        expected_hidden = model.model(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    for loaded in (PCForProcedureCloning.from_pretrained(tmp_path), AutoModelForCausalLM.from_pretrained(tmp_path)):
        assert type(loaded) is PCForProcedureCloning and not loaded.training
        with torch.no_grad():
            out = loaded(**batch)
        assert torch.equal(out.logits, expected.logits)
        assert torch.equal(out.loss, expected.loss)
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is PCModel
    with torch.no_grad():
        hidden = base(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    assert torch.equal(hidden, expected_hidden)
    loaded_config = AutoConfig.from_pretrained(tmp_path)
    assert type(loaded_config) is PCConfig and loaded_config.factorization == factorization


# ================================================================================== 4. backends, checkpointing
BACKEND_CASES = [
    ("bfs_maps", {"factorization": "markov"}),
    ("bfs_maps", {"factorization": "autoregressive"}),
    ("bfs_maps", {"factorization": "autoregressive", "position_encoding": "absolute"}),
    ("bfs_trace", {}),
]


@pytest.mark.parametrize("procedure_format, kwargs", BACKEND_CASES, ids=lambda c: str(c))
def test_sdpa_matches_eager(make_config, make_batch, procedure_format, kwargs):
    model = perturb(PCForProcedureCloning(make_config(procedure_format, **kwargs))).eval()
    batch = make_batch(model.config, 3)
    outputs = {}
    for implementation in ("sdpa", "eager"):
        model.set_attn_implementation(implementation)
        assert model.config._attn_implementation == implementation
        with torch.no_grad():
            outputs[implementation] = model(**batch)
    torch.testing.assert_close(outputs["sdpa"].logits, outputs["eager"].logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(outputs["sdpa"].loss, outputs["eager"].loss, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:.*is deprecated.*activation_checkpointing:FutureWarning")
@pytest.mark.parametrize("procedure_format, kwargs", BACKEND_CASES[:2] + BACKEND_CASES[3:], ids=lambda c: str(c))
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(make_config, make_batch, procedure_format, kwargs):
    model = perturb(PCForProcedureCloning(make_config(procedure_format, **kwargs))).train()
    batch = make_batch(model.config, 2)
    calls = []  # calls of a module inside a layer (module hooks do not fire when the backward pass recomputes)
    mlp = model.model.layers[0].mlp
    mlp_forward = mlp.forward
    mlp.forward = lambda x: calls.append(1) or mlp_forward(x)

    def loss_and_grads():
        calls.clear()
        model.zero_grad()
        out = model(**batch)
        out.loss.backward()
        return out.loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, \
            len(calls)

    loss, grads, plain_calls = loss_and_grads()
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    checkpointed_loss, checkpointed_grads, checkpointed_calls = loss_and_grads()
    assert checkpointed_calls == 2 * plain_calls  # each layer call is recomputed in the backward pass
    torch.testing.assert_close(checkpointed_loss, loss)
    assert grads.keys() == checkpointed_grads.keys() and len(grads) == len(list(model.parameters()))
    for name in grads:
        torch.testing.assert_close(checkpointed_grads[name], grads[name], atol=1e-6, rtol=1e-5, msg=name)


# ==================================================================================== 5. windowed attention
def dense_window_reference(attention, hidden, num_blocks, autoregressive):
    """Independent reference of windowed attention over ``num_blocks`` map blocks laid out one after another:
    every query cell attends, per head, to the key cells within ±w rows and columns in its own block (and, if
    autoregressive, in earlier blocks), scores ``q·k/√K + table[head, relation, Δrow + w, Δcol + w]`` with
    relation 0 for the own block and 1 for an earlier one."""
    config = attention.config
    g, w = config.grid_size, attention.relative_bias.clip
    side, heads = 2 * w + 1, attention.num_heads
    b, t, d = hidden.shape
    assert t == num_blocks * g * g
    k_dim = d // heads
    q = attention.q_proj(hidden).view(b, t, heads, k_dim).transpose(1, 2).double()
    k = attention.k_proj(hidden).view(b, t, heads, k_dim).transpose(1, 2).double()
    v = attention.v_proj(hidden).view(b, t, heads, k_dim).transpose(1, 2).double()
    table = attention.relative_bias.table.double().view(heads, 2, side, side)  # differentiable: see the gradient test
    position = torch.arange(t)
    block, cell = position // (g * g), position % (g * g)
    row, col = cell // g, cell % g
    scores = torch.full((b, heads, t, t), -math.inf, dtype=torch.double)
    for i in range(t):
        for j in range(t):
            dr, dc = int(row[i] - row[j]), int(col[i] - col[j])
            same = block[i] == block[j]
            if abs(dr) > w or abs(dc) > w or not (same or (autoregressive and block[j] < block[i])):
                continue
            relation = 0 if same else 1
            scores[:, :, i, j] = (q[:, :, i] * k[:, :, j]).sum(-1) / math.sqrt(k_dim) + table[:, relation, dr + w,
                                                                                                dc + w]
    out = scores.softmax(-1) @ v  # (B, H, T, K)
    return attention.o_proj(out.transpose(1, 2).reshape(b, t, d).float())


@pytest.mark.parametrize("grid_size, relative_clip", [(5, 2), (7, 1), (8, 2)])  # 8: tiles fill the grid exactly
def test_windowed_attention_matches_dense_reference_markov(make_config, grid_size, relative_clip):
    config = make_config(grid_size=grid_size, relative_clip=relative_clip)
    model = PCForProcedureCloning(config).eval()
    attention = model.model.layers[0].self_attn
    with torch.no_grad():
        attention.relative_bias.table.normal_(0.0, 1.0)  # an arbitrary table: every entry matters
        hidden = torch.randn(3, config.num_cells, config.hidden_size)  # three independent map blocks
        one = torch.zeros(3, 1, dtype=torch.long)
        plan = WindowPlan(1, one, one, torch.ones(3, 1, dtype=torch.bool), autoregressive=False)
        out, _ = attention(hidden, None, None, window=plan)
        reference = dense_window_reference(attention, hidden, 1, autoregressive=False)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("factorization", ["markov", "autoregressive"])
@pytest.mark.parametrize("grid_size, relative_clip", [(7, 1), (8, 2)])  # 8: halos gathered as whole sub-tiles
def test_windowed_attention_gradients_match_dense_reference(make_config, grid_size, relative_clip, factorization):
    """Training takes its own path (halos by strided slices with their own backward, eager products so the bias table
    gets its gradient; autoregressive blocks see prefixes of the halos): the gradients of the input, the projections
    and the bias table must be those of the reference."""
    config = make_config(grid_size=grid_size, relative_clip=relative_clip, factorization=factorization)
    attention = PCForProcedureCloning(config).train().model.layers[0].self_attn
    with torch.no_grad():
        attention.relative_bias.table.normal_(0.0, 1.0)
    autoregressive = factorization == "autoregressive"
    num_blocks = 3 if autoregressive else 1  # three query blocks each seeing the ones before
    hidden = torch.randn(3, num_blocks * config.num_cells, config.hidden_size, requires_grad=True)
    upstream = torch.randn(3, num_blocks * config.num_cells, config.hidden_size)
    blocks = torch.arange(num_blocks).expand(3, -1)
    plan = WindowPlan(num_blocks, blocks, blocks, torch.ones(3, num_blocks, dtype=torch.bool), autoregressive)

    def grads(forward):
        attention.zero_grad(set_to_none=True)
        hidden.grad = None
        (forward() * upstream).sum().backward()
        return {"hidden": hidden.grad.clone(), **{n: p.grad.clone() for n, p in attention.named_parameters()}}

    ours = grads(lambda: attention(hidden, None, None, window=plan)[0])
    reference = grads(lambda: dense_window_reference(attention, hidden, num_blocks, autoregressive))
    assert ours.keys() == reference.keys() and "relative_bias.table" in ours
    for name in ours:
        torch.testing.assert_close(ours[name], reference[name], atol=1e-4, rtol=1e-4, msg=name)
    assert ours["relative_bias.table"].abs().sum() > 0


@pytest.mark.parametrize("grid_size", [6, 8])
def test_windowed_attention_matches_dense_reference_autoregressive(make_config, grid_size):
    config = make_config(grid_size=grid_size, factorization="autoregressive")
    model = PCForProcedureCloning(config).eval()
    attention = model.model.layers[0].self_attn
    num_blocks = 3
    with torch.no_grad():
        attention.relative_bias.table.normal_(0.0, 1.0)
        hidden = torch.randn(2, num_blocks * config.num_cells, config.hidden_size)
        blocks = torch.arange(1, num_blocks + 1).expand(2, -1)
        plan = WindowPlan(num_blocks, blocks, blocks, torch.ones(2, num_blocks, dtype=torch.bool),
                          autoregressive=True)
        out, _ = attention(hidden, None, None, window=plan)
        reference = dense_window_reference(attention, hidden, num_blocks, autoregressive=True)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


def test_window_mask_kept_at_inference_follows_the_weights(make_config):
    """Outside training the Markov window mask is kept between calls; changing the weights must not reuse it."""
    config = make_config(grid_size=8)
    model = PCForProcedureCloning(config).eval()
    attention = model.model.layers[0].self_attn
    hidden = torch.randn(2, config.num_cells, config.hidden_size)
    one = torch.zeros(2, 1, dtype=torch.long)
    plan = WindowPlan(1, one, one, torch.ones(2, 1, dtype=torch.bool), autoregressive=False)
    with torch.no_grad():
        first, _ = attention(hidden, None, None, window=plan)
        again, _ = attention(hidden, None, None, window=plan)
        torch.testing.assert_close(again, first, rtol=0, atol=0)
        attention.relative_bias.table.normal_(0.0, 1.0)  # in place, as an optimizer step or load_state_dict does
        out, _ = attention(hidden, None, None, window=plan)
        reference = dense_window_reference(attention, hidden, 1, autoregressive=False)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    with torch.inference_mode():
        inference, _ = attention(hidden, None, None, window=plan)
    torch.testing.assert_close(inference, out, rtol=0, atol=0)
    model.train()
    trained, _ = attention(hidden, None, None, window=plan)  # with autograd: built afresh, the same values
    torch.testing.assert_close(trained.detach(), out, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("grid_size, w", [(8, 2), (8, 4), (16, 2)])
def test_halo_gather_backward_matches_autograd(grid_size, w):
    """The halos' hand-written backward (`_HaloTiles`, taken whenever the keys need gradients) equals autograd's
    through the same slices, and the forward is the gather itself."""
    from pc_transformers import modeling_pc

    x = torch.randn(3, 2, 2 * grid_size * grid_size, 4, requires_grad=True)  # two blocks per example
    halos = modeling_pc._halo_tiles(x, grid_size, w)
    assert halos.grad_fn.name().startswith("_HaloTiles")
    upstream = torch.randn_like(halos)
    (ours,) = torch.autograd.grad(halos, x, upstream)
    (reference,) = torch.autograd.grad(modeling_pc._gather_halos(x, grid_size, w), x, upstream)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(halos, modeling_pc._gather_halos(x, grid_size, w), rtol=0, atol=0)


def _pattern_sequence(tokenizer, config, offset):
    """``<s> state <proc> x_0 <step> x_1`` for a grid of walls holding a small room at ``offset``."""
    g = config.grid_size
    walls = np.ones((g, g), dtype=bool)
    room = np.array([[0, 0, 0, 1], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)  # the bfs_maps docstring's maze
    r, c = offset
    walls[r : r + 3, c : c + 4] = room
    goal, agent = (r + 1, c + 2), (r + 2, c)
    x0 = np.full((g, g), 4)
    x0[goal] = 5
    x1 = x0.copy()
    x1[r, c + 2], x1[r + 1, c + 3], x1[r + 2, c + 2] = 0, 3, 2
    tokens = ["<s>", *tokenizer.state_tokens(walls, goal, agent), "<proc>", *tokenizer.map_tokens(x0), "<step>",
              *tokenizer.map_tokens(x1)]
    return torch.tensor([tokenizer.strict_ids(tokens)])


@pytest.mark.parametrize("position_encoding", ["relative_2d", "absolute"])
def test_map_predictions_are_translation_equivariant_with_relative_positions(tokenizer, make_config,
                                                                             position_encoding):
    """A map cell's prediction depends on the cells within num_layers · relative_clip of it only, whatever its
    absolute position: the same room at two offsets gives the same (shifted) logits away from the borders."""
    config = make_config(grid_size=11, relative_clip=1, position_encoding=position_encoding)
    model = perturb(PCForProcedureCloning(config), std=0.5).eval()
    g, n = config.grid_size, config.num_cells
    offset_a, shift = (2, 2), (3, 1)
    offset_b = (offset_a[0] + shift[0], offset_a[1] + shift[1])
    with torch.no_grad():
        logits_a = model(_pattern_sequence(tokenizer, config, offset_a)).logits[0]
        logits_b = model(_pattern_sequence(tokenizer, config, offset_b)).logits[0]
    radius = config.num_hidden_layers * config.relative_clip
    inside = lambda x: radius <= x <= g - 1 - radius  # noqa: E731  (the receptive field stays on the grid)
    cells = [(r, c) for r in range(g) for c in range(g)
             if inside(r) and inside(c) and inside(r + shift[0]) and inside(c + shift[1])]
    assert len(cells) >= 12
    map_ids = config.map_token_ids
    same = []
    for block in range(2):  # the cells of x_0 predict x_1, those of x_1 predict x_2
        start = n + 2 + block * (n + 1)
        for r, c in cells:
            a = logits_a[start + r * g + c]
            b = logits_b[start + (r + shift[0]) * g + c + shift[1]]
            same.append(torch.allclose(a, b, atol=1e-5) and int(a[map_ids].argmax()) == int(b[map_ids].argmax()))
    if position_encoding == "relative_2d":
        assert all(same)
    else:  # learned absolute cell embeddings break the symmetry
        assert not any(same)


# ================================================================================================ 6. decoding
def count_forward_calls(model):
    lengths = []
    handle = model.register_forward_hook(lambda module, args, kwargs, output: lengths.append(
        (args[0] if args else kwargs["input_ids"]).shape[1]), with_kwargs=True)
    return lengths, handle


def count_passes(model):
    """Every pass through the network, `forward` or the Markov map step, ends in the final norm exactly once: the
    token lengths of the passes. The Markov step normalizes its block's cells, ``(B, N, D)``; a grid `forward`
    normalizes its distinct rows, ``(R, D)``, and its length is that of ``last_hidden_state``."""
    lengths = []

    def on_norm(module, args, output):
        lengths.append(args[0].shape[1] if args[0].ndim == 3 else None)

    def on_forward(module, args, output):
        assert lengths[-1] in (None, output.last_hidden_state.shape[1])  # this forward's own norm call
        lengths[-1] = output.last_hidden_state.shape[1]

    handles = [model.model.norm.register_forward_hook(on_norm), model.model.register_forward_hook(on_forward)]

    class Handle:
        @staticmethod
        def remove():
            for handle in handles:
                handle.remove()

    return lengths, Handle


def assert_same_decoding(a, b):
    for name in ("sequences", "maps", "num_maps", "actions", "valid", "action_map"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert a.forward_passes == b.forward_passes


def test_grid_markov_cached_and_uncached_decoding_agree_one_pass_per_map(overfit):
    model, n = overfit.model, overfit.model.config.num_cells
    lengths, handle = count_passes(model)
    try:
        cached = model.generate_grid(overfit.prompts, use_cache=True)
        cached_lengths = list(lengths)
        lengths.clear()
        uncached = model.generate_grid(overfit.prompts, use_cache=False)
    finally:
        handle.remove()
    assert_same_decoding(cached, uncached)
    num_maps = int(cached.num_maps.max())
    assert num_maps == 7 and cached.num_maps.tolist() == [7, 6, 5, 4, 3, 2]
    # One pass over the prompt (→ map 0), then one per map fed (→ the next map and the action readout).
    assert cached.forward_passes == num_maps + 1 == len(cached_lengths) == len(lengths)
    assert cached_lengths == [n + 2] + [n] * num_maps  # a Markov step sees one map's cells: no cache needed
    assert lengths == [n + 2 + m * (n + 1) - (m > 0) for m in range(num_maps + 1)]


def test_grid_autoregressive_cached_and_uncached_decoding_agree(overfit, make_config):
    config = make_config(num_attention_heads=4, factorization="autoregressive")
    model = PCForProcedureCloning(config).eval()
    # The overfit Markov weights make BFS-like multi-map procedures; the never-trained "earlier block" biases now
    # let each map also attend to the maps before it.
    model.load_state_dict(overfit.model.state_dict())
    n = config.num_cells
    lengths, handle = count_forward_calls(model)
    try:
        cached = model.generate_grid(overfit.prompts, use_cache=True)
        cached_lengths = list(lengths)
        uncached = model.generate_grid(overfit.prompts, use_cache=False)
    finally:
        handle.remove()
    assert_same_decoding(cached, uncached)
    num_maps = int(cached.num_maps.max())
    assert num_maps > 2 and len(set(cached.num_maps.tolist())) > 1
    assert cached.forward_passes == num_maps + 1 == len(cached_lengths)
    assert cached_lengths == [n + 2, n] + [n + 1] * (num_maps - 1)  # only the newest map; the cache has the rest


def test_generate_grid_stops_at_the_map_budget(overfit):
    """Past ``max_procedure_steps`` the agent is still unlabelled: no valid action, and the maps made so far."""
    record = overfit.records[0]  # 7 maps
    out = overfit.model.generate_grid(overfit.prompts[:1], max_procedure_steps=2)
    assert out.valid.tolist() == [False] and out.actions.tolist() == [-1]
    assert out.num_maps.tolist() == [3] and out.forward_passes == 4
    assert np.array_equal(out.maps[0].numpy(), record.maps[:3])
    config = overfit.model.config
    assert out.sequences[0, -2:].tolist() == [config.act_token_id, config.eos_token_id]  # no action token
    full = overfit.model.generate_grid(overfit.prompts[:1], max_procedure_steps=6)  # exactly enough
    assert full.valid.tolist() == [True] and full.actions.tolist() == [record.action]


def test_generate_grid_batch_equals_one_by_one(overfit):
    batched = overfit.model.generate_grid(overfit.prompts)
    for i in range(len(overfit.prompts)):
        single = overfit.model.generate_grid(overfit.prompts[i : i + 1])
        m = int(single.num_maps[0])
        assert m == int(batched.num_maps[i])
        assert torch.equal(single.maps[0, :m], batched.maps[i, :m])
        assert int(single.actions[0]) == int(batched.actions[i])
        length = int((single.sequences[0] != overfit.tokenizer.pad_token_id).sum())
        assert torch.equal(single.sequences[0, :length], batched.sequences[i, :length])


def test_generate_returns_parseable_grid_sequences(overfit):
    model, tokenizer = overfit.model, overfit.tokenizer
    sequences = model.generate(overfit.prompts)
    assert torch.equal(sequences, model.generate_grid(overfit.prompts).sequences)
    for row, record, sequence in zip(overfit.rows, overfit.records, sequences):
        parsed = tokenizer.parse(sequence.tolist(), grid_shape=(7, 7))
        assert parsed.record == record and parsed.action == record.action
        assert parsed.goal == tuple(row["goal"]) and parsed.agent == tuple(row["agent"])


def test_grid_bc_decoding_reads_the_action_in_one_pass(make_config, grid_prompts, tokenizer, maze_dataset):
    config = make_config(objective="bc")
    model = perturb(PCForProcedureCloning(config)).eval()
    prompts = grid_prompts(tokenizer, maze_dataset.with_format("numpy"))
    prompts[:, -1] = config.act_token_id  # "<s> state <act>"
    out = model.generate_grid(prompts)
    assert out.forward_passes == 1 and out.maps is None and bool(out.valid.all())
    with torch.no_grad():
        logits = model(prompts).logits[:, -1, config.action_token_ids]
    assert torch.equal(out.actions, logits.argmax(-1))
    assert torch.equal(out.sequences[:, -2], torch.tensor(config.action_token_ids)[out.actions])


def test_text_generate_cached_and_uncached_agree(make_config, trace_tokenizer, trace_dataset, grid_prompts):
    config = make_config("bfs_trace", max_position_embeddings=64)
    model = perturb(PCForProcedureCloning(config), std=0.5).eval()
    prompts = grid_prompts(trace_tokenizer, trace_dataset.with_format("numpy").select(range(3)))
    assert_cached_generate_is_greedy(model, prompts, max_new_tokens=12)


# ================================================================================================ 7. Trainer
def training_args(tmp_path, **kwargs):
    defaults = dict(output_dir=str(tmp_path), per_device_train_batch_size=4, learning_rate=3e-3, report_to=[],
                    use_cpu=True, logging_steps=1, save_strategy="no", disable_tqdm=True, seed=0,
                    dataloader_num_workers=0)
    return TrainingArguments(**{**defaults, **kwargs})


def test_trainer_loss_falls(tmp_path, make_config, make_examples, tokenizer):
    config = make_config()
    model = PCForProcedureCloning(config)
    trainer = Trainer(model=model, args=training_args(tmp_path, max_steps=30), train_dataset=make_examples(config),
                      data_collator=PCDataCollator(tokenizer.pad_token_id))
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 30 and all(math.isfinite(l) for l in losses)
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.6 * first, (first, last)


def test_gradient_accumulation_scales_the_loss(tmp_path, make_config, make_examples, tokenizer):
    """``accepts_loss_kwargs`` is False, so Trainer divides the (mean) loss by the accumulation steps: one SGD step on
    4 identical examples gives the same parameters with batch 4 as with 2 micro-batches of 2."""
    assert PCForProcedureCloning.accepts_loss_kwargs is False
    config = make_config()
    examples = make_examples(config).select([0, 0, 0, 0])
    torch.manual_seed(0)
    initial = PCForProcedureCloning(config).state_dict()
    results = {}
    for batch_size, accumulation in ((4, 1), (2, 2)):
        model = PCForProcedureCloning(config)
        model.load_state_dict(initial)
        args = training_args(tmp_path / f"b{batch_size}", max_steps=1, per_device_train_batch_size=batch_size,
                             gradient_accumulation_steps=accumulation, optim="sgd", learning_rate=0.1,
                             max_grad_norm=0.0, lr_scheduler_type="constant")
        trainer = Trainer(model=model, args=args, train_dataset=examples,
                          data_collator=PCDataCollator(tokenizer.pad_token_id))
        assert trainer.model_accepts_loss_kwargs is False
        trainer.train()
        results[accumulation] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        assert math.isfinite(trainer.state.log_history[0]["loss"])
    changed = [k for k in initial if not torch.equal(initial[k], results[1][k])]
    assert len(changed) > len(initial) // 2  # it trained
    for key in initial:
        torch.testing.assert_close(results[2][key], results[1][key], atol=1e-6, rtol=1e-5, msg=key)


# ================================================================================================= 8. overfit
def test_overfit_one_maze_reproduces_the_expert_exactly(overfit, expert_match):
    assert overfit.matched, f"no exact match after {overfit.steps} steps"
    out = overfit.model.generate_grid(overfit.prompts)
    assert all(expert_match(out, overfit.records))
    assert bool(out.valid.all())
    assert out.actions.tolist() == [record.action for record in overfit.records]


# ============================================================================================= 9. remote code
REMOTE_SCRIPT = textwrap.dedent("""
    import json, sys
    sys.modules["pc_transformers"] = None  # the package is not installed, as far as this process knows
    try:
        import pc_transformers
    except ImportError:
        pass
    else:
        raise SystemExit("pc_transformers is importable")
    import numpy as np
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    path, out_path, state = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(path, trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
    walls = np.array(state["walls"], dtype=bool)
    ids = tokenizer.strict_ids(["<s>", *tokenizer.state_tokens(walls, state["goal"], state["agent"]), "<proc>"])
    ids = torch.tensor([ids])
    with torch.no_grad():
        logits = model(ids).logits
        hidden = base(ids).last_hidden_state
    sequences = model.generate(ids)
    save_file({"ids": ids, "logits": logits.contiguous(), "hidden": hidden.contiguous(), "sequences": sequences},
              out_path)
    print(json.dumps({"model": type(model).__module__, "base": type(base).__name__,
                      "tokenizer": type(tokenizer).__module__ + "." + type(tokenizer).__name__}))
""")


@pytest.mark.parametrize("module", ["configuration_pc", "modeling_pc", "tokenization_pc"])
def test_remote_code_files_import_no_package_code(module):
    """transformers refuses to load remote code whose (non-``try``) imports are not installed; these files must not
    need pc_transformers itself."""
    from transformers.dynamic_module_utils import get_imports

    path = os.path.join(os.path.dirname(pc_transformers.__file__), f"{module}.py")
    allowed = {"__future__", "dataclasses", "typing", "numpy", "tokenizers", "torch", "transformers"}
    assert set(get_imports(path)) <= allowed, get_imports(path)


def test_remote_code_in_a_fresh_process(tmp_path, overfit):
    model, tokenizer = overfit.model, overfit.tokenizer
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    for name in ("configuration_pc.py", "modeling_pc.py", "tokenization_pc.py"):
        assert (checkpoint / name).is_file(), name
    auto_map = json.loads((checkpoint / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == "modeling_pc.PCModel"
    assert auto_map["AutoModelForCausalLM"] == "modeling_pc.PCForProcedureCloning"

    row = overfit.rows[0]
    state = {"walls": row["walls"].tolist(), "goal": row["goal"].tolist(), "agent": row["agent"].tolist()}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-c", REMOTE_SCRIPT, str(checkpoint), str(tmp_path / "out.safetensors"),
                             json.dumps(state)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info["model"].startswith("transformers_modules") and info["base"] == "PCModel"
    assert info["tokenizer"].startswith("transformers_modules") and info["tokenizer"].endswith("PCTokenizer")

    remote = load_file(tmp_path / "out.safetensors")
    ids = overfit.prompts[:1]
    assert torch.equal(remote["ids"], ids)
    with torch.no_grad():
        assert torch.equal(remote["logits"], model(ids).logits)
        assert torch.equal(remote["hidden"], model.model(ids).last_hidden_state)
    assert torch.equal(remote["sequences"], model.generate(ids))


# ================================================================================================== 10. errors
def test_error_state_of_another_grid_size(make_config, tokenizer, overfit):
    model = PCForProcedureCloning(make_config()).eval()  # grid_size=7
    walls = np.ones((6, 6), dtype=bool)
    walls[1:5, 1:5] = False
    tokens = ["<s>", *tokenizer.state_tokens(walls, (1, 1), (4, 4)), "<proc>"]
    prompt = torch.tensor([tokenizer.strict_ids(tokens)])
    with pytest.raises(ValueError, match=r"must be a state cell token .*grid_size=7"):
        model(prompt)
    with pytest.raises(ValueError, match=r"a grid prompt is '<s> 49 state cells <proc>' = 51 tokens .*got 38"):
        model.generate_grid(prompt)
    text = PCForProcedureCloning(make_config("bfs_trace")).eval()
    with pytest.raises(ValueError, match=r"must be a state cell token .*grid_size=7"):
        text(prompt)


@pytest.mark.parametrize("procedure_format", ["bfs_maps", "bfs_trace"])
@pytest.mark.parametrize("bad_id", [150, 10_000, -1])
def test_error_unknown_token_ids(make_config, make_batch, procedure_format, bad_id):
    config = make_config(procedure_format)
    model = PCForProcedureCloning(config).eval()
    ids = make_batch(config, 1)["input_ids"].clone()
    ids[0, 3] = bad_id
    with pytest.raises(ValueError, match=rf"input_ids \[{bad_id}\] are outside the vocabulary \[0, 150\)"):
        model(ids)


def test_error_text_sequence_longer_than_supported(make_config, make_batch):
    config = make_config("bfs_trace", max_position_embeddings=8)
    model = PCForProcedureCloning(config).eval()
    batch = make_batch(config, 1)
    assert batch["input_ids"].shape[1] > config.num_cells + 1 + 8
    with pytest.raises(ValueError, match=r"longer than this model supports.*max_position_embeddings=8"):
        model(**batch)
    ok = batch["input_ids"][:, : config.num_cells + 1 + 8]  # exactly the longest supported sequence
    assert model(ok).logits.shape[1] == ok.shape[1]


@pytest.mark.parametrize("factorization", ["markov", "autoregressive"])
@pytest.mark.parametrize("cut", ["state", "map"])
def test_error_grid_partial_blocks(make_config, make_batch, factorization, cut):
    config = make_config(factorization=factorization)
    model = PCForProcedureCloning(config).eval()
    ids = make_batch(config, 1)["input_ids"]
    n = config.num_cells
    length = 20 if cut == "state" else n + 2 + 10
    with pytest.raises(ValueError, match=r"whole blocks of 49 cells \(grid_size=7\).*partial state or map"):
        model(ids[:, :length])


@pytest.mark.parametrize("procedure_format", ["bfs_maps", "bfs_trace"])
def test_error_labels_of_wrong_shape(make_config, make_batch, procedure_format):
    config = make_config(procedure_format)
    model = PCForProcedureCloning(config).eval()
    batch = make_batch(config, 2)
    with pytest.raises(ValueError, match=r"labels must have the shape of input_ids"):
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"][:, :-1])


def test_error_grid_prompts(overfit):
    model, prompts = overfit.model, overfit.prompts
    with pytest.raises(ValueError, match=r"a grid prompt is .*= 51 tokens for grid_size=7, got 49 tokens"):
        model.generate_grid(prompts[:, :-2])
    no_tail = prompts.clone()
    no_tail[:, -1] = model.config.step_token_id
    with pytest.raises(ValueError, match=r"must end with <proc>.*or <act>"):
        model.generate_grid(no_tail)
    no_agent = prompts.clone()
    no_agent[no_agent == model.config.state_token_ids[3]] = model.config.state_token_ids[1]
    with pytest.raises(ValueError, match=r"exactly one agent cell 'A'"):
        model.generate_grid(no_agent)
    with pytest.raises(ValueError, match=r"unsupported arguments \['temperature'\]"):
        model.generate_grid(prompts, temperature=0.5)


@pytest.mark.parametrize("where, token, kind", [
    ("state", "v", "state"),  # a map token in a state cell
    ("state", "<step>", "state"),
    ("map", "#", "map"),  # a state token in a map cell
    ("map", "a1", "map"),
])
def test_error_malformed_cell_tokens(make_config, make_batch, tokenizer, where, token, kind):
    config = make_config()
    model = PCForProcedureCloning(config).eval()
    ids = make_batch(config, 2)["input_ids"].clone()
    n = config.num_cells
    position = 5 if where == "state" else n + 2 + 7
    ids[1, position] = tokenizer.convert_tokens_to_ids(token)
    match = rf"malformed sequence: position {position} of example 1 must be a {kind} cell"
    with pytest.raises(ValueError, match=match):
        model(ids)


def test_bf16_autocast_decodes_like_fp32(overfit):
    """The dtype path CUDA takes under bf16 autocast, checked on CPU: masks and biases follow the query dtype, and the
    overfit model decodes the same maps (its margins are large) in bf16 as in fp32."""
    model = overfit.model
    fp32 = model.generate_grid(overfit.prompts)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = model.generate_grid(overfit.prompts)
        out = model(**overfit.batch)
    assert out.logits.dtype == torch.bfloat16
    assert torch.isfinite(out.loss)
    assert torch.equal(fp32.sequences, bf16.sequences)
    assert torch.equal(fp32.actions, bf16.actions)


@pytest.mark.parametrize("objective", ["aux_bc", "bc"])
def test_bc_objectives_read_their_action_in_the_state_whatever_the_prompt(make_config, overfit, objective):
    """BC and auxiliary BC are trained to read the action at the agent's cell of the state; decoding a procedure first
    (a ``<proc>`` prompt) must not change the action they return."""
    torch.manual_seed(1)
    model = PCForProcedureCloning(make_config(objective=objective)).eval()
    for p in model.parameters():  # move off the initialization so that actions differ between cells
        p.data += 0.5 * torch.randn_like(p)
    proc_prompts = overfit.prompts
    act_prompts = proc_prompts.clone()
    act_prompts[:, -1] = model.config.act_token_id
    with_procedure = model.generate_grid(proc_prompts, max_procedure_steps=3)
    direct = model.generate_grid(act_prompts)
    assert with_procedure.valid.all() and direct.valid.all()
    assert torch.equal(with_procedure.actions, direct.actions)


def test_bf16_attention_weights_equal_float32_softmax_then_cast():
    """The eager attention runs its softmax on bf16 scores directly (no float32 round trip): the kernel accumulates in
    float32 and rounds once, so the weights must be exactly what float32-then-cast gives, masked entries included."""
    from types import SimpleNamespace

    from pc_transformers.modeling_pc import eager_attention_forward

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 37, 16, generator=generator).to(torch.bfloat16) for _ in range(3))
    mask = (torch.randn(1, 4, 37, 37, generator=generator) * 3).to(torch.bfloat16)
    mask = mask.masked_fill(torch.rand(1, 4, 37, 37, generator=generator) < 0.3, torch.finfo(torch.bfloat16).min)
    out, weights = eager_attention_forward(SimpleNamespace(training=False), q, k, v, mask, scaling=0.25)
    scores = torch.matmul(q * 0.25, k.transpose(2, 3)) + mask
    expected = torch.softmax(scores, dim=-1, dtype=torch.float32).to(torch.bfloat16)
    assert weights.dtype == torch.bfloat16 and torch.equal(weights, expected)
    assert torch.equal(out, torch.matmul(expected, v).transpose(1, 2))
