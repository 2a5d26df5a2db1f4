"""Expert datasets in MinAtar games: MCTS-expert episodes as Hugging Face `datasets` (Parquet, explicit `Features`).

One row is one decision of the expert (`pc_transformers.procedures.mcts.MCTSExpert`): the observation, the expert's
search summary (the `MCTSRecord` columns), its action, the reward that followed and the return so far. Rows of one
episode are consecutive, ``step`` counts within the episode, episodes are in index order.

How the data is made
--------------------
Episode ``i`` (``0 ≤ i < episodes``) is played from ``env.reset(seed=s_i)``, ``s_i = episode_seeds("train",
episodes, offset=seed_offset)[i]`` (training seeds, disjoint from the validation and evaluation seeds), in the
config's setting (``"train"``: no sticky actions, no difficulty ramp), until the game ends or ``max_episode_steps``.
Every decision is planned by a fresh `MCTSExpert` seeded with ``decision_seed(mcts.seed, s_i, step)``
(`pc_transformers.evaluation_minatar.decision_seed`). The rows of an episode are therefore a function of (config,
``i``) only, which makes everything below deterministic:

* **Worker processes** (``num_workers``): episodes are the unit of work; a pool of processes plays them as workers
  free up (a progress bar counts finished episodes), and the rows are merged in episode order. 1 or N workers give
  identical datasets.
* **Shards across machines** (``shard_index`` / ``num_shards``): shard ``k`` of ``n`` plays the contiguous block of
  episodes ``[episodes·k // n, episodes·(k+1) // n)``. The shards are disjoint, and concatenated in shard order they
  are exactly the single-machine dataset. ``recipes/generate_minatar.py`` maps the processes of
  ``accelerate launch`` to shards.

Any decision can be recomputed alone: replay the episode's actions from ``reset(seed=seed)`` up to ``step`` and run
``MCTSExpert(MCTSConfig(**mcts, seed=decision_seed(mcts_seed, seed, step)))`` (the tests do).

On disk (the layout of a Hub dataset repository; push it with ``pc-transformers push-dataset``)::

    DIR/README.md                                  dataset card (YAML: configs, license, tags; how it was made)
    DIR/data/train-00000-of-00002.parquet          shard 0 of 2 (one file when not sharded)
    DIR/data/train-00001-of-00002.parquet

Load it with ``load_minatar_dataset(DIR)`` or ``datasets.load_dataset("parquet", data_dir=f"{DIR}/data")``.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import platform
import re
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
from datasets import Array3D, ClassLabel, Dataset, DatasetDict, Features, List, Value
from huggingface_hub import DatasetCard, DatasetCardData
from tqdm.auto import tqdm

from ..envs.minatar import (
    MINATAR_GAMES,
    MINATAR_SEED_STARTS,
    MINATAR_SETTINGS,
    _resolve_setting,
    episode_seeds,
    make_minatar_env,
    minatar_game_info,
)
from ..evaluation_minatar import decision_seed, t_interval
from ..procedures.mcts import MCTSConfig, MCTSExpert, MCTSRecord, is_single_move
from .maze_dataset import PAPER_BIBTEX

__all__ = [
    "MCTS_COLUMNS",
    "MinAtarDataConfig",
    "build_minatar_examples",
    "generate_minatar_dataset",
    "load_minatar_dataset",
    "mcts_record_from_row",
    "minatar_config_from_card",
    "minatar_dataset_card",
    "minatar_features",
    "minatar_shard_files",
    "save_minatar_dataset",
    "write_minatar_card",
]

MCTS_COLUMNS = ("branch_actions", "branch_visits", "branch_values", "pv_actions", "pv_rewards")
_SHARD = re.compile(r"train-(\d{5})-of-(\d{5})\.parquet")


@dataclass(frozen=True)
class MinAtarDataConfig:
    """What `generate_minatar_dataset` builds; saved in the card so a dataset says how it was made.

    Args:
        game: a MinAtar game (breakout, freeway, asterix, seaquest, space_invaders).
        setting: the expert's game setting, ``train`` (no sticky actions, no difficulty ramp), ``eval``, or a dict of
            sticky_action_prob / difficulty_ramping.
        episodes: expert episodes (on the training seeds 0, 1, ... plus seed_offset).
        max_episode_steps: cap on an episode's length (truncated there).
        seed_offset: first training seed.
        mcts: MCTSConfig fields (num_simulations, max_depth, exploration, rollout_depth, discount, top_k, pv_length,
            seed, ...); missing ones take MCTSConfig's defaults.
        num_workers: worker processes on this machine (the data does not depend on it).
        shard_index: which shard of the episodes this run plays (0-based).
        num_shards: how many shards the episodes are split into (over machines or accelerate processes).
    """

    game: str = "breakout"
    setting: str | dict = "train"
    episodes: int = 20
    max_episode_steps: int = 300
    seed_offset: int = 0
    mcts: dict = dataclasses.field(default_factory=dict)
    num_workers: int = 1
    shard_index: int = 0
    num_shards: int = 1

    def __post_init__(self):
        if self.game not in MINATAR_GAMES:
            raise ValueError(f"game must be one of {MINATAR_GAMES}, got {self.game!r}")
        _resolve_setting(self.setting)  # ValueError / TypeError naming the bad setting
        minimums = {"episodes": 1, "max_episode_steps": 1, "seed_offset": 0, "num_workers": 1, "shard_index": 0,
                    "num_shards": 1}
        for name, low in minimums.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if self.shard_index >= self.num_shards:
            raise ValueError(f"shard_index must be in [0, num_shards={self.num_shards}), got {self.shard_index}")
        if self.num_shards > self.episodes:
            raise ValueError(f"num_shards ({self.num_shards}) must not exceed episodes ({self.episodes}): every shard "
                             f"plays at least one episode")
        episode_seeds("train", self.episodes, self.seed_offset)  # the seeds stay inside the training range
        if not isinstance(self.mcts, dict):
            raise TypeError(f"mcts must be a dict of MCTSConfig fields, got {self.mcts!r}")
        known = {f.name for f in dataclasses.fields(MCTSConfig)}
        unknown = sorted(set(self.mcts) - known)
        if unknown:
            raise ValueError(f"unknown MCTS setting {unknown[0]!r} in mcts; expected some of {sorted(known)}")
        self.mcts_config  # noqa: B018  (MCTSConfig validates the values)

    @property
    def mcts_config(self) -> MCTSConfig:
        return MCTSConfig(**self.mcts)

    @property
    def seeds(self) -> tuple[int, ...]:
        """The training seeds of all episodes (every shard), ``seeds[i]`` for episode ``i``."""
        return episode_seeds("train", self.episodes, self.seed_offset)

    @property
    def shard_episodes(self) -> range:
        """The episode indices of this shard: a contiguous block, so shards in order are all episodes in order."""
        return range(self.episodes * self.shard_index // self.num_shards,
                     self.episodes * (self.shard_index + 1) // self.num_shards)

    @property
    def resolved_setting(self) -> dict:
        return _resolve_setting(self.setting)

    def description(self) -> dict:
        """The fields that determine the data (not num_workers or the shard), MCTS settings in full."""
        fields = asdict(self)
        for name in ("num_workers", "shard_index"):
            fields.pop(name)
        fields["mcts"] = asdict(self.mcts_config)
        return fields


def minatar_features(num_channels: int, action_names) -> Features:
    """Explicit schema; survives Parquet, ``push_to_hub`` and ``load_dataset`` exactly."""
    return Features({
        "game": Value("string"),
        "episode": Value("int32"),
        "step": Value("int32"),
        "seed": Value("int64"),
        "obs": Array3D(shape=(10, 10, num_channels), dtype="bool"),  # (10, 10, C)
        **{name: List(Value("int8")) for name in MCTS_COLUMNS},  # (k,) branches, (d,) principal variation
        "action": ClassLabel(names=list(action_names)),
        "reward": Value("float32"),
        "return_so_far": Value("float32"),
        "episode_return": Value("float32"),
        "terminated": Value("bool"),
        "truncated": Value("bool"),
    })


def mcts_record_from_row(row: dict) -> MCTSRecord:
    """The `MCTSRecord` stored in a dataset row (``dataset[i]``, any format)."""
    return MCTSRecord(**{name: np.asarray(row[name], dtype=np.int8) for name in MCTS_COLUMNS},
                      action=int(row["action"]))


# ------------------------------------------------------------------------------------------------ generation
def _episode_rows(config: MinAtarDataConfig, episode: int) -> list[dict]:
    """Play episode ``episode`` with the expert; one row per decision (module docstring, "How the data is made")."""
    seed = config.seeds[episode]
    mcts = config.mcts_config
    env = make_minatar_env(config.game, config.setting, max_episode_steps=config.max_episode_steps)
    obs, _ = env.reset(seed=seed)
    rows, total, terminated, truncated = [], 0.0, False, False
    while not (terminated or truncated):
        step = len(rows)
        record = MCTSExpert(dataclasses.replace(mcts, seed=decision_seed(mcts.seed, seed, step)))(env)
        next_obs, reward, terminated, truncated, _ = env.step(record.action)
        rows.append({"game": config.game, "episode": episode, "step": step, "seed": seed,
                     "obs": np.array(obs, dtype=bool),
                     **{name: getattr(record, name) for name in MCTS_COLUMNS},
                     "action": record.action, "reward": float(reward), "return_so_far": total,
                     "terminated": False, "truncated": False})
        total += float(reward)
        obs = next_obs
    env.close()
    rows[-1]["terminated"], rows[-1]["truncated"] = bool(terminated), bool(truncated and not terminated)
    for row in rows:
        row["episode_return"] = total
    return rows


def _pool_context():
    # fork is fast (no re-import) and safe here: workers only run numpy and minatar, never torch. Elsewhere
    # (macOS, Windows) fork is unsafe or missing: spawn.
    return multiprocessing.get_context("fork" if sys.platform.startswith("linux") else "spawn")


def generate_minatar_dataset(config: MinAtarDataConfig | None = None, progress: bool = True,
                             **kwargs) -> DatasetDict:
    """Play this shard's expert episodes (in ``config.num_workers`` processes) and return them as a dataset.

    Args:
        config: a `MinAtarDataConfig`, or its fields as keyword arguments.
        progress: show a progress bar over episodes.

    Returns:
        ``DatasetDict`` with a ``train`` split: the rows of the episodes `MinAtarDataConfig.shard_episodes`, in
        episode order (module docstring).
    """
    config = config or MinAtarDataConfig(**kwargs)
    info = minatar_game_info(config.game)
    episodes = list(config.shard_episodes)
    per_episode: dict[int, list[dict]] = {}
    bar = tqdm(total=len(episodes), desc=f"{config.game} expert episodes", unit="episode", disable=not progress)

    def done(episode: int, rows: list[dict]) -> None:
        per_episode[episode] = rows
        bar.update()
        returns = [r[0]["episode_return"] for r in per_episode.values()]
        bar.set_postfix(mean_return=f"{np.mean(returns):.2f}", decisions=sum(map(len, per_episode.values())))

    workers = min(config.num_workers, len(episodes))
    if workers <= 1:
        for episode in episodes:
            done(episode, _episode_rows(config, episode))
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
            futures = {pool.submit(_episode_rows, config, episode): episode for episode in episodes}
            for future in as_completed(futures):
                done(futures[future], future.result())
    bar.close()
    rows = [row for episode in episodes for row in per_episode[episode]]
    features = minatar_features(info.num_channels, info.action_names)
    return DatasetDict({"train": Dataset.from_list(rows, features=features, split=datasets.Split.TRAIN)})


# ------------------------------------------------------------------------------------------------------ disk
def _shard_name(index: int, count: int) -> str:
    return f"train-{index:05d}-of-{count:05d}.parquet"


def minatar_shard_files(path) -> tuple[list[Path], int | None]:
    """The shard files in ``path/data`` in shard order, and the shard count their names announce (None if none)."""
    data_dir = Path(path) / "data"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{path} holds no data/ folder; expected a directory written by save_minatar_dataset")
    found = {}
    for file in data_dir.glob("train-*.parquet"):
        match = _SHARD.fullmatch(file.name)
        if match is None:
            raise ValueError(f"unexpected file {file.name!r} in {data_dir}; shards are named "
                             f"train-KKKKK-of-NNNNN.parquet")
        found[(int(match[1]), int(match[2]))] = file
    counts = {n for _, n in found}
    if len(counts) > 1:
        raise ValueError(f"{data_dir} mixes shards of different splits into {sorted(counts)} shards")
    return [found[k] for k in sorted(found)], (counts.pop() if counts else None)


def save_minatar_dataset(dataset: DatasetDict, out_dir, config: MinAtarDataConfig, write_card: bool = True) -> Path:
    """Write this shard (``data/train-KKKKK-of-NNNNN.parquet``, atomically); then, with ``write_card`` and once every
    shard of the config is in ``out_dir``, the dataset card from all of them (`write_minatar_card`)."""
    out_dir = Path(out_dir)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)
    name = _shard_name(config.shard_index, config.num_shards)
    tmp = out_dir / "data" / f".{name}.tmp"
    dataset["train"].to_parquet(str(tmp))
    tmp.replace(out_dir / "data" / name)  # atomic: no half-written shard
    files, _ = minatar_shard_files(out_dir)
    if write_card and len(files) == config.num_shards:
        write_minatar_card(out_dir, config)
    return out_dir


def load_minatar_dataset(path) -> DatasetDict:
    """Load a dataset written by `save_minatar_dataset`: every shard, in shard order (features restored from the
    Parquet schema). Raises FileNotFoundError naming the missing shards of an incomplete set."""
    files, count = minatar_shard_files(path)
    if not files:
        raise FileNotFoundError(f"no Parquet shards in {Path(path) / 'data'}")
    missing = sorted(set(range(count)) - {int(_SHARD.fullmatch(f.name)[1]) for f in files})
    if missing:
        raise FileNotFoundError(f"{path} lacks shard(s) {missing} of {count}: copy every machine's data/*.parquet "
                                f"into one folder first")
    return datasets.load_dataset("parquet", data_files={"train": [str(f) for f in files]})


def minatar_config_from_card(path) -> MinAtarDataConfig:
    """The `MinAtarDataConfig` a dataset was made with, read from the JSON block of its card (README.md)."""
    card = Path(path) / "README.md"
    if not card.is_file():
        raise FileNotFoundError(f"{path} holds no README.md dataset card")
    match = re.search(r"```json\n(.*?)\n```", card.read_text(encoding="utf-8"), flags=re.DOTALL)
    if match is None:
        raise ValueError(f"the card {card} holds no ```json block with the generation config")
    return MinAtarDataConfig(**{**json.loads(match[1]), "shard_index": 0})


def write_minatar_card(path, config: MinAtarDataConfig) -> Path:
    """(Re)write ``path/README.md`` from every shard in ``path/data`` (e.g. after collecting the shards of several
    machines into one folder)."""
    dataset = load_minatar_dataset(path)
    minatar_dataset_card(dataset, config).save(Path(path) / "README.md")
    return Path(path) / "README.md"


def minatar_dataset_card(dataset: DatasetDict, config: MinAtarDataConfig) -> DatasetCard:
    """A dataset card: how the data was made (game, setting, MCTS settings), and what it holds (counts, returns)."""
    train = dataset["train"]
    info = minatar_game_info(config.game)
    table = train.select_columns(["episode", "seed", "episode_return", "truncated"]).to_pandas()
    per_episode = table.groupby("episode").agg(seed=("seed", "first"), ret=("episode_return", "first"),
                                               length=("seed", "size"), truncated=("truncated", "any"))
    stats = t_interval(per_episode["ret"].to_numpy())
    ci = "n/a (one episode)" if stats["n"] == 1 else f"± {stats['half_width']:.2f}"
    setting = config.resolved_setting
    setting_name = config.setting if isinstance(config.setting, str) else "custom"
    seeds = per_episode["seed"].to_numpy()
    description = config.description()
    data = DatasetCardData(
        license="apache-2.0",
        task_categories=["reinforcement-learning"],
        tags=["procedure-cloning", "imitation-learning", "minatar", "mcts", config.game, "pc_transformers"],
        pretty_name=f"MCTS expert in MinAtar {config.game} ({setting_name} setting)",
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
    )
    mcts = description["mcts"]
    ramping = "on" if setting["difficulty_ramping"] else "off"
    single = sum(is_single_move(visits) for visits in train["branch_visits"])
    counts = (f"| {len(per_episode)} | {len(train)} | {stats['mean']:.2f} | {ci} | {per_episode['length'].mean():.1f} "
              f"| {int(per_episode['truncated'].sum())} | {single} ({100 * single / max(len(train), 1):.1f}%) |")
    content = f"""---
{data.to_yaml()}
---

# {data.pretty_name}

Expert demonstrations for **procedure cloning** (Yang et al., NeurIPS 2022), generated with
[pc_transformers](https://github.com/pc-transformers/pc_transformers). Each row is one decision of a Monte Carlo tree
search (UCT) expert playing MinAtar `{config.game}` (`{info.env_id}`): the observation, a summary of the expert's
search tree (its procedure, format `mcts`), its action, and the reward that followed.

## How it was made

```json
{json.dumps(description, indent=2)}
```

- Game: `{info.env_id}` (minimal action set {", ".join(f"{i} = {n}" for i, n in enumerate(info.action_names))};
  observations `(10, 10, {info.num_channels})` bool).
- Setting `{setting_name}`: sticky-action probability {setting["sticky_action_prob"]}, difficulty ramping {ramping}.
- {config.episodes} episodes on training seeds {seeds.min()}…{seeds.max()} (`episode_seeds("train", ...)`; validation
  seeds start at {MINATAR_SEED_STARTS["validation"]:,}, evaluation seeds at {MINATAR_SEED_STARTS["eval"]:,}), each
  capped at {config.max_episode_steps} steps; generated in {config.num_shards} shard(s).
- Expert: UCT with a simulator snapshot per node, {mcts["num_simulations"]} simulations per decision, depth
  {mcts["max_depth"]}, exploration {mcts["exploration"]}, random rollouts of {mcts["rollout_depth"]} steps
  (hold probability {mcts["rollout_hold"]}), discount {mcts["discount"]}; chance events are sampled, never read from
  the real game. Decision `step` of the episode with seed `seed` is planned with the planner seed
  `decision_seed({mcts["seed"]}, seed, step)` (`pc_transformers.evaluation_minatar`), so any row can be recomputed.
- Procedure: the {mcts["top_k"]} best root branches (action, visit-share bucket, value bucket) and up to
  {mcts["pv_length"]} steps of the principal variation (action, predicted reward); token grammar in
  `pc_transformers/tokenization_pc.py`, record in `pc_transformers/procedures/mcts.py`.
- Generated with datasets {datasets.__version__}, numpy {np.__version__}, Python {platform.python_version()}.

## Contents

| episodes | decisions (rows) | expert mean return | 95% CI (Student t) | mean episode length | truncated episodes | single-move decisions |
|---|---|---|---|---|---|---|
{counts}

Returns are undiscounted, capped by the episode length limit. In a single-move decision the search found every
action to be the same move (`MCTSRecord.single_move`: each branch holds all of the root's visits), e.g. while
Freeway's hidden move timer runs; the recorded action is then the game's previous one.

Columns: `game`, `episode` (index), `step`, `seed` (the episode's reset seed), `obs` (bool,
10×10×{info.num_channels}), the search summary `branch_actions`, `branch_visits`, `branch_values` (the root's best
branches, best first), `pv_actions`, `pv_rewards` (the principal variation), `action` (index in the minimal action
set, equal to `branch_actions[0]`), `reward` (after the action), `return_so_far` (before it), `episode_return`,
`terminated`, `truncated` (on the episode's last row).

## Citation

{PAPER_BIBTEX}
"""
    return DatasetCard(content)


# -------------------------------------------------------------------------------------------- model inputs
def minatar_max_reward(dataset: Dataset) -> int:
    """The largest predicted reward in the records (at least 1): the tokenizer needs ``r0 … r<max>``."""
    return max([1, *(max(r) for r in dataset["pv_rewards"] if len(r))])


def minatar_procedure_length(dataset: Dataset, branch_order: str = "visits") -> int:
    """The most procedure tokens of a record: ``3·branches + 1 + 2·pv_steps`` ranked (``branch_order="visits"``),
    ``2·actions + 1 + 2·pv_steps`` in action order (`MCTSRecord.in_action_order`)."""
    per_branch = {"visits": 3, "action": 2}
    if branch_order not in per_branch:
        raise ValueError(f"branch_order must be one of {tuple(per_branch)}, got {branch_order!r}")
    if branch_order == "action":
        branches = dataset.features["action"].num_classes
        return 2 * branches + 1 + 2 * max(len(p) for p in dataset["pv_actions"])
    return max(3 * len(b) + 1 + 2 * len(p) for b, p in zip(dataset["branch_actions"], dataset["pv_actions"]))


def build_minatar_examples(dataset: Dataset, tokenizer, config, num_proc: int | None = None) -> Dataset:
    """Tokenized training examples (``input_ids``, ``labels``) for ``config``'s objective: ``<s> state <proc> MCTS
    tokens <act> a </s>`` (pc, aux_bc; the branches in ``config.branch_order``) or ``<s> state <act> a </s>`` (bc);
    see `pc_transformers.data.collator`."""
    channels = dataset.features["obs"].shape[-1]
    if channels != config.num_channels:
        raise ValueError(f"the dataset's observations have {channels} channels but the model is configured for "
                         f"num_channels={config.num_channels}")
    actions = dataset.features["action"].num_classes
    if actions != config.num_actions:
        raise ValueError(f"the dataset's game has {actions} actions but the model is configured for "
                         f"{config.num_actions}")

    def expand(batch):
        ids = []
        for values in zip(*batch.values()):
            row = dict(zip(batch, values))
            if config.objective == "bc":
                ids.append(tokenizer.encode_minatar_example(row["obs"], action=int(row["action"])))
            else:
                record = mcts_record_from_row(row)
                if config.branch_order == "action":
                    record = record.in_action_order(config.num_actions)
                ids.append(tokenizer.encode_minatar_example(row["obs"], record))
        return {"input_ids": ids, "labels": [list(i) for i in ids]}

    return dataset.with_format("numpy").map(
        expand, batched=True, batch_size=256, remove_columns=dataset.column_names, num_proc=num_proc,
        desc=f"tokenizing ({config.objective})",
    ).with_format(None)


# ----------------------------------------------------------------------------------------- command line
def add_generate_arguments(parser) -> None:
    """The options of ``pc-transformers generate minatar`` and ``recipes/generate_minatar.py`` (one definition)."""
    mcts = MCTSConfig()
    parser.add_argument("--game", default="breakout", choices=MINATAR_GAMES)
    parser.add_argument("--setting", default="train", choices=list(MINATAR_SETTINGS),
                        help="train: no sticky actions, no ramping; eval: sticky 0.1, ramping on")
    parser.add_argument("--episodes", type=int, default=20, help="expert episodes (training seeds)")
    parser.add_argument("--max-steps", type=int, default=300, help="cap on an episode's length")
    parser.add_argument("--seed-offset", type=int, default=0, help="first training seed")
    parser.add_argument("--num-workers", type=int, default=1, help="worker processes (the data does not depend on it)")
    parser.add_argument("--shard-index", type=int, default=0, help="shard of the episodes to play (0-based)")
    parser.add_argument("--num-shards", type=int, default=1, help="shards the episodes are split into")
    parser.add_argument("--simulations", type=int, default=mcts.num_simulations, help="MCTS simulations per decision")
    parser.add_argument("--max-depth", type=int, default=mcts.max_depth, help="MCTS tree depth cap")
    parser.add_argument("--exploration", type=float, default=mcts.exploration, help="UCB1 constant")
    parser.add_argument("--rollout-depth", type=int, default=mcts.rollout_depth, help="random rollout steps (0: none)")
    parser.add_argument("--rollout-hold", type=float, default=mcts.rollout_hold,
                        help="probability that a rollout step repeats the previous action")
    parser.add_argument("--discount", type=float, default=mcts.discount)
    parser.add_argument("--top-k", type=int, default=mcts.top_k, help="root branches in the procedure")
    parser.add_argument("--pv-length", type=int, default=mcts.pv_length, help="principal-variation steps")
    parser.add_argument("--mcts-seed", type=int, default=mcts.seed, help="base seed of the planner")
    parser.add_argument("--out", required=True, help="output directory")


def config_from_arguments(args, **overrides) -> MinAtarDataConfig:
    """The `MinAtarDataConfig` of parsed `add_generate_arguments` options (``overrides`` replace fields)."""
    mcts = {"num_simulations": args.simulations, "max_depth": args.max_depth, "exploration": args.exploration,
            "rollout_depth": args.rollout_depth, "rollout_hold": args.rollout_hold, "discount": args.discount,
            "top_k": args.top_k, "pv_length": args.pv_length, "seed": args.mcts_seed}
    fields = {"game": args.game, "setting": args.setting, "episodes": args.episodes,
              "max_episode_steps": args.max_steps, "seed_offset": args.seed_offset, "mcts": mcts,
              "num_workers": args.num_workers, "shard_index": args.shard_index, "num_shards": args.num_shards}
    return MinAtarDataConfig(**{**fields, **overrides})
