"""The typed config of the training recipe (``recipes/train.py``): `TrainConfig`, its ``train:`` (`OptimArgs`) and
``eval:`` (`EvalArgs`) sections, and `load_config` / `save_config`.

A config is a YAML file (``recipes/configs/*.yaml``) whose keys are `TrainConfig` fields; each section is a mapping
of its class's fields (``data:`` `MazeDataConfig`, ``minatar:`` `MinAtarDataConfig`, ``model:`` `PCConfig`).
``section.key=value`` arguments override the file, their values parsed as YAML::

    config = load_config("recipes/configs/pc_maze8.yaml", ["train.max_steps=100", "eval.keep_best=true"])

`typed` refuses unknown keys and values of the wrong type, naming the key; `TrainConfig` checks the values. Every
checkpoint holds the resolved config (`save_config`), which `load_config` reads back unchanged.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import yaml

from .configuration_pc import PCConfig
from .data import MazeDataConfig, MinAtarDataConfig
from .envs.minatar import minatar_game_info
from .policy import MinAtarPolicy, PCPolicy
from .tokenization_pc import PCTokenizer

METRICS = {"maze": "success_rate", "minatar": "mean_return"}  # what validation rollouts report, and keep_best ranks


@dataclasses.dataclass
class OptimArgs:
    """Args:
    max_steps: optimizer steps.
    batch_size: expert decisions per optimizer step, over all processes and accumulation micro-steps.
    gradient_accumulation_steps: micro-steps per optimizer step.
    learning_rate: AdamW peak learning rate.
    weight_decay: AdamW weight decay.
    lr_scheduler: a transformers scheduler name (constant, constant_with_warmup, linear, cosine, ...).
    warmup_steps: scheduler warm-up steps.
    max_grad_norm: gradient clipping norm (0: no clipping).
    mixed_precision: no, bf16 or fp16 (Accelerate autocast).
    ema_decay: keep an exponential moving average of the weights (`torch.optim.swa_utils.AveragedModel`), updated
        after every optimizer step with this decay (e.g. 0.99; 0: none). Validation, keep_best, the checkpoints'
        ``policy/`` and ``final/`` then hold the averaged weights; training goes on with the raw ones.
    keep_freed_memory: CPU training on glibc (Linux): keep freed memory in the process rather than returning it to
        the kernel and faulting it in again at every step (`pc_transformers.memory.keep_freed_memory`; fp32 16x16
        training 1.05x faster here, bf16 unchanged; the process's memory stays near its peak). Skipped where the
        environment preloads another allocator or sets malloc's thresholds itself.
    """

    max_steps: int = 2000
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_scheduler: str = "constant_with_warmup"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    ema_decay: float = 0.0
    keep_freed_memory: bool = True


@dataclasses.dataclass
class EvalArgs:
    """Args:
    every: roll out on validation mazes (episodes) every N steps (0: only the final evaluation).
    mazes: validation mazes per periodic evaluation (maze).
    starts: random starts per validation maze (maze).
    final_mazes: unseen test mazes for the final evaluation (maze; 0: none).
    final_starts: random starts per test maze (maze).
    episodes: validation episodes per periodic evaluation, in the data's setting (minatar).
    final_episodes: episodes of the final evaluation, in the unseen eval setting (minatar; 0: none).
    max_steps: episode cap (the paper: 100 in mazes).
    random_starts: minatar validation only: up to N uniformly random actions, drawn from each episode's seed, before
        the policy takes over (`pc_transformers.envs.minatar.RandomStart`), so that games whose reset has little
        randomness (Breakout: 2 distinct starts, Space Invaders: 1) give different validation episodes; 0: none.
        The final evaluation never uses them.
    batch_size: at most N environments per policy call in the rollouts (0: all at once); it bounds the memory of
        large evaluations (the autoregressive maze factorization caches every map it generates).
    keep_best: evaluate and save, at the end, the weights of the periodic evaluation with the best validation
        success or mean return (the earliest on ties, as transformers' Trainer) instead of the last; they are kept in
        ``checkpoints/best``.
    """

    every: int = 500
    mazes: int = 20
    starts: int = 2
    final_mazes: int = 100
    final_starts: int = 5
    episodes: int = 10
    final_episodes: int = 50
    max_steps: int = 100
    random_starts: int = 0
    batch_size: int = 0
    keep_best: bool = False


@dataclasses.dataclass
class TrainConfig:
    """Args:
    output_dir: where data/, checkpoints/, runs/ and final/ go.
    seed: seeds the data order, initialization, dropout and evaluation starts.
    domain: maze or minatar: which data section applies and how the policy is evaluated.
    dataset: an existing dataset directory (`pc-transformers generate maze|minatar --out DIR`); None: generate from
        data (maze) or minatar.
    data: maze only: the expert data to generate (MazeDataConfig fields); also names the evaluation mazes' size and
        walls.
    minatar: minatar only: the expert data (MinAtarDataConfig fields: game, setting, episodes, max_episode_steps,
        seed_offset, mcts, num_workers); also names the evaluation game.
    model: PCConfig fields (objective, factorization, hidden_size, ...); grid_size, the token layout (and in MinAtar
        num_channels, num_actions) come from the data and the tokenizer.
    train: optimization (OptimArgs).
    eval: evaluation by rollouts (EvalArgs).
    log_every: log training scalars every N steps.
    save_every: write a checkpoint every N steps (0: only at the end).
    save_total_limit: keep at most this many checkpoints (None: all).
    report_to: tensorboard or none.
    run_name: TensorBoard run name (None: {objective}-maze{size}-{wall_type}-seed{seed}).
    push_to_hub: Hub repository id to push final/ to with a model card (None: no push).
    hub_private: create that repository as private.
    """

    output_dir: str = "outputs/train"
    seed: int = 0
    domain: str = "maze"
    dataset: str | None = None
    data: MazeDataConfig | None = dataclasses.field(default_factory=lambda: MazeDataConfig(test_mazes=0))
    minatar: MinAtarDataConfig | None = None
    model: dict = dataclasses.field(default_factory=dict)
    train: OptimArgs = dataclasses.field(default_factory=OptimArgs)
    eval: EvalArgs = dataclasses.field(default_factory=EvalArgs)
    log_every: int = 10
    save_every: int = 500
    save_total_limit: int | None = 2
    report_to: str = "tensorboard"
    run_name: str | None = None
    push_to_hub: str | None = None
    hub_private: bool = False

    def __post_init__(self):
        for section, names in ((self.train, ("max_steps", "batch_size", "gradient_accumulation_steps")),
                               (self.eval, ("mazes", "starts", "final_starts", "episodes", "max_steps")),
                               (self, ("log_every",))):
            for name in names:
                if getattr(section, name) < 1:
                    raise ValueError(f"{name} must be at least 1, got {getattr(section, name)}")
        for section, name in ((self, "save_every"), (self, "seed"), (self.eval, "final_episodes"),
                              (self.eval, "random_starts"), (self.eval, "batch_size")):
            if getattr(section, name) < 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(section, name)}")
        if self.report_to not in ("tensorboard", "none"):
            raise ValueError(f"report_to must be 'tensorboard' or 'none', got {self.report_to!r}")
        if not 0.0 <= self.train.ema_decay < 1.0:
            raise ValueError(f"train.ema_decay must be in [0, 1) (0: no moving average), got {self.train.ema_decay}")
        if self.train.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"train.mixed_precision must be no, bf16 or fp16, got {self.train.mixed_precision!r}")
        if self.domain not in METRICS:
            raise ValueError(f"domain must be one of {tuple(METRICS)}, got {self.domain!r}")
        if self.domain == "minatar":
            self._validate_minatar()
            return
        if self.minatar is not None:
            raise ValueError("a minatar: section needs domain: minatar (this run's domain is 'maze')")
        if self.eval.random_starts:
            raise ValueError(f"eval.random_starts is for minatar validation (maze validation draws random starts "
                             f"already, eval.starts per maze); got {self.eval.random_starts} with domain 'maze'")

        if self.data is None:
            raise ValueError("domain 'maze' needs a data: section (MazeDataConfig fields), got null")
        reserved = {"grid_size", "procedure_format"} & set(self.model)
        if reserved:
            raise ValueError(f"model.{min(reserved)} comes from the data config; set data.size / "
                             f"data.procedure_format instead")
        PCConfig(grid_size=self.data.size, procedure_format=self.data.procedure_format, **self.model)  # validates

    def _validate_minatar(self):
        if self.minatar is None:
            raise ValueError("domain 'minatar' needs a minatar: section (MinAtarDataConfig fields: game, episodes, "
                             "mcts, ...)")
        if self.data is not None and self.data != MazeDataConfig(test_mazes=0):
            raise ValueError("data: is the maze data section; a minatar run takes its data from minatar:")
        self.data = None
        if (self.minatar.shard_index, self.minatar.num_shards) != (0, 1):
            raise ValueError(f"training generates all episodes in one shard; got minatar.shard_index="
                             f"{self.minatar.shard_index}, minatar.num_shards={self.minatar.num_shards} (generate "
                             f"sharded data with recipes/generate_minatar.py, then set dataset: DIR)")
        reserved = {"grid_size", "procedure_format", "num_channels", "num_actions", "domain"} & set(self.model)
        if reserved:
            raise ValueError(f"model.{min(reserved)} comes from the game (minatar.game) and the tokenizer; remove it")
        game = minatar_game_info(self.minatar.game)
        PCConfig.from_tokenizer(PCTokenizer.for_minatar(), num_channels=game.num_channels,  # validates
                                num_actions=game.num_actions, **self.model)

    @property
    def objective(self) -> str:
        return self.model.get("objective", "pc")

    @property
    def metric(self) -> str:
        """The validation metric: success_rate (maze) or mean_return (minatar)."""
        return METRICS[self.domain]

    @property
    def policy_class(self):
        return MinAtarPolicy if self.domain == "minatar" else PCPolicy


_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans, true and false only: YAML 1.1 also reads yes/no/on/off as
    booleans, which turned ``train.mixed_precision=no`` (Accelerate's value) into False."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def load_yaml(text: str):
    """A config file's or an override's YAML, with YAML 1.2's booleans (`_Loader`)."""
    return yaml.load(text, Loader=_Loader)


def typed(cls, values: dict, where: str = ""):
    """``cls(**values)`` for a (nested) config dataclass, refusing unknown keys and values of the wrong type."""
    if not isinstance(values, dict):
        raise TypeError(f"{where or 'config'} must be a mapping, got {values!r}")
    hints, known = typing.get_type_hints(cls), {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config key {where}{unknown[0]!r}; expected one of {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        hint, key = hints[name], f"{where}{name}"
        allowed = typing.get_args(hint) or (hint,)
        sections = [t for t in allowed if dataclasses.is_dataclass(t)]  # a section, possibly optional (X | None)
        if sections and not (value is None and type(None) in allowed):
            kwargs[name] = typed(sections[0], value, f"{key}.")
            continue
        if float in allowed and isinstance(value, str) and _FLOAT.match(value):
            value = float(value)  # YAML 1.1 (PyYAML) reads 3e-3 as a string; YAML 1.2 and people read a float
        if float in allowed and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not any(value is None if t is type(None) else (isinstance(value, t) and not (
                isinstance(value, bool) and t is not bool)) for t in allowed):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise TypeError(f"config key {key!r} must be {names}, got {value!r}")
        kwargs[name] = value
    return cls(**kwargs)


def load_config(path, overrides=()) -> TrainConfig:
    """Read a YAML config and apply ``section.key=value`` overrides (values parsed as YAML)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} not found")
    values = load_yaml(path.read_text()) or {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not of the form section.key=value")
        *parents, leaf = key.split(".")
        node = values
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = load_yaml(raw)
    if isinstance(values, dict) and values.get("domain") == "minatar" and values.get("data") is not None:
        raise ValueError("data: is the maze data section; a minatar run takes its data from minatar:")
    return typed(TrainConfig, values)


def save_config(config: TrainConfig, path) -> None:
    """Write the resolved config as YAML, in field order (`load_config` reads it back unchanged)."""
    Path(path).write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))


def hparams(config: TrainConfig) -> dict:
    """The config as flat ``section.key`` scalars (anything else as its ``str``), for the trackers' hyperparameters."""
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v))
            for k, v in _flatten(dataclasses.asdict(config)).items()}


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
