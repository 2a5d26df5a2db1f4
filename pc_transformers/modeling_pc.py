"""PCModel / PCForProcedureCloning: a transformer that generates the expert's procedure, then its action.

This file is shipped as remote code: it imports only the standard library, torch, transformers and its sibling
``configuration_pc.py``.

Token layout (grammar: ``tokenization_pc.py``; N = grid_size², M maps)::

    position  0    1 … N        N+1     N+2 … 2N+1   2N+2    …    N+1+M(N+1)  +1    +2
    token     <s>  s_1 … s_N    <proc>  x0_1 … x0_N  <step>  …    <act>       a_k   </s>
    role      -    state cells  -       map 0 cells  -       …    readout     -     -
    loss      -    -            -       procedure    -       …    -           action -

* **Grid formats** (``bfs_maps``): one procedure step is a whole map. The outputs at the cells of block b predict the
  cells of block b+1 (the state block predicts map 0), so a step is decoded in one forward pass. Each map cell is
  embedded together with the state cell under it (as the paper's convnet stacks the wall/goal channels with the
  previous map), so maps need no attention to the state block. A map cell attends to the cells within
  ±``relative_clip`` rows and columns of it, in its own block (Markov) or in its own and all earlier blocks
  (autoregressive), through a learned per-head bias indexed by the (Δrow, Δcol) offset and the block relation. No
  absolute position enters, so the step model is local and translation-equivariant like BFS itself (REFERENCE.md;
  the prototype of issue 3). The state block attends globally (offsets clipped), which BC needs.
  ``position_encoding="absolute"`` is the ablation: absolute cell embeddings and global attention within blocks.
* **Text-like formats** (``bfs_trace``, MinAtar's ``mcts``): the state is read bidirectionally (a prefix), the
  procedure tokens are decoded token by token, causally, with learned 1D positions.
* **Action readout**: mazes read the logits at ``<act>`` at the agent's cell — in the last map for grid PC (the paper
  reads the action at the agent's cell of the last map), in the state for BC and auxiliary BC — so the step model never
  needs to see the agent (``config.hide_agent``). Text-like PC predicts the action as the next token. MinAtar has no
  agent cell (``config.action_readout == "act_token"``): BC and auxiliary BC read the action at ``<act>`` itself,
  which attends to ``<s>`` and the state only and takes the position right after the state, so the action of
  ``<s> state <proc> … <act>`` equals that of ``<s> state <act>`` (auxiliary BC acts from the state, as BC does).
* **MinAtar state encoder** (optional, ``config.state_encoder_size``): an MLP reads the whole observation (every
  cell's channel bits) and its vector is added to every token that is not a state cell; a decoding step that holds no
  state cell gets the state through ``state_input_ids`` (`PCForProcedureCloning.prepare_inputs_for_generation`).

Glossary of dimension letters: B batch, T new tokens (queries), S all tokens (keys: cached + new), D hidden size,
H heads, K head dim, V vocabulary, N grid cells, G grid side, R bias relations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.cache_utils import Cache, DynamicCache
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.utils import ModelOutput

from .configuration_pc import PCConfig

ROLE_OTHER, ROLE_STATE, ROLE_MAP = 0, 1, 2
NUM_RELATIONS = 2  # key in the query's own block (the state counts as one), key in an earlier map block
UNREACHED_VALUE = 4  # bfs map value of a cell not reached yet (see procedures/bfs_maps.py)


# --------------------------------------------------------------------------------------------------------- layout
@dataclass
class TokenLayout:
    """Where each token sits: role (other/state/map), block (0 state, m+1 map m, -1 other), cell index, position."""

    role: torch.Tensor  # (B, L) long
    block: torch.Tensor  # (B, L) long
    cell: torch.Tensor  # (B, L) long, -1 for non-cells
    position: torch.Tensor  # (B, L) long

    def is_cell(self) -> torch.Tensor:
        return self.role != ROLE_OTHER


def token_layout(config: PCConfig, position: torch.Tensor, act_position: torch.Tensor) -> TokenLayout:
    """Roles of tokens from their absolute positions (the grammar fixes them) and the first ``<act>`` position.

    Args:
        position: ``(B, L)`` absolute positions.
        act_position: ``(B, 1)`` position of the first ``<act>`` (a large number if none): tokens from there on are
            not procedure cells.
    """
    n = config.num_cells
    is_state = (position >= 1) & (position <= n) & (position < act_position)
    role = torch.where(is_state, ROLE_STATE, ROLE_OTHER)
    block = torch.where(is_state, 0, -1)
    cell = torch.where(is_state, position - 1, -1)
    if config.is_grid:
        offset = position - (n + 2)  # map m, cell c sits at N+2 + m(N+1) + c; c == N is the separator after it
        m, c = torch.div(offset, n + 1, rounding_mode="floor"), torch.remainder(offset, n + 1)
        is_map = (offset >= 0) & (c < n) & (position < act_position)
        role = torch.where(is_map, ROLE_MAP, role)
        block = torch.where(is_map, m + 1, block)
        cell = torch.where(is_map, c, cell)
    return TokenLayout(role=role, block=block, cell=cell, position=position)


def relative_index(config: PCConfig, query_cell, key_cell, same_block) -> torch.Tensor:
    """Index into the flattened ``(R, 2w+1, 2w+1)`` bias table for cell pairs: relation (0: same block, 1: an earlier
    block) and the clipped (Δrow, Δcol) offset.

    Args:
        query_cell: ``(..., T, 1)``, key_cell: ``(..., 1, S)`` cell indices; same_block: broadcastable bool.
    """
    w = config.relative_clip if config.position_encoding == "relative_2d" else 0
    side, g = 2 * w + 1, config.grid_size
    dx = (torch.div(query_cell, g, rounding_mode="floor") - torch.div(key_cell, g, rounding_mode="floor")).clamp(-w, w)
    dy = (query_cell % g - key_cell % g).clamp(-w, w)
    relation = torch.where(same_block, 0, 1)
    return relation * side * side + (dx + w) * side + (dy + w)


# ------------------------------------------------------------------------------------------------------- modules
def eager_attention_forward(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Plain softmax attention with an additive float mask ``(B|1, H, T, S)``; agrees with sdpa."""
    scores = torch.matmul(query * scaling, key.transpose(2, 3))  # (B, H, T, S): scaling the smaller operand
    if attention_mask is not None:
        scores = scores + attention_mask
    # bf16 softmax kernels accumulate in float32 and round once, which is what float32-then-cast gives, without the
    # two extra passes over the scores (and two more in backward) that the casts cost.
    if scores.dtype == torch.bfloat16:
        weights = F.softmax(scores, dim=-1).to(query.dtype)
    else:
        weights = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    weights = F.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()  # (B, T, H, K)
    return out, weights


class PCRelativeBias(nn.Module):
    """Per-head bias for grid-cell pairs, indexed by (relation, clipped Δrow, clipped Δcol); zero for other pairs."""

    def __init__(self, config: PCConfig):
        super().__init__()
        w = config.relative_clip if config.position_encoding == "relative_2d" else 0
        self.clip = w
        self.table = nn.Parameter(torch.zeros(config.num_attention_heads, NUM_RELATIONS * (2 * w + 1) ** 2))

    @property
    def none_index(self) -> int:
        """Index of the fixed zero entry, for pairs that are not two grid cells."""
        return self.table.shape[1]

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        table = F.pad(self.table, (0, 1))  # (H, R·side² + 1): the last entry is the fixed zero for non-grid pairs
        return table[:, index].permute(1, 0, 2, 3)  # (B, H, T, S)

    def locality_init(self, locality: float) -> torch.Tensor:
        """``-slope_h · (|Δrow| + |Δcol|)``: attention starts local (a zero bias learned nothing in the prototype)."""
        heads, w = self.table.shape[0], self.clip
        side = torch.arange(-w, w + 1).abs()
        distance = (side[:, None] + side[None, :]).flatten().float()  # (side²,)
        slopes = locality * torch.logspace(-2, 0, heads, base=2.0) if heads > 1 else torch.tensor([locality])
        return (-slopes[:, None] * distance[None, :]).repeat(1, NUM_RELATIONS)  # (H, R·side²)


@dataclass
class WindowPlan:
    """Neighbourhood attention of map cells: each cell attends to the ``(2w+1)²`` cells around it in the blocks its
    factorization allows. Queries come as ``num_query_blocks`` whole blocks per example; keys are the cached blocks
    followed by the new ones.

    Args:
        num_query_blocks: blocks per example in this call.
        query_block: ``(B, nq)`` absolute block index of each query block.
        key_block: ``(B, nk)`` absolute block index of each key block.
        key_block_valid: ``(B, nk)`` False for padding blocks.
        autoregressive: keys from earlier blocks are visible too.
    """

    num_query_blocks: int
    query_block: torch.Tensor
    key_block: torch.Tensor
    key_block_valid: torch.Tensor
    autoregressive: bool


TILE = 4  # queries are processed in TILE×TILE tiles, each attending to its (TILE+2w)² halo region


def _tiles(x: torch.Tensor, grid: int, kernel: int, padding: int) -> torch.Tensor:
    """``(B, H, nb·N, K)`` → ``(B, tiles·H, nb·kernel², K)``: the ``kernel×kernel`` region of every tile (stride TILE),
    in every block, zeros off-grid. Tiles go into the head dimension so one mask broadcasts over the batch.

    The order of the cells inside a region is an implementation detail: `_tile_geometry` derives the coordinates of
    the keys by passing coordinate planes through this same function."""
    if grid % TILE == 0 and kernel == TILE + 2 * padding and (2 * padding) % TILE == 0:
        return _halo_tiles(x, grid, padding)
    b, h, length, k = x.shape
    nb = length // (grid * grid)
    padded_grid = -(-grid // TILE) * TILE
    planes = x.reshape(b * h * nb, grid, grid, k).permute(0, 3, 1, 2)  # (B·H·nb, K, G, G)
    if padded_grid != grid:
        planes = F.pad(planes, (0, padded_grid - grid, 0, padded_grid - grid))
    regions = F.unfold(planes, kernel_size=kernel, stride=TILE, padding=padding)  # (B·H·nb, K·kernel², tiles)
    tiles = regions.shape[-1]
    regions = regions.view(b, h, nb, k, kernel * kernel, tiles).permute(0, 5, 1, 2, 4, 3)
    return regions.reshape(b, tiles * h, nb * kernel * kernel, k)


def _halo_tiles(x: torch.Tensor, grid: int, w: int) -> torch.Tensor:
    """`_tiles` when TILE divides the grid and ``2w``: a halo is then ``m × m`` whole TILE×TILE sub-tiles of the grid
    padded by ``w`` (``m = 1 + 2w/TILE``), so it is gathered by ``m²`` strided slices instead of im2col, whose
    backward (col2im) cost more than the attention's own products in training. Regions come out sub-tile-major.
    With gradients the backward is `_HaloTiles`'s."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _HaloTiles.apply(x, grid, w)
    return _gather_halos(x, grid, w)


def _halo_geometry(length: int, grid: int, w: int) -> tuple[int, int, int, int]:
    """For `_gather_halos` and its backward: blocks, tiles per side, sub-tiles per halo side, padded sub-tiles per
    side."""
    return length // (grid * grid), grid // TILE, 1 + 2 * w // TILE, (grid + 2 * w) // TILE


def _gather_halos(x: torch.Tensor, grid: int, w: int) -> torch.Tensor:
    b, h, length, k = x.shape
    nb, per_side, m, s = _halo_geometry(length, grid, w)
    planes = F.pad(x.reshape(b, h, nb, grid, grid, k), (0, 0, w, w, w, w))  # (B, H, nb, G+2w, G+2w, K)
    sub = planes.reshape(b, h, nb, s, TILE, s, TILE, k).permute(0, 3, 5, 1, 2, 4, 6, 7)  # (B, s, s, H, nb, T, T, K)
    parts = [sub[:, i : i + per_side, j : j + per_side] for i in range(m) for j in range(m)]
    regions = torch.stack(parts, dim=5)  # (B, tile row, tile col, H, nb, m², TILE, TILE, K)
    return regions.reshape(b, per_side * per_side * h, nb * m * m * TILE * TILE, k)


class _HaloTiles(torch.autograd.Function):
    """`_gather_halos` whose backward adds the ``m²`` slices' gradients into one padded buffer in place. Autograd's
    own backward of the slices fills a zeroed padded buffer per slice and sums them, which took twice the time of
    this forward and backward together on the 16×16 training batches (and 4-5% of a float32 training step)."""

    @staticmethod
    def forward(ctx, x, grid, w):
        ctx.shape, ctx.grid, ctx.w = x.shape, grid, w
        return _gather_halos(x, grid, w)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        b, h, length, k = ctx.shape
        grid, w = ctx.grid, ctx.w
        nb, per_side, m, s = _halo_geometry(length, grid, w)
        grad = grad.reshape(b, per_side, per_side, h, nb, m * m, TILE, TILE, k)
        sub = grad.new_zeros(b, s, s, h, nb, TILE, TILE, k)
        for i in range(m):
            for j in range(m):
                sub[:, i : i + per_side, j : j + per_side] += grad[:, :, :, :, :, i * m + j]
        planes = sub.permute(0, 3, 4, 1, 5, 2, 6, 7).reshape(b, h, nb, s * TILE, s * TILE, k)
        return planes[:, :, :, w : w + grid, w : w + grid].reshape(b, h, length, k), None, None


class _Prefixes(torch.autograd.Function):
    """The views ``x[:rows, :, :end]`` for each ``(rows, end)`` of ``views``, in one autograd node: its backward adds
    their gradients into one buffer, where separate slices would each make a zero-filled gradient of ``x``'s whole
    size (the autoregressive query blocks' keys, `PCAttention._windowed_blocks`)."""

    @staticmethod
    def forward(ctx, x, views):
        ctx.shape, ctx.views = x.shape, views
        return tuple(x[:rows, :, :end] for rows, end in views)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        grad = None
        for (rows, end), part in zip(ctx.views, grads):
            if part is not None:
                grad = part.new_zeros(ctx.shape) if grad is None else grad
                grad[:rows, :, :end] += part
        return grad, None


def _query_tiles(x: torch.Tensor, grid: int) -> torch.Tensor:
    """`_tiles` for the queries (``kernel = stride = TILE``, no padding): the tiles do not overlap, so when TILE divides
    the grid this is a reshape and a permutation, with no im2col/col2im copies in the forward and backward passes."""
    if grid % TILE:
        return _tiles(x, grid, TILE, 0)
    b, h, length, k = x.shape
    nb, per_side = length // (grid * grid), grid // TILE
    x = x.reshape(b, h, nb, per_side, TILE, per_side, TILE, k)  # rows = (tile row, row in tile), same for columns
    x = x.permute(0, 3, 5, 1, 2, 4, 6, 7)  # (B, tile row, tile col, H, nb, TILE, TILE, K)
    return x.reshape(b, per_side * per_side * h, nb * TILE * TILE, k)


def _untile(out: torch.Tensor, grid: int, nq: int, q_cell: torch.Tensor) -> torch.Tensor:
    """Attention output ``(B, nq·TILE², tiles·H, K)`` (tile-major) → ``(B, nq, N, H·K)`` in cell order."""
    b, _, th, kd = out.shape
    tiles = q_cell.shape[0]
    h = th // tiles
    out = out.reshape(b, nq, TILE * TILE, tiles, h * kd).permute(0, 1, 3, 2, 4)  # (B, nq, tiles, TILE², H·K)
    if grid % TILE == 0:  # no padding cells: the tile-major order is a permutation of rows and columns
        per_side = grid // TILE
        out = out.reshape(b, nq, per_side, per_side, TILE, TILE, h * kd).permute(0, 1, 2, 4, 3, 5, 6)
        return out.reshape(b, nq, grid * grid, h * kd)
    out = out.reshape(b, nq, -1, h * kd)
    order = q_cell.flatten()  # tile-major cell order
    keep = order >= 0
    cells = torch.empty(b, nq, grid * grid, h * kd, dtype=out.dtype, device=out.device)
    cells[:, :, order[keep]] = out[:, :, keep]
    return cells


_TILE_GEOMETRY: dict = {}


def _tile_geometry(grid: int, w: int, device):
    """For each tile: its query cells' and halo keys' grid coordinates (memoized per size).

    Returns ``(query_xy, key_xy, key_on_grid, query_cell)``: ``(tiles, TILE², 2)``, ``(tiles, halo², 2)``,
    ``(tiles, halo²)`` and ``(tiles, TILE²)`` (cell index, -1 for padding cells)."""
    key = (grid, w, str(device))
    if key not in _TILE_GEOMETRY:
        with torch.inference_mode(False):  # kept for training too, even when first built while a policy acts
            _TILE_GEOMETRY[key] = _build_tile_geometry(grid, w, device)
    return _TILE_GEOMETRY[key]


def _build_tile_geometry(grid: int, w: int, device):
    padded = -(-grid // TILE) * TILE
    rows, cols = torch.meshgrid(torch.arange(padded), torch.arange(padded), indexing="ij")
    coords = torch.stack([rows, cols]).float()[None]  # (1, 2, P, P)
    q = F.unfold(coords, kernel_size=TILE, stride=TILE).view(2, TILE * TILE, -1).permute(2, 1, 0)
    # The keys' coordinates come from `_tiles` itself, so they are in whatever order it lays the halo out. It pads
    # with zeros: shift the coordinates by one and read zero as "off the grid".
    planes = coords[0, :, :grid, :grid].reshape(2, grid * grid).T[None, None] + 1  # (1, 1, N, 2)
    tiles = q.shape[0]
    k = _tiles(planes, grid, TILE + 2 * w, w).view(tiles, (TILE + 2 * w) ** 2, 2)
    on_grid = (k > 0).all(-1) & (k <= grid).all(-1)
    k = k - 1
    q_cell = torch.where((q < grid).all(-1), q[..., 0] * grid + q[..., 1], -1)
    return tuple(t.to(device) for t in (q.long(), k.long(), on_grid, q_cell.long()))


def _weight_key(params) -> tuple | None:
    """Equal while ``params`` are unchanged: each one's data pointer and in-place version. Whoever keeps the key also
    keeps ``p.detach()`` of each, so that the storage, and so the pointer, cannot go to other weights meanwhile.
    None for weights made under ``torch.inference_mode``, which have no version counter: nothing is kept for them."""
    if any(p.is_inference() for p in params):
        return None
    return tuple((p.data_ptr(), p._version) for p in params)


class PCAttention(nn.Module):
    def __init__(self, config: PCConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.layer_idx = layer_idx
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.is_causal = False  # never plain causal: block-causal/windowed for grids, prefix-causal for text
        self.q_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.k_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.v_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.o_proj = nn.Linear(config.hidden_size, config.hidden_size)
        self.relative_bias = PCRelativeBias(config)

    def forward(self, hidden_states, allowed, bias_index, past_key_values=None, output_attentions=False,
                window: WindowPlan | None = None):
        """Dense: ``allowed`` ``(B|1, T, S)`` bool or None (all keys), ``bias_index`` ``(B|1, T, S)`` or None.
        Windowed (map cells): ``window`` says which blocks are visible; ``allowed``/``bias_index`` are unused."""
        b, t, _ = hidden_states.shape
        weight, bias = self._qkv_weights()
        qkv = F.linear(hidden_states, weight, bias).view(b, t, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.transpose(1, 3).unbind(2)  # (B, H, T, K) each
        if past_key_values is not None:
            k, v = past_key_values.update(k, v, self.layer_idx)  # (B, H, S, K)
        if window is not None:
            return self._windowed(q, k, v, window, output_attentions)
        mask = None if bias_index is None else self.relative_bias(bias_index).to(q.dtype)  # (B|1, H, T, S)
        if allowed is not None:
            if mask is None:
                mask = torch.zeros(allowed.shape[0], 1, *allowed.shape[1:], dtype=q.dtype, device=q.device)
            mask = mask.masked_fill(~allowed[:, None], torch.finfo(q.dtype).min)
        out, weights = self._attend(q, k, v, mask, output_attentions)
        return self.o_proj(out.reshape(b, t, -1)), weights  # (B, T, D)

    def _qkv_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The three projections as one ``(3D, D)`` weight and ``(3D,)`` bias: one product reads the input once, and
        backward sums no partial gradients. Without gradients (acting, evaluation) the concatenation is kept until a
        weight changes (`_weight_key`), so a decoding step does not copy the weights again."""
        params = (self.q_proj.weight, self.k_proj.weight, self.v_proj.weight,
                  self.q_proj.bias, self.k_proj.bias, self.v_proj.bias)
        if torch.is_grad_enabled():
            return torch.cat(params[:3]), torch.cat(params[3:])
        key = _weight_key(params)
        cached = getattr(self, "_qkv_cache", None)
        if key is None or cached is None or cached[0] != key:
            cached = self._qkv_cache = (key, torch.cat(params[:3]), torch.cat(params[3:]), [p.detach() for p in params])
        return cached[1], cached[2]

    def _attend(self, q, k, v, mask, eager):
        implementation = "eager" if eager else self.config._attn_implementation
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        return attention(
            self, q, k, v, attention_mask=mask, scaling=self.scaling, is_causal=False,
            dropout=self.config.attention_dropout if self.training else 0.0,
        )

    def _windowed(self, q, k, v, plan: WindowPlan, output_attentions):
        """Each query cell attends to the keys within ±w rows and columns, in the blocks the plan makes visible.

        Computed tile by tile: the TILE×TILE queries of a tile against the (TILE+2w)² halo around it, so the work is
        dense matrix products (4× fewer scores than global attention on a 16×16 grid), then masked to the exact window.
        """
        if plan.num_query_blocks > 1 and plan.autoregressive:
            return self._windowed_blocks(q, k, v, plan, output_attentions)
        g, w = self.config.grid_size, self.relative_bias.clip
        kt, vt = _tiles(k, g, TILE + 2 * w, w), _tiles(v, g, TILE + 2 * w, w)  # (B, tiles·H, nk·halo², K)
        if not plan.autoregressive:
            # Every Markov block sees only itself: one plan (and one mask) serves the whole batch of blocks.
            plan = WindowPlan(1, plan.query_block[:1], plan.key_block[:1], plan.key_block_valid[:1], False)
        return self._window_tiles(q, kt, vt, plan, output_attentions)

    def _windowed_blocks(self, q, k, v, plan: WindowPlan, output_attentions):
        """Autoregressive `_windowed` for several query blocks: one at a time against the blocks up to it, so memory
        grows with one block's view, not nq·nk. The halos are gathered once: the keys a query block sees are a
        prefix of them. Without ``output_attentions``, when each example's valid blocks come first (right padding),
        the examples are taken longest first, so that those whose query block j is not padding are a prefix of the
        batch too; only they run, and a padding block's output (read by nothing) is zero."""
        g, n, w = self.config.grid_size, self.config.num_cells, self.relative_bias.clip
        halo, b = TILE + 2 * w, q.shape[0]
        nq, nk = plan.num_query_blocks, k.shape[2] // n
        valid = plan.key_block_valid
        order = None
        rows = [b] * nq
        if not output_attentions and bool((valid[:, 1:] <= valid[:, :-1]).all()):  # valid blocks first
            lengths = valid.sum(dim=1)
            order = torch.argsort(lengths, descending=True, stable=True)
            if bool((order == torch.arange(b, device=order.device)).all()):
                order = None
            else:
                q, k, v = q[order], k[order], v[order]
                plan = WindowPlan(nq, plan.query_block[order], plan.key_block[order], valid[order], True)
                lengths = lengths[order]
            query_index = torch.arange(nk - nq, nk, device=lengths.device)  # each query block's index among the keys
            rows = (lengths[None, :] > query_index[:, None]).sum(dim=1).tolist()  # one device sync for all blocks
        kt, vt = _tiles(k, g, halo, w), _tiles(v, g, halo, w)  # (B, tiles·H, nk·halo², K), block-major
        views = [(rows[j], (nk - nq + j + 1) * halo * halo) for j in range(nq)]
        k_views, v_views = _Prefixes.apply(kt, views), _Prefixes.apply(vt, views)
        outs, weights = [], []
        for j in range(nq):
            r, visible = rows[j], nk - nq + j + 1
            if r == 0:
                outs.append(q.new_zeros(b, n, q.shape[1] * q.shape[3]))
                continue
            sub = WindowPlan(1, plan.query_block[:r, j : j + 1], plan.key_block[:r, :visible],
                             plan.key_block_valid[:r, :visible], autoregressive=True)
            out, weight = self._window_tiles(q[:r, :, j * n : (j + 1) * n], k_views[j], v_views[j], sub,
                                             output_attentions)
            outs.append(out if r == b else torch.cat([out, out.new_zeros(b - r, *out.shape[1:])]))
            weights.append(weight)
        out = torch.cat(outs, dim=1)
        if order is not None:
            out = out[torch.argsort(order)]
        return out, (weights if output_attentions else None)

    def _window_tiles(self, q, kt, vt, plan: WindowPlan, output_attentions):
        """`_windowed` with the keys and values already in tiles (`_tiles`), ``(B, tiles·H, nk·halo², K)``."""
        g, n, w = self.config.grid_size, self.config.num_cells, self.relative_bias.clip
        b, h, _, kd = q.shape
        nq = plan.num_query_blocks
        q_cell = _tile_geometry(g, w, q.device)[3]
        qt = _query_tiles(q, g)  # (B, tiles·H, nq·TILE², K)
        mask = self._window_mask(plan, q.dtype, q.device)
        # A mask that carries the bias table's gradient sends sdpa to its math fallback, which is slower on these
        # many small products than the same computation done eagerly.
        out, weights = self._attend(qt, kt, vt, mask, output_attentions or mask.requires_grad)
        cells = _untile(out, g, nq, q_cell)  # (B, nq, N, H·K)
        return self.o_proj(cells.reshape(b, nq * n, h * kd)), weights

    def _window_mask(self, plan: WindowPlan, dtype, device) -> torch.Tensor:
        """The additive mask ``(B|1, tiles·H, nq·TILE², nk·halo²)`` of `_windowed`: relative bias inside the windows
        the plan makes visible, the dtype's minimum elsewhere. Markov masks are the same for every call with the same
        weights, so outside training they are kept (keyed by the bias table's identity and version)."""
        cfg = self.config
        g, w = cfg.grid_size, self.relative_bias.clip
        table = self.relative_bias.table  # (H, R·side²)
        key = None
        if not self.training and not plan.autoregressive and not torch.is_grad_enabled():
            key = (g, w, dtype, str(device), table.data_ptr(), table._version)
            cached = getattr(self, "_mask_cache", None)
            if cached is not None and cached[0] == key:
                return cached[1]
        side, halo = 2 * w + 1, TILE + 2 * w
        h, nq, nk = self.num_heads, plan.num_query_blocks, plan.key_block.shape[1]
        q_xy, k_xy, on_grid, _ = _tile_geometry(g, w, device)
        tiles = q_xy.shape[0]
        # Offsets (query - key) within each tile; the window and the bias index follow from them.
        delta = q_xy[:, :, None, :] - k_xy[:, None, :, :]  # (tiles, TILE², halo², 2)
        in_window = (delta.abs() <= w).all(-1) & on_grid[:, None, :]  # (tiles, TILE², halo²)
        offset = (delta[..., 0].clamp(-w, w) + w) * side + (delta[..., 1].clamp(-w, w) + w)
        same = plan.query_block[:, :, None] == plan.key_block[:, None, :]  # (B, nq, nk)
        visible = same | (plan.autoregressive & (plan.key_block[:, None, :] < plan.query_block[:, :, None]))
        visible = visible & plan.key_block_valid[:, None, :]
        if bool((same == same[:1]).all()) and bool((visible == visible[:1]).all()):
            # One mask for the whole batch, built once. Rows that differ here can give equal masks only by accident
            # (equal table entries for both relations), and a mask per row gives the same attention, so the whole
            # mask is not compared afterwards.
            same, visible = same[:1], visible[:1]
        bias_own = table[:, offset].permute(1, 0, 2, 3)  # (tiles, H, TILE², halo²)
        bias_earlier = table[:, side * side + offset].permute(1, 0, 2, 3)
        floor = torch.finfo(dtype).min
        # mask: (B|1, tiles·H, nq·TILE², nk·halo²), blocks laid out as (query block, key block) sub-matrices.
        bias = torch.where(same[:, None, None, :, None, :, None], bias_own[None, :, :, None, :, None, :],
                           bias_earlier[None, :, :, None, :, None, :])  # (B, tiles, H, nq, TILE², nk, halo²)
        allowed = visible[:, None, None, :, None, :, None] & in_window[None, :, None, None, :, None, :]
        # A query with no key at all (a padding cell of a tile, a padding block) would be a row of -inf: NaN in low
        # precision. Let it see everything; its output is never read.
        row_empty = ~allowed.any(dim=-1, keepdim=True).any(dim=-2, keepdim=True)
        mask = bias.to(dtype).masked_fill(~(allowed | row_empty), floor)
        mask = mask.reshape(mask.shape[0], tiles * h, nq * TILE * TILE, nk * halo * halo)
        if key is not None:
            self._mask_cache = (key, mask)
        return mask


class PCStateEncoder(nn.Module):
    """MinAtar's optional MLP state encoder (``config.state_encoder_size > 0``): the whole observation, every cell's
    ``C`` channel bits flattened (``N·C`` inputs, read back from the cell tokens ``c<mask>``), through two hidden layers
    of ``state_encoder_size`` ReLU units to one ``hidden_size`` vector per state."""

    def __init__(self, config: PCConfig):
        super().__init__()
        width, inputs = config.state_encoder_size, config.num_cells * config.num_channels
        self.net = nn.Sequential(nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                 nn.Linear(width, config.hidden_size))
        for layer in (self.net[0], self.net[2]):
            layer.relu_init = True  # see PCPreTrainedModel._init_weights
        self.state_token_ids, self.num_channels, self.vocab_size = (list(config.state_token_ids), config.num_channels,
                                                                    config.vocab_size)
        self._bits = None  # (vocab_size, C) channel bits of every token id (0 for other tokens), built per device

    def channel_bits(self, device) -> torch.Tensor:
        if self._bits is None or self._bits.device != device:
            with torch.inference_mode(False):  # kept for training too, even when first built while a policy acts
                self._bits = self._channel_table(device)
        return self._bits

    def _channel_table(self, device) -> torch.Tensor:
        masks = torch.arange(len(self.state_token_ids), device=device)  # state_token_ids[m] is bitmask m
        bits = (masks[:, None] >> torch.arange(self.num_channels, device=device)) & 1
        table = torch.zeros(self.vocab_size, self.num_channels, device=device)
        table[torch.tensor(self.state_token_ids, device=device)] = bits.float()
        return table

    def weights(self) -> list[torch.Tensor]:
        return [p for layer in self.net[::2] for p in (layer.weight, layer.bias)]

    def forward(self, state_ids: torch.Tensor) -> torch.Tensor:
        """``state_ids`` ``(B, N)`` cell tokens → ``(B, D)``."""
        bits = self.channel_bits(state_ids.device)[state_ids]  # (B, N, C)
        return self.net(bits.flatten(1).to(self.net[0].weight.dtype))


class PCMLP(nn.Module):
    def __init__(self, config: PCConfig):
        super().__init__()
        self.up = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = ACT2FN[config.hidden_act]
        self.down = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x):
        return self.down(self.act(self.up(x)))


class PCDecoderLayer(GradientCheckpointingLayer):
    """Pre-LayerNorm transformer block."""

    def __init__(self, config: PCConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = PCAttention(config, layer_idx)
        self.post_attention_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = PCMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout)

    def forward(self, hidden_states, allowed, bias_index, past_key_values=None, output_attentions=False,
                window: WindowPlan | None = None):
        attn_out, weights = self.self_attn(
            self.input_layernorm(hidden_states), allowed, bias_index, past_key_values, output_attentions, window
        )
        hidden_states = hidden_states + self.dropout(attn_out)
        hidden_states = hidden_states + self.dropout(self.mlp(self.post_attention_layernorm(hidden_states)))
        return hidden_states, weights


# -------------------------------------------------------------------------------------------------------- models
@dataclass
class PCModelOutput(BaseModelOutputWithPast):
    """`BaseModelOutputWithPast` plus the token layout of the inputs (the head's loss and readout need it).

    Grid formats also give the distinct final hidden states, ``row_states`` ``(R, D)``, and each token's row,
    ``row_index`` ``(batch_size, sequence_length)``: ``last_hidden_state == row_states[row_index]``. Tokens that
    attend only to themselves share one row per id (padding is most of a right-padded batch), so a loss read from the
    rows sends its gradient to ``R`` rows rather than through the whole padded ``last_hidden_state``.
    """

    token_layout: TokenLayout | None = None
    row_states: torch.FloatTensor | None = None
    row_index: torch.LongTensor | None = None


@dataclass
class PCOutput(ModelOutput):
    """Output of `PCForProcedureCloning`.

    Args:
        loss: ``procedure_loss_weight · procedure_loss + action_loss_weight · action_loss`` (terms that exist).
        procedure_loss: mean cross-entropy of the procedure tokens (None for BC or without procedure labels).
        action_loss: mean cross-entropy of the action (None without an action label).
        logits: ``(batch_size, sequence_length, vocab_size)``, or the positions ``logits_to_keep`` kept. Grid formats:
            the logits at a cell predict that cell in the next map; at ``<act>`` they are read at the agent's cell.
            Text-like: next-token logits.
    """

    loss: torch.Tensor | None = None
    procedure_loss: torch.Tensor | None = None
    action_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: Cache | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class PCPreTrainedModel(PreTrainedModel):
    config: PCConfig
    config_class = PCConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["PCDecoderLayer"]
    _supports_sdpa = True
    _supports_flex_attn = False
    _supports_attention_backend = True
    # Losses are means over each kind of target, so Trainer must scale them for gradient accumulation itself.
    accepts_loss_kwargs = False

    def _init_weights(self, module):
        if getattr(module, "relu_init", False):  # the state encoder's ReLU layers: PyTorch's default, as MinAtar MLPs
            init.kaiming_uniform_(module.weight, a=5**0.5)
            init.zeros_(module.bias)
            return
        super()._init_weights(module)
        if isinstance(module, PCRelativeBias):
            init.copy_(module.table, module.locality_init(self.config.locality_init))


class PCModel(PCPreTrainedModel):
    """The transformer: token ids → hidden states.

    Grid formats: every map cell is embedded together with the state cell under it (token embedding of the map value
    plus that of the state cell, as the paper's convnet stacks the wall/goal channels with the previous map), so the
    state reaches every step without a separate attention path. A map then only attends within the maps its
    factorization allows: under ``"markov"`` its own block alone, so all blocks of a batch are packed into one
    ``(num_blocks, N, D)`` batch sharing one mask; under ``"autoregressive"`` its own and earlier blocks,
    block-causally, with a `DynamicCache` of cell keys/values. With ``relative_2d`` a map cell sees its window only
    (computed tile by tile, see `PCAttention._windowed`). Non-cell tokens (``<s>``, ``<proc>``,
    ``<step>``, ``<act>``, …) carry no information and attend only to themselves.

    Text-like formats: one dense pass over the sequence, the state prefix bidirectional, the rest causal.
    """

    def __init__(self, config: PCConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        # Absolute cell positions: the ablation for grids; text-like procedures name cells by coordinates, so their
        # state cells need them too.
        use_cell_positions = config.position_encoding == "absolute" or not config.is_grid
        self.embed_cells = nn.Embedding(config.num_cells, config.hidden_size) if use_cell_positions else None
        self.embed_positions = None if config.is_grid else nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.state_encoder = PCStateEncoder(config) if config.state_encoder_size else None
        self.layers = nn.ModuleList(PCDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        use_cache: bool | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        state_input_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> PCModelOutput:
        r"""
        Args:
            input_ids: ``(batch_size, sequence_length)`` token ids of the grammar in ``tokenization_pc.py``.
            attention_mask: ``(batch_size, past_length + sequence_length)`` 1 for tokens, 0 for padding. Grid formats
                read padding from the grammar instead (everything after ``<act>``), so right padding needs no mask.
            position_ids: ``(batch_size, sequence_length)`` absolute positions in the sequence. Default: from
                ``attention_mask`` for text-like formats (left padding allowed), else ``arange``; grid formats read
                padding from the grammar and need no mask. Grid formats need them when the call does
                not start at ``<s>`` (decoding map by map).
            state_input_ids: ``(batch_size, grid_size**2)`` the state's cell tokens, needed by grid formats when the
                call holds maps but not the state.
        """
        cfg = self.config
        if input_ids is None or input_ids.ndim != 2:
            raise ValueError(f"input_ids must be a (batch_size, sequence_length) tensor, got "
                             f"{None if input_ids is None else tuple(input_ids.shape)}")
        if (input_ids < 0).any() or (input_ids >= cfg.vocab_size).any():
            bad = input_ids[(input_ids < 0) | (input_ids >= cfg.vocab_size)][:5].tolist()
            raise ValueError(f"input_ids {bad} are outside the vocabulary [0, {cfg.vocab_size})")
        if kwargs.get("inputs_embeds") is not None:
            raise ValueError("PCModel reads token ids only: inputs_embeds is not supported")
        use_cache = cfg.use_cache if use_cache is None else use_cache
        if use_cache and past_key_values is None and not self.training and not (
            cfg.is_grid and cfg.factorization == "markov"  # Markov maps are independent: nothing to cache
        ):
            past_key_values = DynamicCache(config=cfg)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        row_states = row_index = None
        if cfg.is_grid:
            row_states, row_index, layout, all_hidden, all_attentions = self._grid_forward(
                input_ids, position_ids, past_key_values, past, state_input_ids, output_attentions,
                output_hidden_states,
            )
            hidden = row_states.index_select(0, row_index.flatten()).view(*row_index.shape, -1)
        else:
            hidden, layout, all_hidden, all_attentions = self._text_forward(
                input_ids, attention_mask, position_ids, past_key_values, past, output_attentions,
                output_hidden_states, state_input_ids,
            )
        return PCModelOutput(
            last_hidden_state=hidden,
            past_key_values=past_key_values if use_cache else None,
            hidden_states=all_hidden,
            attentions=all_attentions,
            token_layout=layout,
            row_states=row_states,
            row_index=row_index,
        )

    # ------------------------------------------------------------------------------------------------ shared parts
    def _layout(self, input_ids, position_ids):
        cfg = self.config
        big = torch.iinfo(torch.long).max
        act_position = torch.where(input_ids == cfg.act_token_id, position_ids, big).amin(dim=1, keepdim=True)
        layout = token_layout(cfg, position_ids, act_position)
        self._check_grammar(input_ids, layout)
        return layout

    def _embed(self, ids, cell=None):
        """Token embedding, plus the absolute cell embedding where the config uses one (``cell`` ≥ 0)."""
        hidden = self.embed_tokens(ids)
        if self.embed_cells is not None and cell is not None:
            hidden = hidden + self.embed_cells(cell.clamp(min=0)) * (cell >= 0)[..., None]
        return hidden

    def _state_ids(self, ids):
        """State cell ids as the step model sees them: the agent becomes a free cell if ``hide_agent``."""
        if not self.config.hide_agent:
            return ids
        agent_id, free_id = self.config.state_token_ids[3], self.config.state_token_ids[1]
        return torch.where(ids == agent_id, free_id, ids)

    def _run_layers(self, hidden, allowed, bias_index, cache, output_attentions, output_hidden_states, window=None):
        all_hidden = (hidden,) if output_hidden_states else None
        all_attentions = () if output_attentions else None
        for layer in self.layers:
            hidden, weights = layer(hidden, allowed, bias_index, cache, output_attentions, window)
            if output_hidden_states:
                all_hidden += (hidden,)
            if output_attentions:
                all_attentions += (weights,)
        return hidden, all_hidden, all_attentions

    # ------------------------------------------------------------------------------------------------------- grid
    def _grid_forward(self, input_ids, position_ids, cache, past, state_input_ids, output_attentions,
                      output_hidden_states):
        """Three groups that never attend to each other, each through the same layers: the state blocks (global
        attention, clipped 2D bias), the map blocks (windowed, or global under absolute positions), and the
        non-cell tokens (each attends only to itself). ``hidden_states``/``attentions`` are those of the map blocks
        (of the state blocks when the call holds no map).

        Returns the distinct final hidden states ``(R, D)`` and each token's row ``(B, T)`` (`PCModelOutput`), the
        layout, and the per-layer hidden states and attentions."""
        cfg = self.config
        n = cfg.num_cells
        b, t = input_ids.shape
        device = input_ids.device
        if position_ids is None:
            if past:
                raise ValueError("decoding with a cache: pass position_ids for the new tokens")
            position_ids = torch.arange(t, device=device).expand(b, t)
        layout = self._layout(input_ids, position_ids)

        # Whole blocks only: find each block's first cell; its N cells follow contiguously.
        starts = (layout.is_cell() & (layout.cell == 0)).nonzero()  # (NB, 2): example, index of cell 0
        cell_index = starts[:, 1:] + torch.arange(n, device=device)  # (NB, N)
        if (cell_index >= t).any() or len(starts) * n != int(layout.is_cell().sum()):
            raise ValueError(f"a grid model reads whole blocks of {n} cells (grid_size={cfg.grid_size}); this call "
                             f"holds a partial state or map")
        block_b = starts[:, 0]
        block_of = layout.block[block_b, starts[:, 1]]  # (NB,)
        cells = torch.arange(n, device=device)
        # The outputs of the three groups are gathered into place at the end, by one index into their rows.
        rows, source = [], torch.empty(b, t, dtype=torch.long, device=device)
        offset = 0  # rows placed so far
        all_hidden = all_attentions = None

        # The state under every cell: from this call if it holds the state, else from state_input_ids.
        is_state = block_of == 0
        state = torch.zeros(b, n, dtype=torch.long, device=device)
        state[block_b[is_state]] = input_ids[block_b[is_state, None], cell_index[is_state]]
        needs_state = (layout.role == ROLE_MAP).any(dim=1) & ~(layout.role == ROLE_STATE).any(dim=1)
        if needs_state.any():
            if state_input_ids is None or state_input_ids.shape != (b, n):
                raise ValueError(f"this call holds maps but not the state: pass state_input_ids of shape {(b, n)}")
            state = torch.where(needs_state[:, None], state_input_ids, state)
        state = self._state_ids(state)

        if is_state.any():  # state blocks: global attention with the clipped 2D bias
            index = relative_index(cfg, cells[None, :, None], cells[None, None, :], torch.tensor(True, device=device))
            hidden, all_hidden, all_attentions = self._run_layers(
                self._embed(state[block_b[is_state]], cells), None, index, None, output_attentions,
                output_hidden_states,
            )
            source[block_b[is_state, None], cell_index[is_state]] = torch.arange(hidden.shape[0] * n, device=device).view(-1, n)
            rows.append(hidden.reshape(-1, hidden.shape[-1]))
            offset += len(rows[-1])
        is_map = ~is_state
        if is_map.any():  # map blocks: each cell embedded with the state cell under it
            map_b, map_block = block_b[is_map], block_of[is_map]
            hidden = self._embed(input_ids[map_b[:, None], cell_index[is_map]], cells) + self.embed_tokens(state[map_b])
            hidden, all_hidden, all_attentions = self._map_layers(
                hidden, map_b, map_block, b, cache, past, output_attentions, output_hidden_states
            )
            source[map_b[:, None], cell_index[is_map]] = offset + torch.arange(hidden.shape[0] * n, device=device).view(-1, n)
            rows.append(hidden.reshape(-1, hidden.shape[-1]))
            offset += len(rows[-1])
        other = (~layout.is_cell()).nonzero()  # (M, 2)
        if len(other):
            # Each such token attends only to itself, so its output depends on its id alone: run every distinct id
            # once (padding is most of a right-padded batch of procedures) and copy the result to its positions.
            ids, inverse = torch.unique(input_ids[other[:, 0], other[:, 1]], return_inverse=True)
            hidden, _, _ = self._run_layers(self._embed(ids)[:, None], None, None, None, False, False)
            source[other[:, 0], other[:, 1]] = offset + inverse
            rows.append(hidden[:, 0])
        return self.norm(torch.cat(rows)), source, layout, all_hidden, all_attentions

    def _map_layers(self, hidden, map_b, map_block, batch, cache, past, output_attentions, output_hidden_states):
        """Map blocks through the layers: ``hidden`` ``(NB, N, D)`` → ``(NB, N, D)``."""
        cfg = self.config
        n = cfg.num_cells
        device = hidden.device
        windowed = cfg.position_encoding == "relative_2d"
        if cfg.factorization == "markov":  # independent blocks: pack them as a batch, no cache
            if windowed:
                one = torch.zeros(len(hidden), 1, dtype=torch.long, device=device)
                plan = WindowPlan(1, one, one, torch.ones_like(one, dtype=torch.bool), autoregressive=False)
                return self._run_layers(hidden, None, None, None, output_attentions, output_hidden_states, plan)
            cells = torch.arange(n, device=device)
            index = relative_index(cfg, cells[None, :, None], cells[None, None, :], torch.tensor(True, device=device))
            return self._run_layers(hidden, None, index, None, output_attentions, output_hidden_states)

        # Autoregressive: arrange each example's blocks in order; the cache holds the earlier blocks' cells.
        first = torch.full((batch,), torch.iinfo(torch.long).max, device=device).scatter_reduce(
            0, map_b, map_block, "amin")
        slot = map_block - first[map_b]  # (NB,) block order within its example in this call
        num_slots = int(slot.max()) + 1
        past_blocks = past // n
        used = torch.zeros(batch, dtype=torch.bool, device=device)
        used[map_b] = True
        if past and (past % n or (first[used] != past_blocks + 1).any() or num_slots != 1 or not used.all()):
            raise ValueError("autoregressive grid decoding feeds, per call, the one map after the cached ones")
        arranged = hidden.new_zeros(batch, num_slots, n, hidden.shape[-1])
        arranged[map_b, slot] = hidden
        present = torch.zeros(batch, num_slots, dtype=torch.bool, device=device)
        present[map_b, slot] = True
        first = torch.where(used, first, 1)
        query_block = first[:, None] + torch.arange(num_slots, device=device)  # (B, nq)
        key_block = torch.cat([torch.arange(1, past_blocks + 1, device=device).expand(batch, -1), query_block], 1)
        key_valid = torch.cat([torch.ones(batch, past_blocks, dtype=torch.bool, device=device), present], 1)
        arranged = arranged.view(batch, num_slots * n, -1)
        if windowed:
            plan = WindowPlan(num_slots, query_block, key_block, key_valid, autoregressive=True)
            arranged, all_hidden, all_attentions = self._run_layers(
                arranged, None, None, cache, output_attentions, output_hidden_states, plan)
        else:
            q_block, k_block = query_block.repeat_interleave(n, 1), key_block.repeat_interleave(n, 1)
            allowed = (k_block[:, None, :] <= q_block[:, :, None]) & key_valid.repeat_interleave(n, 1)[:, None, :]
            allowed |= ~present.repeat_interleave(n, 1)[:, :, None]  # padding queries: anything, never read
            q_cell = torch.arange(num_slots * n, device=device) % n
            k_cell = torch.arange(k_block.shape[1], device=device) % n
            index = relative_index(cfg, q_cell[None, :, None], k_cell[None, None, :],
                                   k_block[:, None, :] == q_block[:, :, None])
            arranged, all_hidden, all_attentions = self._run_layers(
                arranged, allowed, index, cache, output_attentions, output_hidden_states)
        return arranged.view(batch, num_slots, n, -1)[map_b, slot], all_hidden, all_attentions

    # ------------------------------------------------------------------------------------------------------- text
    def _text_forward(self, input_ids, attention_mask, position_ids, cache, past, output_attentions,
                      output_hidden_states, state_input_ids=None):
        cfg = self.config
        b, t = input_ids.shape
        device = input_ids.device
        step = self._text_step(input_ids, attention_mask, position_ids, cache, past, output_attentions,
                               output_hidden_states, state_input_ids)
        if step is not None:
            return step
        if attention_mask is not None:
            if attention_mask.shape != (b, past + t):
                raise ValueError(f"attention_mask must have shape {(b, past + t)}, got {tuple(attention_mask.shape)}")
            key_valid = attention_mask.bool()
            key_position = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            if position_ids is None:
                position_ids = key_position[:, past:]
            else:
                key_position = torch.cat([key_position[:, :past], position_ids], dim=1)
        else:
            if position_ids is None:
                position_ids = torch.arange(past, past + t, device=device).expand(b, t)
            key_position = torch.cat([torch.arange(past, device=device).expand(b, past), position_ids], dim=1)
            key_valid = torch.ones(b, past + t, dtype=torch.bool, device=device)
        layout = self._layout(input_ids, position_ids)
        ids = torch.where(layout.role == ROLE_STATE, self._state_ids(input_ids), input_ids)
        hidden = self._embed(ids, layout.cell)  # (B, T, D)
        text_position = layout.position - (cfg.num_cells + 1)
        if (text_position >= cfg.max_position_embeddings).any():
            raise ValueError(f"a sequence of {int(layout.position.max()) + 1} tokens is longer than this model "
                             f"supports: {cfg.num_cells + 1} state tokens + max_position_embeddings="
                             f"{cfg.max_position_embeddings}")
        # BC-style readout at <act> (MinAtar BC / auxiliary BC): <act> sees <s> and the state only, at the text position
        # right after the state, so its hidden state is the same with or without a procedure before it.
        act_reads_state = (input_ids == cfg.act_token_id) & (cfg.action_readout == "act_token" and cfg.objective != "pc")
        text_position = torch.where(act_reads_state, 0, text_position)  # (B, T)
        hidden = hidden + self.embed_positions(text_position.clamp(min=0)) * (~layout.is_cell())[..., None]
        if self.state_encoder is not None:
            hidden = self._add_state_summary(hidden, input_ids, layout, state_input_ids)
        # The state prefix is bidirectional; everything else is causal; a token always sees itself.
        key = token_layout(cfg, key_position, torch.full((b, 1), torch.iinfo(torch.long).max, device=device))
        q_state, k_state = (layout.role == ROLE_STATE)[:, :, None], (key.role == ROLE_STATE)[:, None, :]
        causal = key.position[:, None, :] <= layout.position[:, :, None]
        prefix = k_state | (key.position == 0)[:, None, :]  # (B, 1, S) <s> and the state
        causal = torch.where(act_reads_state[:, :, None], prefix, causal)  # (B, T, S)
        allowed = torch.where(q_state, k_state, causal) & key_valid[:, None, :]
        allowed |= torch.arange(past + t, device=device) == (past + torch.arange(t, device=device))[:, None]
        index = relative_index(cfg, layout.cell[:, :, None], key.cell[:, None, :], torch.ones((), dtype=torch.bool,
                                                                                                device=device))
        index = torch.where(q_state & k_state, index, self.layers[0].self_attn.relative_bias.none_index)
        hidden, all_hidden, all_attentions = self._run_layers(
            hidden, allowed, index, cache, output_attentions, output_hidden_states
        )
        return self.norm(hidden), layout, all_hidden, all_attentions

    def _text_step(self, input_ids, attention_mask, position_ids, cache, past, output_attentions,
                   output_hidden_states, state_input_ids):
        """One decoding step after the prompt, the common case of acting: one new token per row, not a state cell, at
        a position after every cached key. It sees every key, and a token that is not a state cell gets no relative
        bias, so the general path's mask would be all zeros: attention runs unmasked, and only what the token needs
        (its embeddings, the state vector) is computed. Returns None for any other call (prompts, training, padding
        masks, BC's ``<act>`` readout, a position past the table, a missing ``state_input_ids``), which the general
        path serves or rejects with its error."""
        cfg = self.config
        b, t = input_ids.shape
        if t != 1 or past == 0 or cache is None:
            return None
        if attention_mask is not None and (attention_mask.shape != (b, past + 1) or not bool(attention_mask.all())):
            return None
        position = (torch.full((b, 1), past, dtype=torch.long, device=input_ids.device) if position_ids is None
                    else position_ids)
        # Keys sit at 0 … past - 1 (no padding): the token must come after them and after the state.
        if position.shape != (b, 1) or not bool(((position >= past) & (position > cfg.num_cells)).all()):
            return None
        text_position = position - (cfg.num_cells + 1)
        if bool((text_position >= cfg.max_position_embeddings).any()):
            return None
        if cfg.action_readout == "act_token" and cfg.objective != "pc" and bool((input_ids == cfg.act_token_id).any()):
            return None
        if self.state_encoder is not None and (state_input_ids is None or state_input_ids.shape != (b, cfg.num_cells)):
            return None
        other = torch.full_like(position, -1)
        layout = TokenLayout(role=torch.full_like(position, ROLE_OTHER), block=other, cell=other, position=position)
        hidden = self.embed_tokens(input_ids) + self.embed_positions(text_position)
        if self.state_encoder is not None:  # every token that is not a state cell reads the encoder's vector
            hidden = hidden + self._state_summary(state_input_ids).to(hidden.dtype)[:, None, :]
        hidden, all_hidden, all_attentions = self._run_layers(
            hidden, None, None, cache, output_attentions, output_hidden_states
        )
        return self.norm(hidden), layout, all_hidden, all_attentions

    def _add_state_summary(self, hidden, input_ids, layout: TokenLayout, state_input_ids=None):
        """Add the MLP state encoder's vector to every token that is not a state cell (``<s>``, the procedure, the
        action). Its state comes from the call when the call holds the whole state (a prompt, a training sequence),
        else from ``state_input_ids`` (a decoding step; `prepare_inputs_for_generation` and `MinAtarPolicy` pass it)."""
        cfg, n = self.config, self.config.num_cells
        b = input_ids.shape[0]
        is_state = layout.role == ROLE_STATE
        counts = is_state.sum(dim=1)
        if bool((counts == n).all()):
            state = input_ids[is_state].view(b, n)  # the cells in order
        elif bool((counts == 0).all()) and state_input_ids is not None and tuple(state_input_ids.shape) == (b, n):
            state = state_input_ids
        else:
            partial = (counts != n) & (counts != 0)
            row = int(partial.nonzero()[0]) if bool(partial.any()) else 0
            raise ValueError(f"state_encoder_size={cfg.state_encoder_size}: the state encoder reads the whole state: "
                             f"a call must hold all {n} state cells, or none of them and state_input_ids of shape "
                             f"{(b, n)}; example {row} holds {int(counts[row])} cells, state_input_ids "
                             f"{None if state_input_ids is None else tuple(state_input_ids.shape)}")
        summary = self._state_summary(state).to(hidden.dtype)  # (B, D)
        return hidden + (~is_state)[..., None].to(hidden.dtype) * summary[:, None, :]

    def _state_summary(self, state: torch.Tensor) -> torch.Tensor:
        """``state_encoder(state)``. Without gradients the last result is kept with a copy of its state and the
        encoder's weight key (`_weight_key`), so the decoding steps of one decision (the same state every pass) run
        the MLP once; any other state, or a changed weight, recomputes it."""
        if torch.is_grad_enabled():
            return self.state_encoder(state)
        weights = self.state_encoder.weights()
        key = _weight_key(weights)
        cached = getattr(self, "_summary_cache", None)
        if (key is None or cached is None or cached[0] != key or cached[1].device != state.device
                or not torch.equal(cached[1], state)):  # torch.equal: False for another shape
            cached = self._summary_cache = (key, state.clone(), self.state_encoder(state), [w.detach() for w in weights])
        return cached[2]

    def _check_grammar(self, input_ids, layout: TokenLayout):
        """Cells must hold cell tokens of the right kind; anything else is a malformed sequence."""
        cfg = self.config
        for role, ids, name in ((ROLE_STATE, cfg.state_token_ids, "state"), (ROLE_MAP, cfg.map_token_ids, "map")):
            where = layout.role == role
            if not where.any():
                continue
            ok = torch.isin(input_ids, torch.tensor(ids, dtype=torch.long, device=input_ids.device))
            bad = where & ~ok
            if bad.any():
                b, t = (int(i) for i in bad.nonzero()[0])
                shown = ids if len(ids) <= 8 else f"[{ids[0]} … {ids[-1]}] ({len(ids)} ids)"
                hint = (f"num_channels={cfg.num_channels}: does the observation have more channels?"
                        if cfg.domain == "minatar" else f"grid_size={cfg.grid_size}: is the grid the configured size?")
                raise ValueError(
                    f"malformed sequence: position {int(layout.position[b, t])} of example {b} must be a {name} cell "
                    f"token {shown}, got id {int(input_ids[b, t])} ({hint})"
                )


@dataclass
class GridDecodeOutput(ModelOutput):
    """Result of decoding a grid procedure.

    Args:
        sequences: ``(batch_size, length)`` the whole token sequence, ``<s> … <act> a_k </s>``, right-padded; an
            example without a valid action ends ``<act> </s>`` (no action token: not a training sequence).
        maps: ``(batch_size, num_maps, grid_size, grid_size)`` int8 map values, the last map repeated after an example
            stopped.
        num_maps: ``(batch_size,)`` maps generated per example.
        actions: ``(batch_size,)`` the action read out at the agent's cell; -1 where no valid action came out.
        valid: ``(batch_size,)`` bool, False when the procedure ran past ``max_procedure_steps`` or stopped changing
            before labelling the agent's cell.
        action_map: ``(batch_size, grid_size, grid_size)`` the action readout at every cell of the last map fed (what
            the model would answer for an agent there); a policy's procedure cache reuses it.
        forward_passes: number of forward passes the batch took.
    """

    sequences: torch.LongTensor | None = None
    maps: torch.Tensor | None = None
    num_maps: torch.Tensor | None = None
    actions: torch.Tensor | None = None
    valid: torch.Tensor | None = None
    action_map: torch.Tensor | None = None
    forward_passes: int | None = None


def _kept_positions(logits_to_keep) -> slice | torch.Tensor:
    """The sequence positions ``logits_to_keep`` names (`PCForProcedureCloning.forward`), checked."""
    if isinstance(logits_to_keep, torch.Tensor):
        if logits_to_keep.dim() != 1 or logits_to_keep.is_floating_point() or logits_to_keep.dtype == torch.bool:
            raise ValueError("logits_to_keep must be an int or a 1-D tensor of integer positions, got a tensor of "
                             f"shape {tuple(logits_to_keep.shape)} and dtype {logits_to_keep.dtype}")
        return logits_to_keep
    if isinstance(logits_to_keep, bool) or not isinstance(logits_to_keep, int) or logits_to_keep < 0:
        raise ValueError(f"logits_to_keep must be an int ≥ 0 (0: every position) or a 1-D tensor of positions, "
                         f"got {logits_to_keep!r}")
    return slice(-logits_to_keep, None) if logits_to_keep else slice(None)


class PCForProcedureCloning(PCPreTrainedModel, GenerationMixin):
    """`PCModel` with a token head, the procedure/action losses, and decoding (grid: a map per forward pass)."""

    def __init__(self, config: PCConfig):
        super().__init__(config)
        self.model = PCModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    # Token-id sets of the grammar, built from the config on use: non-persistent buffers are not restored by
    # from_pretrained (transformers 5 builds the model on the meta device).
    @property
    def map_ids(self) -> torch.Tensor:
        return torch.tensor(self.config.map_token_ids, device=self.lm_head.weight.device)

    @property
    def action_ids(self) -> torch.Tensor:
        return torch.tensor(self.config.action_token_ids, device=self.lm_head.weight.device)

    def prepare_inputs_for_generation(self, input_ids, **kwargs):
        """`GenerationMixin`'s inputs, plus the state's cells (``state_input_ids``) for a model with a state encoder:
        a cached decoding step holds no state cell, and every token reads the encoder's vector."""
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        if self.config.state_encoder_size:
            inputs["state_input_ids"] = self.state_input_ids(input_ids)
        return inputs

    def state_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The ``grid_size**2`` cell tokens after each row's first ``<s>`` (left padding allowed): ``(B, N)``."""
        n = self.config.num_cells
        is_bos = input_ids == self.config.bos_token_id
        if not bool(is_bos.any(dim=1).all()) or input_ids.shape[1] < n + 1:
            raise ValueError(f"every row must start with <s> and its {n} state cells, got input_ids of shape "
                             f"{tuple(input_ids.shape)}")
        start = is_bos.int().argmax(dim=1) + 1  # (B,)
        index = (start[:, None] + torch.arange(n, device=input_ids.device)).clamp(max=input_ids.shape[1] - 1)
        return input_ids.gather(1, index)

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Cache | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        state_input_ids: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> PCOutput:
        r"""
        Args:
            labels: ``(batch_size, sequence_length)``, the input ids with -100 where no loss is wanted (the collator
                builds them). Targets are found by the grammar: map cells (grid) or procedure tokens (text) for the
                procedure loss, the token after ``<act>`` for the action loss.
            logits_to_keep: which positions get ``logits``, as in transformers' causal LMs: an int ``k`` keeps the
                last ``k`` (0, the default: all of them; `GenerationMixin.generate` passes 1), a 1-D tensor keeps
                those indices (an empty one: none). The losses do not read ``logits``: training that only needs
                the loss passes an empty tensor (``recipes/train.py`` does) and skips the ``(B, T, V)`` projection,
                and under mixed precision Accelerate's float32 copy of it.
        """
        positions = _kept_positions(logits_to_keep)
        out = self.model(
            input_ids, attention_mask=attention_mask, position_ids=position_ids, past_key_values=past_key_values,
            use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            state_input_ids=state_input_ids, **kwargs,
        )
        hidden, layout = out.last_hidden_state, out.token_layout  # (B, T, D)
        readout = self._readout_index(input_ids, layout)  # (B, T) the position whose hidden state each token uses
        if readout is None:  # every token its own
            logits = self.lm_head(hidden[:, positions])  # (B, kept, V)
        else:
            read = readout[:, positions]
            logits = self.lm_head(hidden.gather(1, read[..., None].expand(-1, -1, hidden.shape[-1])))

        procedure_loss = action_loss = loss = None
        if labels is not None:
            # The losses project only the positions with a target (onto the allowed ids): the same values as
            # ``logits`` there, without a backward pass through the whole (B, T, V) tensor. Grid formats read those
            # positions' rows of ``row_states`` directly, so the backward does not pass through the padded (B, T, D)
            # states either.
            def pick(keep):
                b, t = keep.nonzero(as_tuple=True)
                source = t if readout is None else readout[b, t]
                return hidden[b, source] if out.row_states is None else out.row_states[out.row_index[b, source]]

            procedure_loss, action_loss = self._losses(pick, labels, input_ids, layout)
            terms = [w * l for w, l in ((self.config.procedure_loss_weight, procedure_loss),
                                        (self.config.action_loss_weight, action_loss)) if l is not None]
            loss = sum(terms) if terms else None
        return PCOutput(
            loss=loss, procedure_loss=procedure_loss, action_loss=action_loss, logits=logits,
            past_key_values=out.past_key_values, hidden_states=out.hidden_states, attentions=out.attentions,
        )

    def save_pretrained(self, save_directory, *args, **kwargs):
        """Identical to `PreTrainedModel.save_pretrained` except: the remote-code ``auto_map`` also names ``AutoModel``
        (transformers writes only the saved class's entry)."""
        if getattr(self, "_auto_class", None) is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}),
                                    "AutoModel": "modeling_pc.PCModel"}
        return super().save_pretrained(save_directory, *args, **kwargs)

    # ---------------------------------------------------------------------------------------------- readout, loss
    def _readout_index(self, input_ids, layout: TokenLayout) -> torch.Tensor | None:
        """Index (into the new tokens) of the hidden state that produces each token's logits; None when every token
        uses its own.

        Every token uses its own, except ``<act>`` under an agent-cell readout (mazes): grid PC reads the agent's cell
        of the last map, BC and auxiliary BC read the agent's cell of the state. With ``action_readout="act_token"``
        (MinAtar) ``<act>`` always uses its own (`PCModel._text_forward` limits what it sees under BC objectives).
        """
        cfg = self.config
        if cfg.action_readout != "agent_cell" or (cfg.objective == "pc" and not cfg.is_grid):
            return None
        is_act = input_ids == cfg.act_token_id
        if not is_act.any():
            return None
        b, t = input_ids.shape
        own = torch.arange(t, device=input_ids.device).expand(b, t)
        is_agent = (input_ids == cfg.state_token_ids[3]) & (layout.role == ROLE_STATE)
        has_act = is_act.any(dim=1)
        if (has_act & (is_agent.sum(dim=1) != 1)).any():
            raise ValueError("an <act> readout needs exactly one agent cell 'A' in the state, in the same forward call")
        agent_cell = layout.cell.masked_fill(~is_agent, -1).amax(dim=1)  # (B,)
        act_t = is_act.float().argmax(dim=1)  # (B,) index of the first <act>
        start = layout.position[:, :1]  # position of index 0; positions are contiguous within one call
        if cfg.objective == "pc":  # the agent's cell in the last map before <act>
            n = cfg.num_cells
            num_maps = torch.div(layout.position.gather(1, act_t[:, None])[:, 0] - (n + 1), n + 1,
                                 rounding_mode="floor")
            if (has_act & (num_maps < 1)).any():
                raise ValueError("grid PC reads the action in the last map, but an <act> follows no map")
            target_position = n + 2 + (num_maps - 1) * (n + 1) + agent_cell
        else:
            target_position = 1 + agent_cell
        target = target_position - start[:, 0]
        if (has_act & ((target < 0) | (target >= t))).any():
            raise ValueError("the <act> readout cell must be in the same forward call as <act>")
        index = own.clone()
        rows = has_act.nonzero()[:, 0]
        index[rows, act_t[rows]] = target[rows]
        return index

    def _losses(self, pick, labels, input_ids, layout: TokenLayout):
        """Procedure and action losses. ``pick(keep)`` gives the readout hidden states (what ``logits`` are made of)
        at the positions where the ``(B, T)`` bool ``keep`` is True, ``(keep.sum(), D)``."""
        cfg = self.config
        if labels.shape != input_ids.shape:
            raise ValueError(f"labels must have the shape of input_ids {tuple(input_ids.shape)}, got {tuple(labels.shape)}")
        weight = self.lm_head.weight  # (V, D)
        is_act = input_ids == cfg.act_token_id
        # Action: the token after <act>, scored over the action tokens only (the grammar fixes what comes there).
        next_label = F.pad(labels[:, 1:], (0, 1), value=-100)
        action_target = torch.where(is_act, next_label, -100)
        action_loss = _subset_cross_entropy(pick, weight, action_target, self.action_ids)
        if cfg.objective == "bc":
            return None, action_loss
        if cfg.is_grid:
            # A cell predicts the same cell of the next map, N+1 positions later.
            shift = cfg.num_cells + 1
            target = F.pad(labels[:, shift:], (0, shift), value=-100)
            target_role = F.pad(layout.role[:, shift:], (0, shift), value=ROLE_OTHER)
            target = torch.where(layout.is_cell() & (target_role == ROLE_MAP), target, -100)
            procedure_loss = _subset_cross_entropy(pick, weight, target, self.map_ids)
        else:
            # Text-like: next-token prediction over the procedure tokens and the closing <act>.
            in_procedure = (input_ids == cfg.proc_token_id).long().cumsum(1) - is_act.long().cumsum(1) > 0
            target = torch.where(in_procedure, next_label, -100)
            target = target.masked_fill(is_act, -100)
            procedure_loss = _masked_mean_ce(pick, weight, target)
        return procedure_loss, action_loss

    # ---------------------------------------------------------------------------------------------------- decoding
    def generate(self, input_ids=None, **kwargs):
        """Grid formats: `generate_grid` (one map per forward pass). Text-like formats: `GenerationMixin.generate`,
        with greedy decoding by default."""
        if self.config.is_grid:
            return self.generate_grid(input_ids, **kwargs).sequences
        return super().generate(input_ids, **kwargs)

    @torch.no_grad()
    def generate_grid(
        self,
        input_ids: torch.LongTensor,
        max_procedure_steps: int | None = None,
        use_cache: bool = True,
        agent_positions: torch.LongTensor | None = None,
        **kwargs,
    ) -> GridDecodeOutput:
        r"""Decode a grid procedure map by map, then read the action at the agent's cell.

        Args:
            input_ids: ``(batch_size, num_cells + 2)`` prompts ``<s> s_1 … s_N <proc>`` (or ``… <act>`` for BC).
            max_procedure_steps: most maps generated after map 0 (default ``config.max_procedure_steps``).
            use_cache: feed only the newest map each step (autoregressive: with a `DynamicCache` of the earlier maps'
                keys/values; Markov: nothing to cache, a map sees only itself and the state under it). ``False``
                re-runs the whole sequence every step; both give the same tokens.
            agent_positions: ``(batch_size, 2)`` rows and columns of the agents; if given, overrides the ``A`` cell.
        """
        if kwargs:
            unknown = sorted(k for k in kwargs if k not in ("attention_mask", "generation_config"))
            if unknown:
                raise ValueError(f"generate_grid got unsupported arguments {unknown}")
        cfg = self.config
        n, g = cfg.num_cells, cfg.grid_size
        b = input_ids.shape[0]
        device = input_ids.device
        if input_ids.shape[1] != n + 2:
            raise ValueError(f"a grid prompt is '<s> {n} state cells <proc>' = {n + 2} tokens for grid_size={g}, "
                             f"got {input_ids.shape[1]} tokens")
        last = input_ids[:, -1]
        if not ((last == cfg.proc_token_id).all() or (last == cfg.act_token_id).all()):
            raise ValueError("a grid prompt must end with <proc> (decode the procedure) or <act> (act directly)")
        state = input_ids[:, 1 : n + 1]
        is_agent = state == cfg.state_token_ids[3]
        if agent_positions is None:
            if (is_agent.sum(1) != 1).any():
                raise ValueError("each prompt needs exactly one agent cell 'A' (or pass agent_positions)")
            agent_cell = is_agent.float().argmax(1)
        else:
            agent_cell = agent_positions[:, 0] * g + agent_positions[:, 1]
        max_steps = cfg.max_procedure_steps if max_procedure_steps is None else max_procedure_steps
        batch = torch.arange(b, device=device)
        map_ids, action_ids = self.map_ids, self.action_ids

        if (last == cfg.act_token_id).all():  # BC-style: one pass, read the action in the state
            logits = self(input_ids, use_cache=False).logits  # (B, N+2, V)
            actions = logits[:, -1, action_ids].argmax(-1)
            seq = torch.cat([input_ids, action_ids[actions][:, None],
                             torch.full((b, 1), cfg.eos_token_id, device=device)], dim=1)
            return GridDecodeOutput(sequences=seq, maps=None, num_maps=torch.zeros(b, dtype=torch.long, device=device),
                                    actions=actions, valid=torch.ones(b, dtype=torch.bool, device=device),
                                    forward_passes=1)

        # Markov maps depend only on the state and the previous map, so there is nothing to cache: each step is one
        # pass over one map. Autoregressive maps attend to all earlier maps, whose keys/values the cache keeps.
        cache = DynamicCache(config=cfg) if use_cache and cfg.factorization == "autoregressive" else None
        markov_step = use_cache and cfg.factorization == "markov" and not kwargs.get("output_attentions")
        prompt_len = n + 2
        out = self(input_ids, past_key_values=cache, use_cache=cache is not None)
        passes = 1
        # BC and auxiliary BC read their action in the state (as trained), whatever procedure they also decode.
        state_actions = out.logits[batch, 1 + agent_cell][:, action_ids].argmax(-1)
        values = out.logits[:, 1 : n + 1][..., map_ids].argmax(-1)  # (B, N) map 0
        maps, blocks = [values], [input_ids]
        done = torch.zeros(b, dtype=torch.bool, device=device)
        valid = torch.zeros(b, dtype=torch.bool, device=device)
        actions = torch.full((b,), -1, dtype=torch.long, device=device)
        num_maps = torch.zeros(b, dtype=torch.long, device=device)
        action_map = torch.full((b, n), -1, dtype=torch.long, device=device)
        for step in range(max_steps + 1):
            current = maps[-1]
            # Feed the newest map: it yields the next map and, at the agent's cell, the action readout.
            block = map_ids[current]  # (B, N)
            if step > 0:
                block = torch.cat([torch.full((b, 1), cfg.step_token_id, device=device), block], dim=1)
            start = prompt_len + step * (n + 1) - (1 if step > 0 else 0)
            positions = torch.arange(start, start + block.shape[1], device=device).expand(b, -1)
            if markov_step:  # the same logits as the call below, without the layout bookkeeping (one pass)
                logits = self._markov_map_logits(map_ids[current], state)
            elif use_cache:
                logits = self(block, position_ids=positions, past_key_values=cache, use_cache=cache is not None,
                              state_input_ids=state).logits
            else:
                blocks.append(block)
                logits = self(torch.cat(blocks, dim=1), use_cache=False).logits[:, -block.shape[1] :]
            passes += 1
            cells = logits[:, -n:]  # (B, N, V)
            action_map = torch.where(done[:, None], action_map, cells[..., action_ids].argmax(-1))
            labelled = current.gather(1, agent_cell[:, None])[:, 0] < UNREACHED_VALUE
            newly = labelled & ~done
            actions = torch.where(newly, cells[batch, agent_cell][:, action_ids].argmax(-1), actions)
            valid |= newly
            num_maps = torch.where(newly, step + 1, num_maps)
            done |= labelled
            nxt = cells[..., map_ids].argmax(-1)  # (B, N)
            stalled = (nxt == current).all(1) & ~done  # the map stopped growing: the agent will never be reached
            num_maps = torch.where(stalled, step + 1, num_maps)
            done |= stalled
            if bool(done.all()) or step == max_steps:
                break
            maps.append(torch.where(done[:, None], current, nxt))
        num_maps = torch.where(num_maps == 0, len(maps), num_maps)
        if cfg.objective != "pc":
            actions, valid = state_actions, torch.ones_like(valid)
        stacked = torch.stack(maps, 1).view(b, -1, g, g).to(torch.int8)  # (B, M, G, G)
        return GridDecodeOutput(
            sequences=self._grid_sequences(input_ids, stacked, num_maps, actions),
            maps=stacked, num_maps=num_maps, actions=actions, valid=valid,
            action_map=action_map.view(b, g, g), forward_passes=passes,
        )

    def _markov_map_logits(self, map_cells: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, N, V)`` at the cells of one Markov map block ``map_cells`` ``(B, N)`` (token ids) over
        ``state`` ``(B, N)``: what `forward` gives at those positions (a Markov map attends only to itself and reads
        the state under each cell through its embedding), computed directly on the block."""
        model = self.model
        cells = torch.arange(self.config.num_cells, device=map_cells.device)
        hidden = model._embed(map_cells, cells) + model.embed_tokens(model._state_ids(state))  # (B, N, D)
        index = torch.arange(len(hidden), device=hidden.device)
        hidden, _, _ = model._map_layers(hidden, index, torch.ones_like(index), len(hidden), None, 0, False, False)
        return self.lm_head(model.norm(hidden))

    def _grid_sequences(self, prompt, maps, num_maps, actions):
        """``<s> state <proc> x_0 <step> … x_L <act> a </s>`` per example, right-padded."""
        cfg = self.config
        rows = []
        for i in range(prompt.shape[0]):
            parts = [prompt[i]]
            for m in range(int(num_maps[i])):
                if m:
                    parts.append(prompt.new_tensor([cfg.step_token_id]))
                parts.append(self.map_ids[maps[i, m].flatten().long()])
            action = [self.action_ids[actions[i]]] if actions[i] >= 0 else []
            parts.append(prompt.new_tensor([cfg.act_token_id, *action, cfg.eos_token_id]))
            rows.append(torch.cat(parts))
        return nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=cfg.pad_token_id)


def _subset_cross_entropy(pick, weight, target, subset_ids) -> torch.Tensor | None:
    """Mean cross-entropy over the positions with a target, the softmax taken over ``subset_ids`` only: the logits
    ``hidden @ weight.T`` (bias-free head) at those positions and ids, ``pick(keep)`` giving their hidden states."""
    keep = target != -100
    if not keep.any():
        return None
    lookup = torch.full((weight.shape[0],), -1, dtype=torch.long, device=weight.device)
    lookup[subset_ids] = torch.arange(len(subset_ids), device=weight.device)
    sub_target = lookup[target[keep]]
    if (sub_target < 0).any():
        raise ValueError(f"labels hold token ids {target[keep][sub_target < 0][:5].tolist()} where only "
                         f"{subset_ids.tolist()} are allowed by the grammar")
    return F.cross_entropy(F.linear(pick(keep), weight[subset_ids]).float(), sub_target)


def _masked_mean_ce(pick, weight, target) -> torch.Tensor | None:
    """Mean cross-entropy over the positions with a target, over the whole vocabulary (bias-free head); ``pick(keep)``
    gives their hidden states."""
    keep = target != -100
    if not keep.any():
        return None
    return F.cross_entropy(F.linear(pick(keep), weight).float(), target[keep])


__all__ = ["PCPreTrainedModel", "PCModel", "PCForProcedureCloning", "PCOutput", "GridDecodeOutput"]
