"""PCPolicy: a trained model and its tokenizer, acting in gymnasium maze environments.

``policy.act(obs)`` takes one observation ``(3, H, W)`` or a batch ``(B, 3, H, W)`` (channels wall, goal, agent, as
`MazeEnv` returns them) and returns the action(s) and one info dict per environment:

* ``procedure``: the generated procedure decoded back into a record (`BFSMapsRecord`, `BFSTraceRecord`) when
  ``return_procedure=True`` and it parses; otherwise None.
* ``fallback``: True when the model gave no valid action (the procedure ran past ``max_procedure_steps``, stalled, or
  did not parse). The action is then drawn uniformly at random from the policy's seeded generator, as the paper's code
  does when the agent's cell is never labelled; the episode never crashes.
* ``forward_passes``: model passes spent on this decision (0 when the procedure cache answered).
* ``cached``: True when the procedure cache answered.

**Procedure cache** (grid PC only, on by default). Goal-rooted BFS maps do not depend on the agent, so while the
maze is unchanged a policy may reuse the maps it generated earlier in the episode: if the agent's new cell is already
labelled in the last generated map, the action is the model's readout there, and no pass is needed. This is the
episode-level analogue of the KV cache. Call ``reset()`` (or pass ``reset_mask``) at episode boundaries.

**MinAtar** (`MinAtarPolicy`; ``PCPolicy.from_pretrained`` returns one for a MinAtar checkpoint): ``policy.act(obs)``
takes one ``(10, 10, C)`` bool observation or a batch ``(B, 10, 10, C)`` (as ``MinAtar/<Game>-v1`` returns them) and
returns the index of the action in the game's minimal action set — never anything else: the action after ``<act>`` is
chosen among the config's ``action_token_ids`` only. PC decodes the ``"mcts"`` procedure token by token with the KV
cache (`MinAtarPolicy.decode`: greedy, the tokens of ``GenerationMixin.generate`` with the same constraint, in fewer
passes), constrained by the procedure grammar and the record's rules so that the sequence is always a valid
`MCTSRecord` (the action is then its first branch's, as in every expert record) and always closes with
``<act> a_k </s>`` within ``max_procedure_steps`` procedure tokens; BC and auxiliary BC prompt ``<s> state <act>`` and
read the action in one pass. Unless the procedure is asked for (``return_procedure=True``, or
``PolicyConfig.full_procedure``), PC stops decoding as soon as the grammar has fixed the action: ranked records
(``branch_order="visits"``) after their first token, records in action order after every action's visit and value
tokens and the first step of the principal variation; the rest of the procedure cannot change the action.
``forward_passes`` counts the passes until the row's action was fixed (with the whole procedure, until its last
token the grammar left open). The infos hold the same keys as for mazes, plus
``procedure_error``: why the generated procedure did not make a record (``return_procedure=True`` only), else None.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, DynamicCache

from .configuration_pc import PCConfig
from .grid import NUM_ACTIONS
from .modeling_pc import UNREACHED_VALUE, PCForProcedureCloning
from .procedures import BFSMapsRecord
from .tokenization_pc import (
    MCTS_VALUE_TOKENS,
    MCTS_VISIT_TOKENS,
    PCTokenizer,
    mcts_reward_tokens,
)

POLICY_CONFIG_NAME = "policy_config.json"


@dataclass
class PolicyConfig:
    """Args:
    procedure_cache: reuse generated maps within an episode (grid PC only).
    max_procedure_steps: override the model's limit (None: the config's).
    seed: seeds the fallback actions.
    full_procedure: MinAtar PC: decode the whole procedure on every decision even when it is not returned. By default
        decoding stops as soon as the grammar has fixed the action (`MinAtarPolicy.act`); the action is the same
        either way, so this only makes acting cost what a full procedure costs (for timing comparisons).
    """

    procedure_cache: bool = True
    max_procedure_steps: int | None = None
    seed: int = 0
    full_procedure: bool = False


@dataclass
class _CacheEntry:
    key: bytes
    last_map: np.ndarray  # (H, W) int8, the last generated map
    action_map: np.ndarray  # (H, W) the model's action readout at each cell of that map


class PCPolicy:
    """Wraps `PCForProcedureCloning` and `PCTokenizer` for gymnasium maze environments; batched over environments.
    For MinAtar use `MinAtarPolicy` (``PCPolicy.from_pretrained`` picks the class from the checkpoint's domain)."""

    domain = "maze"

    def __init__(self, model: PCForProcedureCloning, tokenizer: PCTokenizer, config: PolicyConfig | None = None,
                 **kwargs):
        domains = {"model": getattr(model.config, "domain", "maze"), "tokenizer": tokenizer.domain}
        for name, domain in domains.items():
            if domain != self.domain:
                raise ValueError(f"{type(self).__name__} acts in {self.domain} environments, but the {name}'s domain "
                                 f"is {domain!r}; use {_POLICY_CLASSES[domain].__name__}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.config = config or PolicyConfig(**kwargs)
        self.rng = np.random.default_rng(self.config.seed)
        self._cache: dict[int, _CacheEntry] = {}

    @property
    def uses_procedure_cache(self) -> bool:
        """The cache applies to grid PC only: BC reads one pass, and text procedures depend on the agent."""
        cfg: PCConfig = self.model.config
        return self.config.procedure_cache and cfg.is_grid and cfg.objective == "pc"

    # ---------------------------------------------------------------------------------------------- persistence
    def save_pretrained(self, path) -> None:
        path = Path(path)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        (path / POLICY_CONFIG_NAME).write_text(json.dumps(asdict(self.config), indent=2))

    @classmethod
    def from_pretrained(cls, path, **kwargs) -> PCPolicy:
        """Load model, tokenizer and (if saved) the policy config; ``kwargs`` override policy-config fields.

        ``PCPolicy.from_pretrained`` returns the policy class of the checkpoint's domain (`MinAtarPolicy` for
        MinAtar); a subclass loads as itself."""
        model = AutoModelForCausalLM.from_pretrained(path)
        tokenizer = PCTokenizer.from_pretrained(path)
        config_file = Path(path) / POLICY_CONFIG_NAME
        fields = json.loads(config_file.read_text()) if config_file.is_file() else {}
        policy_class = _POLICY_CLASSES[getattr(model.config, "domain", "maze")] if cls is PCPolicy else cls
        return policy_class(model, tokenizer, PolicyConfig(**{**fields, **kwargs}))

    def reset(self, index: int | None = None) -> None:
        """Forget the procedure cache (of one environment, or all)."""
        if index is None:
            self._cache.clear()
        else:
            self._cache.pop(index, None)

    # ----------------------------------------------------------------------------------------------------- acting
    @torch.inference_mode()
    def act(self, obs, return_procedure: bool = False, env_ids=None):
        """Action(s) for one observation ``(3, H, W)`` or a batch ``(B, 3, H, W)``; returns ``(action, info)``.

        Args:
            return_procedure: also decode the generated procedure into a record (``info["procedure"]``).
            env_ids: one key per observation for the procedure cache (default: the batch index), so a caller may
                pass any subset of its environments.
        """
        obs = np.asarray(obs)
        single = obs.ndim == 3
        batch = obs[None] if single else obs
        cfg: PCConfig = self.model.config
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"observations must be (3, H, W) or (B, 3, H, W) grids, got shape {obs.shape}")
        if batch.shape[2:] != (cfg.grid_size, cfg.grid_size):
            raise ValueError(f"observation grid {batch.shape[2:]} does not match the model's grid_size="
                             f"{cfg.grid_size}")
        states = [self._read_obs(o) for o in batch]
        keys = list(range(len(states))) if env_ids is None else [int(k) for k in env_ids]
        if len(keys) != len(states):
            raise ValueError(f"env_ids has {len(keys)} entries for {len(states)} observations")
        actions = np.zeros(len(states), dtype=np.int64)
        infos = [dict(procedure=None, fallback=False, forward_passes=0, cached=False) for _ in states]

        todo = []
        for i, (walls, goal, agent) in enumerate(states):
            entry = self._cache.get(keys[i]) if self.uses_procedure_cache else None
            if entry is not None and entry.key == _maze_key(walls, goal) and entry.last_map[agent] < UNREACHED_VALUE:
                actions[i] = entry.action_map[agent]
                infos[i]["cached"] = True
            else:
                todo.append(i)
        if todo:
            if cfg.is_grid:
                self._act_grid(states, todo, actions, infos, return_procedure, keys)
            else:
                self._act_text(states, todo, actions, infos, return_procedure)
        for i in range(len(states)):
            if not 0 <= actions[i] < NUM_ACTIONS:
                actions[i] = self.rng.integers(NUM_ACTIONS)
                infos[i]["fallback"] = True
        return (int(actions[0]), infos[0]) if single else (actions, infos)

    def _prompt(self, walls, goal, agent) -> list[str]:
        cfg: PCConfig = self.model.config
        tail = "<proc>" if cfg.objective == "pc" else "<act>"
        return ["<s>", *self.tokenizer.state_tokens(walls, goal, agent), tail]

    def _prompts(self, states, todo) -> torch.Tensor:
        ids = [self.tokenizer.strict_ids(self._prompt(*states[i])) for i in todo]
        return torch.tensor(ids, dtype=torch.long, device=self.model.device)

    def _act_grid(self, states, todo, actions, infos, return_procedure, keys):
        out = self.model.generate_grid(self._prompts(states, todo),
                                       max_procedure_steps=self.config.max_procedure_steps)
        for j, i in enumerate(todo):
            walls, goal, agent = states[i]
            action = int(out.actions[j]) if bool(out.valid[j]) else -1
            actions[i] = action
            # Passes this environment needed: the prompt, then one per map fed (the batch may have run longer).
            infos[i]["forward_passes"] = 1 if out.maps is None else int(out.num_maps[j]) + 1
            if out.maps is None:  # BC-style: no procedure
                continue
            maps = out.maps[j, : int(out.num_maps[j])].cpu().numpy()
            if self.uses_procedure_cache and action >= 0:
                self._cache[keys[i]] = _CacheEntry(_maze_key(walls, goal), maps[-1], out.action_map[j].cpu().numpy())
            if return_procedure and action >= 0:
                infos[i]["procedure"] = BFSMapsRecord(maps=maps, action=action)

    def _act_text(self, states, todo, actions, infos, return_procedure):
        cfg: PCConfig = self.model.config
        prompts = self._prompts(states, todo)
        steps = cfg.max_procedure_steps if self.config.max_procedure_steps is None else self.config.max_procedure_steps
        budget = steps + 3 if cfg.objective == "pc" else 2
        act, eos = cfg.act_token_id, cfg.eos_token_id
        anything, action_ids = list(range(cfg.vocab_size)), list(cfg.action_token_ids)

        def grammar(batch_id, ids):
            # The action loss is taken over the action tokens only and nothing trains "</s>", so free greedy decoding
            # after <act> may pick any token and never close the sequence: force "<act> a_k </s>" by the grammar.
            if ids[-1] == act:
                return action_ids
            if len(ids) > 1 and ids[-2] == act:
                return [eos]
            return anything

        sequences = self.model.generate(
            prompts, attention_mask=torch.ones_like(prompts), max_new_tokens=budget, do_sample=False,
            eos_token_id=eos, pad_token_id=cfg.pad_token_id, prefix_allowed_tokens_fn=grammar, use_cache=True,
        )
        for j, i in enumerate(todo):
            walls = states[i][0]
            infos[i]["forward_passes"] = sequences.shape[1] - prompts.shape[1]
            try:
                parsed = self.tokenizer.parse(sequences[j].tolist(), grid_shape=walls.shape)
            except ValueError:
                actions[i] = -1
                continue
            actions[i] = parsed.action
            if return_procedure:
                infos[i]["procedure"] = parsed.record

    @staticmethod
    def _read_obs(obs: np.ndarray):
        walls = obs[0].astype(bool)
        goals, agents = np.argwhere(obs[1]), np.argwhere(obs[2])
        if len(goals) != 1 or len(agents) != 1:
            raise ValueError(f"an observation needs exactly one goal and one agent cell, got {len(goals)} and "
                             f"{len(agents)}")
        return walls, tuple(int(c) for c in goals[0]), tuple(int(c) for c in agents[0])


def _maze_key(walls: np.ndarray, goal) -> bytes:
    return np.packbits(walls).tobytes() + bytes(goal)


class MinAtarPolicy(PCPolicy):
    """Wraps a MinAtar `PCForProcedureCloning` (``config.domain == "minatar"``) and its tokenizer; batched over
    environments. Identical to `PCPolicy` except: observations are ``(10, 10, C)`` bool arrays, actions are indices in
    the game's minimal action set, and there is no procedure cache (``env_ids`` is accepted and ignored, so evaluation
    loops can treat both alike)."""

    domain = "minatar"

    @torch.inference_mode()
    def act(self, obs, return_procedure: bool = False, env_ids=None):
        """Action(s) for one observation ``(10, 10, C)`` or a batch ``(B, 10, 10, C)``; returns ``(action, info)`` or
        ``(actions (B,) int64, infos)``.

        Args:
            return_procedure: decode the whole procedure and parse it into a record (``info["procedure"]``, an
                `MCTSRecord`); if it does not parse, ``info["procedure_error"]`` says why and the action stands.
                Without it decoding stops once the action is fixed (unless ``PolicyConfig.full_procedure``); the
                action is the same either way.
            env_ids: ignored (no procedure cache); its length must match the batch.
        """
        cfg: PCConfig = self.model.config
        obs = np.asarray(obs)
        single = obs.ndim == 3
        batch = obs[None] if single else obs
        expected = (cfg.grid_size, cfg.grid_size, cfg.num_channels)
        if batch.ndim != 4 or batch.shape[1:] != expected:
            raise ValueError(f"observations must be {expected} or (B, {', '.join(map(str, expected))}) for this "
                             f"model (num_channels={cfg.num_channels}), got shape {obs.shape}")
        if env_ids is not None and len(env_ids) != len(batch):
            raise ValueError(f"env_ids has {len(env_ids)} entries for {len(batch)} observations")
        tail = "<proc>" if cfg.objective == "pc" else "<act>"
        prompts = torch.tensor(
            [self.tokenizer.strict_ids(["<s>", *self.tokenizer.minatar_state_tokens(o), tail]) for o in batch],
            dtype=torch.long, device=self.model.device,
        )  # (B, N + 2): every prompt has the same length, so no padding
        steps = cfg.max_procedure_steps if self.config.max_procedure_steps is None else self.config.max_procedure_steps
        grammar = _MCTSGrammar(self.tokenizer, cfg, prompts.shape[1], steps)
        whole = return_procedure or self.config.full_procedure
        sequences, passes = self.decode(prompts, grammar, stop_at_action=not whole)
        actions = np.full(len(batch), -1, dtype=np.int64)
        infos = [{"procedure": None, "procedure_error": None, "fallback": False, "forward_passes": 0, "cached": False}
                 for _ in batch]
        for j, row in enumerate(sequences.tolist()):
            new = row[prompts.shape[1] :]
            end = new.index(cfg.eos_token_id) + 1 if cfg.eos_token_id in new else len(new)
            infos[j]["forward_passes"] = passes[j]
            sequence = row[: prompts.shape[1] + end]
            tail = sequence[prompts.shape[1] - 1 :]  # the prompt's last token (<proc>, or BC's <act>), then new ones
            act_at = prompts.shape[1] - 1 + tail.index(cfg.act_token_id) if cfg.act_token_id in tail else -1
            # The token after <act>, or, when decoding stopped at the decision, the action the grammar has fixed.
            token = sequence[act_at + 1] if 0 <= act_at < len(sequence) - 1 else grammar.action_of(sequence)
            if token in cfg.action_token_ids:
                actions[j] = cfg.action_token_ids.index(token)
            if return_procedure and cfg.objective == "pc" and actions[j] >= 0:
                try:
                    infos[j]["procedure"] = self.tokenizer.parse_minatar(sequence, cfg.num_channels).record
                except (ValueError, ImportError) as error:
                    infos[j]["procedure_error"] = f"{type(error).__name__}: {error}"
        for j in range(len(batch)):
            if actions[j] < 0:  # no action came out (cannot happen under the grammar; kept as a safety net)
                actions[j] = self.rng.integers(cfg.num_actions)
                infos[j]["fallback"] = True
        return (int(actions[0]), infos[0]) if single else (actions, infos)

    @torch.no_grad()
    def decode(self, prompts: torch.Tensor, grammar, stop_at_action: bool = False) -> tuple[torch.Tensor, list[int]]:
        """Greedy decoding of ``prompts`` under ``grammar`` with a `DynamicCache`; returns the sequences and, per row,
        the forward passes the batch ran until the last token the grammar left open in that row (what follows it,
        ``<act>``'s action and ``</s>``, is forced).

        With ``stop_at_action`` decoding ends as soon as the grammar has fixed every row's action
        (``grammar.action_of``): under ranked branches that is the first procedure token, in action order the first
        step of the principal variation, after every action's visit and value tokens. What would follow cannot change
        the action; the rows are returned as far as they got (no ``<act>``, no ``</s>``) and the passes count to the
        decision. `act` does this unless the procedure is wanted.

        The sequences are token for token those of ``model.generate(prompts, do_sample=False,
        prefix_allowed_tokens_fn=grammar, eos_token_id=…, pad_token_id=…)`` (tests/test_minatar_model.py checks it),
        with fewer passes: a token the grammar forces in every row of the batch (``<act>``'s action, ``</s>``, the first
        step of the principal variation, …) needs no logits, so it is appended without a pass of its own and fed with
        the next one; once every row has its action, the forced rest (``a_k </s>``, padding) is appended and no pass
        runs at all. Each pass is the model's own forward with the cache; nothing else of `generate` (logits processors,
        stopping criteria, input preparation) runs per token, which at batch 1 was about a third of a decision's time.

        Args:
            prompts: ``(B, L)`` prompts of one length (``<s> state <proc>`` or ``… <act>``).
            grammar: a ``prefix_allowed_tokens_fn(batch_id, ids) -> allowed ids`` that also takes ``ids`` as a list,
                with a ``max_new_tokens`` attribute, as `act` builds it for the model's objective and
                ``branch_order``.
        """
        model, eos = self.model, self.model.config.eos_token_id
        start = prompts.shape[1]
        cache = DynamicCache(config=model.config)
        rows = prompts.tolist()
        pending = prompts  # tokens appended but not yet fed to the model
        state_ids = model.state_input_ids(prompts) if model.config.state_encoder_size else None
        passes, total = [0] * len(rows), 0
        for _ in range(grammar.max_new_tokens):
            if all(eos in row[start:] for row in rows):
                break
            if stop_at_action and all(grammar.action_of(row) is not None for row in rows):
                break
            allowed = [grammar(j, row) for j, row in enumerate(rows)]
            if all(len(a) == 1 for a in allowed):
                chosen = [a[0] for a in allowed]
            else:
                scores = model(pending, past_key_values=cache, use_cache=True,
                               state_input_ids=state_ids).logits[:, -1].float()
                total += 1
                mask = torch.full_like(scores, -math.inf)
                for j, a in enumerate(allowed):
                    mask[j, a] = 0
                chosen = (scores + mask).argmax(-1).tolist()
                pending = pending[:, :0]
            for j, token in enumerate(chosen):
                rows[j].append(token)
                if len(allowed[j]) > 1:
                    passes[j] = total
            pending = torch.cat([pending, torch.tensor(chosen, device=pending.device)[:, None]], dim=1)
        return torch.tensor(rows, device=prompts.device), passes


class _MCTSGrammar:
    """``prefix_allowed_tokens_fn`` for MinAtar decoding: the tokens allowed next, so that every generated sequence is
    a valid `MCTSRecord` followed by its action.

    After a ``<proc>`` prompt, with ``config.branch_order="visits"`` (ranked records): ``(a n q)+ <path> (a r)+ <act> a
    </s>`` (grammar: ``tokenization_pc.py``) plus the record's rules: every action among the game's
    ``action_token_ids``; root actions distinct; visit buckets non-increasing; the first step's action, and the action
    after ``<act>``, equal to the first branch's (the expert's action is its most-visited branch,
    ``pc_transformers/procedures/mcts.py``). A new root branch starts only if it, ``<path>`` and one step still fit in
    ``max_procedure_steps`` (the first branch and the first step always come), a new step only if it fits, so every
    sequence closes. With ``branch_order="action"``: ``(n q)`` once per action of the game, ``<path>``, then the
    first step's action chosen among the actions with the largest visit bucket, the rest as above: the action is
    chosen after the statistics of every action. After an ``<act>`` prompt (BC, auxiliary BC): ``a </s>``, the action
    free among the game's.
    """

    def __init__(self, tokenizer: PCTokenizer, config: PCConfig, prompt_length: int, max_procedure_steps: int):
        ids = tokenizer.convert_tokens_to_ids
        self.prompt_length = prompt_length
        self.budget = max_procedure_steps
        self.path, self.act = config.path_token_id, config.act_token_id
        self.eos, self.pad = config.eos_token_id, config.pad_token_id
        self.actions = list(config.action_token_ids)
        self.visits = ids(list(MCTS_VISIT_TOKENS))  # n0 … n9, in bucket order
        self.values = ids(list(MCTS_VALUE_TOKENS))
        self.rewards = ids(list(mcts_reward_tokens(tokenizer.max_reward)))
        self.in_action_order = config.branch_order == "action"
        # Shortest procedure: one branch (all of them in action order), <path>, one step.
        shortest = (2 * len(self.actions) if self.in_action_order else 3) + 3
        self.max_new_tokens = max(max_procedure_steps, shortest) + 3  # the procedure, <act> a </s>

    def __call__(self, batch_id: int, input_ids: torch.Tensor | list[int]) -> list[int]:
        seq = input_ids[self.prompt_length - 1 :]  # the prompt's last token (<proc> or <act>), then new ones
        seq = seq.tolist() if isinstance(seq, torch.Tensor) else list(seq)
        if self.eos in seq:
            return [self.pad]  # finished: generate pads it anyway
        procedure = seq[1:]
        cut = procedure.index(self.path) if self.path in procedure else None
        # The action: the first branch's (ranked) or the first step's (action order), once generated.
        decided = procedure[cut + 1 : cut + 2] if self.in_action_order and cut is not None else procedure[:1]
        if seq[-1] == self.act:
            return self.actions if not procedure else decided
        if len(seq) > 1 and seq[-2] == self.act:
            return [self.eos]
        last, remaining = seq[-1], self.budget - len(procedure)
        if cut is not None:  # principal variation: a r pairs, then <act>
            steps = procedure[cut + 1 :]
            if last in self.actions and len(steps) % 2:
                return self.rewards
            if not steps:
                return self._most_visited(procedure[:cut]) if self.in_action_order else decided
            return (self.actions if remaining >= 2 else []) + [self.act]
        if self.in_action_order:  # n q per action, then <path>
            if len(procedure) == 2 * len(self.actions):
                return [self.path]
            return self.visits if len(procedure) % 2 == 0 else self.values
        if len(procedure) % 3 == 1:  # root branches: a n q triples, then <path>
            previous = procedure[-3] if len(procedure) > 3 else self.visits[-1]  # visit buckets never increase
            return self.visits[: self.visits.index(previous) + 1]
        if len(procedure) % 3 == 2:
            return self.values
        branches = procedure[0::3]
        allowed = [a for a in self.actions if a not in branches] if not branches or remaining >= 6 else []
        return allowed + [self.path] if branches else allowed

    def action_of(self, input_ids: list[int]) -> int | None:
        """The action token the grammar has already fixed for a row (prompt and new tokens), or None while it is open:
        BC's first new token; PC's first branch (ranked) or first principal-variation step (action order), which the
        grammar then repeats after ``<act>``."""
        seq = list(input_ids[self.prompt_length - 1 :])
        procedure = seq[1:]
        if seq[0] == self.act or not self.in_action_order:  # BC's prompt ends with <act>; ranked: the first branch
            return procedure[0] if procedure else None
        cut = procedure.index(self.path) if self.path in procedure else None
        return procedure[cut + 1] if cut is not None and len(procedure) > cut + 1 else None

    def _most_visited(self, branches: list[int]) -> list[int]:
        """The actions whose visit bucket is the largest among ``n q`` pairs in action order."""
        buckets = [self.visits.index(token) for token in branches[0::2]]
        return [a for a, bucket in zip(self.actions, buckets) if bucket == max(buckets)]


_POLICY_CLASSES = {"maze": PCPolicy, "minatar": MinAtarPolicy}
