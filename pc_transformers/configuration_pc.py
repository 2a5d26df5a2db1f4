"""PCConfig: configuration of the procedure-cloning transformer.

This file is shipped as remote code: it imports only the standard library and transformers.
"""

from __future__ import annotations

from transformers import PreTrainedConfig

PROCEDURE_FORMATS = ("bfs_maps", "bfs_trace")
GRID_FORMATS = ("bfs_maps",)  # one procedure step = one whole map, decoded in one forward pass
FACTORIZATIONS = ("markov", "autoregressive")
OBJECTIVES = ("pc", "bc", "aux_bc")
POSITION_ENCODINGS = ("relative_2d", "absolute")

# Default token ids: the maze vocabulary of `PCTokenizer.for_maze()` (max_grid_size=64).
_MAZE_LAYOUT = {
    "vocab_size": 150,
    "pad_token_id": 0,
    "bos_token_id": 2,
    "eos_token_id": 3,
    "proc_token_id": 4,
    "step_token_id": 5,
    "path_token_id": 6,
    "act_token_id": 7,
    "state_token_ids": [8, 9, 10, 11],  # wall, free, goal, agent
    "map_token_ids": [12, 13, 14, 15, 16, 17],  # v > ^ < (actions 0-3), _ (unreached), * (goal)
    "action_token_ids": [18, 19, 20, 21],  # a0 … a3
}


class PCConfig(PreTrainedConfig):
    r"""Configuration of `PCModel` / `PCForProcedureCloning`.

    Build it from a tokenizer so the token layout matches: ``PCConfig.from_tokenizer(tokenizer, grid_size=16)``.
    Training hyperparameters (learning rate, batch size, steps) live in recipe configs, not here.

    Args:
        vocab_size: number of tokens.
        pad_token_id / bos_token_id / eos_token_id: ``<pad>``, ``<s>``, ``</s>``.
        proc_token_id / step_token_id / path_token_id / act_token_id: the structural tokens ``<proc>``, ``<step>``,
            ``<path>``, ``<act>`` of the grammar in ``tokenization_pc.py``.
        state_token_ids: ids of the state cells ``#``, ``.``, ``G``, ``A`` (in that order).
        map_token_ids: ids of the bfs-map cells ``v > ^ < _ *`` (map values 0-5, in that order).
        action_token_ids: ids of ``a0 … a3``.

        procedure_format: ``"bfs_maps"`` (grid: one step is a whole map, decoded in parallel) or ``"bfs_trace"``
            (text-like: decoded token by token).
        grid_size: side of the square maze the model reads; every state has ``grid_size**2`` cell tokens.
        max_procedure_steps: most procedure steps generated before giving up: maps after map 0 for ``bfs_maps``,
            tokens for text-like formats.
        factorization: ``"markov"``: a procedure step sees the state and the previous step only,
            p(x_l | x_{l-1}, s); ``"autoregressive"``: it sees the state and all earlier steps, p(x_l | x_<l, s).
        objective: ``"pc"`` (procedure then action), ``"bc"`` (state → action only), or ``"aux_bc"`` (BC whose
            shared state representation also predicts the procedure, as an auxiliary target).
        procedure_loss_weight / action_loss_weight: weights of the two losses in ``loss``.
        hide_agent: embed the agent's cell as a free cell. Default: True for grid PC, whose goal-rooted maps do not
            depend on the agent (marking it made the step model mislabel the agent's own cell); False otherwise.

        hidden_size / num_hidden_layers / num_attention_heads / intermediate_size: transformer size.
        hidden_act: MLP activation.
        attention_dropout / hidden_dropout: dropout probabilities.
        layer_norm_eps: LayerNorm epsilon.
        initializer_range: std of the normal initializer.
        position_encoding: ``"relative_2d"``: grid cells get a learned per-head attention bias indexed by the
            (Δrow, Δcol) offset and no absolute position, and map cells attend only within ±``relative_clip`` rows and
            columns (local and translation-equivariant, like BFS); ``"absolute"``: learned absolute cell embeddings,
            global attention within the visible maps, and a bias by block relation only (the ablation).
        relative_clip: the window radius of map cells; the state block attends globally with offsets clipped to
            ``[-relative_clip, relative_clip]``. At least 1 with ``relative_2d`` (a BFS step needs the neighbours).
        locality_init: initial bias is ``-slope_h * (|Δrow| + |Δcol|)``, slopes spread from ``locality_init / 4``
            to ``locality_init`` over heads; a zero bias learns nothing at the base learning rate.
        max_position_embeddings: longest text-like part (tokens after the state) the model supports.
        use_cache: return a `DynamicCache` from forward (text-like and autoregressive grid models; Markov maps need
            none).
    """

    model_type = "procedure_cloning"
    keys_to_ignore_at_inference = ["past_key_values"]

    # Token layout
    vocab_size: int = _MAZE_LAYOUT["vocab_size"]
    pad_token_id: int | None = _MAZE_LAYOUT["pad_token_id"]
    bos_token_id: int | None = _MAZE_LAYOUT["bos_token_id"]
    eos_token_id: int | None = _MAZE_LAYOUT["eos_token_id"]
    proc_token_id: int = _MAZE_LAYOUT["proc_token_id"]
    step_token_id: int = _MAZE_LAYOUT["step_token_id"]
    path_token_id: int = _MAZE_LAYOUT["path_token_id"]
    act_token_id: int = _MAZE_LAYOUT["act_token_id"]
    state_token_ids: list[int] | None = None
    map_token_ids: list[int] | None = None
    action_token_ids: list[int] | None = None
    # Procedure decoding
    procedure_format: str = "bfs_maps"
    grid_size: int = 16
    max_procedure_steps: int = 100
    factorization: str = "markov"
    objective: str = "pc"
    procedure_loss_weight: float = 1.0
    action_loss_weight: float = 1.0
    hide_agent: bool | None = None
    # Architecture
    hidden_size: int = 64
    num_hidden_layers: int = 3
    num_attention_heads: int = 4
    intermediate_size: int = 256
    hidden_act: str = "gelu"
    attention_dropout: float = 0.0
    hidden_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    position_encoding: str = "relative_2d"
    relative_clip: int = 2
    locality_init: float = 2.0
    max_position_embeddings: int = 1024
    use_cache: bool = True
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        for name in ("state_token_ids", "map_token_ids", "action_token_ids"):
            if getattr(self, name) is None:
                setattr(self, name, list(_MAZE_LAYOUT[name]))
        if self.hide_agent is None:
            self.hide_agent = self.objective == "pc" and self.procedure_format in GRID_FORMATS
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self):
        choices = {
            "procedure_format": PROCEDURE_FORMATS,
            "factorization": FACTORIZATIONS,
            "objective": OBJECTIVES,
            "position_encoding": POSITION_ENCODINGS,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        positive = ("vocab_size", "grid_size", "max_procedure_steps", "hidden_size", "num_hidden_layers",
                    "num_attention_heads", "intermediate_size", "max_position_embeddings")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(self.relative_clip, int) or self.relative_clip < 0:
            raise ValueError(f"relative_clip must be a non-negative int, got {self.relative_clip!r}")
        if self.position_encoding == "relative_2d" and self.relative_clip < 1:
            raise ValueError(f"relative_clip must be >= 1 with position_encoding='relative_2d' (a map cell must see "
                             f"its neighbours), got {self.relative_clip}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                             f"({self.num_attention_heads})")
        for name, length in (("state_token_ids", 4), ("map_token_ids", 6), ("action_token_ids", 4)):
            ids = getattr(self, name)
            if len(ids) != length or not all(isinstance(i, int) and 0 <= i < self.vocab_size for i in ids):
                raise ValueError(f"{name} must hold {length} token ids in [0, {self.vocab_size}), got {ids!r}")
        for name in ("procedure_loss_weight", "action_loss_weight"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative number, got {getattr(self, name)!r}")
        if self.objective == "pc" and self.action_loss_weight == 0 and self.procedure_format not in GRID_FORMATS:
            raise ValueError("objective='pc' with a text-like procedure needs action_loss_weight > 0, got 0")
        if self.objective == "bc" and self.factorization != "markov":
            # BC has no procedure, so a factorization other than the default would silently mean nothing.
            raise ValueError(f"objective='bc' has no procedure to factorize; leave factorization='markov', "
                             f"got {self.factorization!r}")
        if self.hide_agent and self.procedure_format not in GRID_FORMATS:
            raise ValueError(f"hide_agent=True needs a grid procedure {GRID_FORMATS}: a "
                             f"{self.procedure_format!r} procedure starts from the agent")
        if self.hide_agent and self.objective != "pc":
            raise ValueError(f"hide_agent=True is only meaningful for objective='pc', got objective={self.objective!r}")

    @property
    def is_grid(self) -> bool:
        """True when one procedure step is a whole grid map (decoded in one forward pass)."""
        return self.procedure_format in GRID_FORMATS

    @property
    def num_cells(self) -> int:
        return self.grid_size * self.grid_size

    @classmethod
    def from_tokenizer(cls, tokenizer, **kwargs) -> "PCConfig":
        """A config whose token layout and procedure format are read from a `PCTokenizer`."""
        layout = tokenizer.layout_token_ids()
        kwargs.setdefault("procedure_format", tokenizer.procedure_format)
        if kwargs.get("grid_size", 16) > tokenizer.max_grid_size:
            raise ValueError(f"grid_size {kwargs['grid_size']} exceeds the tokenizer's max_grid_size "
                             f"{tokenizer.max_grid_size}")
        return cls(**layout, **kwargs)


__all__ = ["PCConfig"]
