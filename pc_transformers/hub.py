"""Pushing checkpoints and expert datasets to the Hugging Face Hub, with a model card generated from the config.

    from pc_transformers.hub import push_checkpoint, push_dataset
    push_checkpoint("outputs/demo/pc/final", "me/pc-maze16", eval_results=results)
    push_dataset("data/maze16", "me/maze16-bfs")
"""

from __future__ import annotations

import json
import math
import re
import shutil
import sys
import tempfile
from pathlib import Path

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData, get_token
from huggingface_hub.errors import HfHubHTTPError

# MODEL_CARD.md sits at the repository root; a wheel installs it under <prefix>/share/pc_transformers (setup.py).
_TEMPLATES = (Path(__file__).resolve().parents[1] / "MODEL_CARD.md",
              Path(sys.prefix) / "share" / "pc_transformers" / "MODEL_CARD.md")
TEMPLATE_PATH = next((p for p in _TEMPLATES if p.is_file()), _TEMPLATES[0])
ENV_ID = "pc_transformers/Maze-v0"
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_NO_TOKEN = "no Hugging Face token: pass --token or log in with `hf auth login` / set HF_TOKEN"


def _read_template() -> str:
    if not TEMPLATE_PATH.is_file():
        raise FileNotFoundError(f"model card template {str(TEMPLATE_PATH)!r} not found (it ships at the root of the "
                                f"pc_transformers source checkout)")
    return TEMPLATE_PATH.read_text(encoding="utf-8")


def _read_config(checkpoint_dir) -> dict:
    path = Path(checkpoint_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(checkpoint_dir)!r} is not a PCPolicy directory (expected a "
                                f"config.json written by PCPolicy.save_pretrained)")
    return json.loads(path.read_text())


def _cell(value) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_cell(v) for v in value) + "]"
    if isinstance(value, dict):
        return json.dumps(value)
    return "n/a" if value is None else str(value).replace("|", "\\|")


def _table(values: dict | None, empty: str) -> str:
    if not values:
        return empty
    rows = [f"| {key} | {_cell(value)} |" for key, value in values.items()]
    return "\n".join(["| | |", "|---|---|", *rows])


def _curve(curve: list[dict] | None) -> str:
    if not curve:
        return "No validation rollouts were recorded during training."
    if "mean_return" in curve[0]:  # MinAtar runs
        rows = [f"| {e['step']} | {e['train_seconds']:.0f} | {e['mean_return']:.2f} |" for e in curve]
        return "\n".join(["Mean return on validation episodes during training:", "",
                          "| step | training time (s) | validation mean return |", "|---|---|---|", *rows])
    rows = [f"| {e['step']} | {e['train_seconds']:.0f} | {e['success_rate']:.1%} |" for e in curve]
    return "\n".join(["Success on held-out validation mazes during training:", "",
                      "| step | training time (s) | validation success |", "|---|---|---|", *rows])


_MAZE_TEXT = {
    "summary": """A **procedure cloning** policy (Yang et al., NeurIPS 2022) built with
[pc_transformers](https://github.com/pc-transformers/pc_transformers). It imitates not only a BFS expert's actions in
mazes but its search: it reads the maze, generates the expert's BFS maps one whole map per forward pass, and reads its
action at the agent's cell of the last map.""",
    "what_is_cloned": """- Environment: `pc_transformers/Maze-v0`, {grid_size}×{grid_size} `{wall_type}` mazes; actions 0 = x+1
  (down), 1 = y+1 (right), 2 = x−1 (up), 3 = y−1 (left); reward 1 on reaching the goal.
- Expert: breadth-first search rooted at the goal. Procedure format `{procedure_format}`: the cumulative BFS map
  after each level, each cell labelled with the action that moves it one step toward the goal; ties broken by the
  lowest action index (a deliberate deviation from the original code, which breaks them by queue order).
- Objective `{objective}`, factorization `{factorization}`, position encoding `{position_encoding}`.""",
    "token_grammar": """`<s> s_1 … s_N <proc> x_0 <step> x_1 … x_L <act> a_k </s>`, state cells `# . G A`, map cells `v > ^ < _ *`, actions
`a0 … a3` (see `tokenization_pc.py` in this repository for a worked example).""",
    "evaluation_protocol": """Protocol: success rate over held-out maze seeds (disjoint from training) × random starts, episodes capped at
{max_episode_steps} steps, 95% Wilson confidence intervals.""",
    "quick_start": """```python
import gymnasium as gym
import pc_transformers
from pc_transformers.policy import PCPolicy

policy = PCPolicy.from_pretrained("{repo_id}")
env = gym.make("pc_transformers/Maze-v0", size={grid_size}, wall_type="{wall_type}", maze_seed=1_000_000)
obs, info = env.reset(seed=0)
action, info = policy.act(obs, return_procedure=True)
```

Without the package: `AutoModelForCausalLM.from_pretrained("{repo_id}", trust_remote_code=True)`.""",
    "limitations": """- Trained on one maze size and wall type. With relative 2D positions no weight depends on the maze size, so the model
  loads at other sizes (`from_pretrained(..., grid_size=N)`) and can be fine-tuned there, but its success at a size
  or wall type it was not evaluated on is unknown.
- The BFS maps are cumulative, so acting costs one forward pass per BFS level up to the agent's distance (amortized
  by the policy's procedure cache within an episode).
- If the model never labels the agent's cell, the policy falls back to a random action and flags it.""",
}

_MINATAR_TEXT = {
    "summary": """A **procedure cloning** policy (Yang et al., NeurIPS 2022) for the MinAtar game `{game}`, built with
[pc_transformers](https://github.com/pc-transformers/pc_transformers). It imitates a Monte Carlo tree search expert's
search, not only its action: it reads the 10×10 observation, generates the search summary token by token (with a KV
cache), then the action.""",
    "what_is_cloned": """- Environment: `MinAtar/{env_name}-v1` (gymnasium, package `minatar`; minimal action set, {num_channels} observation
  channels).
- Expert: UCT Monte Carlo tree search with a simulator snapshot per node and sampled chance events (the snapshots'
  random generators are reseeded, so the expert never reads the real game's future draws).
- Objective `{objective}`; procedure format `{procedure_format}`.""",
    "token_grammar": """{mcts_grammar}: one state token per cell (`c<m>`, m the
bitmask of active channels); {mcts_branches}; the principal variation with its predicted rewards (see
`tokenization_pc.py` in this repository). {state_reader}""",
    "evaluation_protocol": """Protocol: mean return over unseen episode seeds in the evaluation setting (sticky actions 0.1, difficulty ramping
on, unless stated otherwise in the table), episodes capped at {max_episode_steps} steps, 95% Student-t intervals.""",
    "quick_start": """```python
from pc_transformers.envs.minatar import make_minatar_env
from pc_transformers.policy import PCPolicy

policy = PCPolicy.from_pretrained("{repo_id}")      # a MinAtarPolicy
env = make_minatar_env("{game}", setting="eval")
obs, info = env.reset(seed=1_000_000)
actions, infos = policy.act(obs[None], return_procedure=True)
```""",
    "limitations": """- Trained on one game and one setting; the evaluation setting differs (sticky actions, difficulty ramping) on
  purpose, to measure generalization to configurations the expert data never covered.
- Acting decodes the search summary token by token (one forward pass per token it has a choice for, with a KV cache)
  until the action is fixed: in action order after every action's visit and value tokens and the first step of the
  principal variation; ranked, the first token is the action. `return_procedure=True` decodes the whole summary.""",
}


def model_card(checkpoint_dir, repo_id: str, eval_results: dict | None = None, training: dict | None = None,
               dataset_id: str | None = None, curve: list[dict] | None = None) -> ModelCard:
    """The model card of a checkpoint: ``MODEL_CARD.md`` filled from its config.json and the given results.

    Args:
        eval_results: `run_evaluation`'s results (``success_rate``, ``wall_type``, ``max_steps``, ...), or None.
        training: training settings and outcomes (a flat dict shown as a table), or None.
        dataset_id: the Hub dataset the policy was trained on (linked in the metadata).
        curve: periodic validation rollouts during training (``step``, ``train_seconds``, ``success_rate``), as
            in a training run's results.json ``evaluations``.

    Raises:
        FileNotFoundError: no config.json in ``checkpoint_dir``, or the template is missing.
        ValueError: the template holds a placeholder this function does not know.
    """
    config = _read_config(checkpoint_dir)
    evaluation, training = dict(eval_results or {}), dict(training or {})
    size = config.get("grid_size")
    wall_type = evaluation.get("wall_type") or training.get("wall_type") or "tunnel"
    results = []
    domain = config.get("domain", "maze")
    game = evaluation.get("game") or training.get("game") or ""
    if evaluation.get("mean_return") is not None:
        results.append(EvalResult(task_type="reinforcement-learning", dataset_type=f"MinAtar/{game}",
                                  dataset_name=f"{game}, unseen seeds, {evaluation.get('setting', 'eval')} setting",
                                  metric_type="mean_return", metric_value=evaluation["mean_return"]))
    if evaluation.get("success_rate") is not None:
        results.append(EvalResult(task_type="reinforcement-learning", dataset_type=ENV_ID,
                                  dataset_name=f"unseen {size}x{size} {wall_type} mazes", metric_type="success_rate",
                                  metric_value=evaluation["success_rate"]))
    card_data = ModelCardData(
        library_name="pc_transformers", pipeline_tag="reinforcement-learning",
        tags=["procedure-cloning", "imitation-learning", *(["minatar", "mcts"] if domain == "minatar" else ["maze"]),
              "pc_transformers"],
        datasets=[dataset_id] if dataset_id else None, license="apache-2.0", model_name=repo_id,
        eval_results=results or None,
    )
    expert, command = ("MCTS", "minatar") if domain == "minatar" else ("BFS", "maze")
    if dataset_id:
        data = (f"Expert {expert} trajectories from the dataset [{dataset_id}](https://huggingface.co/datasets/"
                f"{dataset_id}) (generated with `pc-transformers generate {command}`).")
    else:
        data = f"Expert {expert} trajectories generated with `pc-transformers generate {command}` (dataset not published)."
    fields = {"grid_size": size, "wall_type": wall_type, "procedure_format": config.get("procedure_format"),
              "objective": config.get("objective"), "factorization": config.get("factorization"),
              "position_encoding": config.get("position_encoding"), "repo_id": repo_id, "game": game,
              "env_name": game.title().replace("_", ""), "num_channels": config.get("num_channels"),
              "max_episode_steps": evaluation.get("max_steps", 100), **_mcts_grammar(config.get("branch_order")),
              "state_reader": _state_reader(config.get("state_encoder_size"))}
    texts = {name: text.format(**fields) for name, text in
             (_MINATAR_TEXT if domain == "minatar" else _MAZE_TEXT).items()}
    values = {
        "card_data": card_data.to_yaml(), "model_name": repo_id, **texts, "data_description": data,
        "training_table": _table(training, "not recorded"),
        "training_curve": _curve(curve),
        "evaluation_table": _table(evaluation, "not evaluated"),
    }
    template = _read_template()
    if template.startswith("---\n"):  # drop the template's own YAML comments (they describe the placeholders)
        header, sep, body = template[4:].partition("\n---\n")
        header = "\n".join(line for line in header.splitlines() if not line.lstrip().startswith("#"))
        template = f"---\n{header}{sep}{body}"
    unknown = sorted({name.strip() for name in _PLACEHOLDER.findall(template) if name.strip() not in values})
    if unknown:
        raise ValueError(f"model card template {str(TEMPLATE_PATH)!r} has unknown placeholder(s): {unknown}")
    text = _PLACEHOLDER.sub(lambda m: str(values[m.group(1).strip()]).strip("\n"), template)
    card = ModelCard(text)
    assert not _PLACEHOLDER.search(str(card)), "unfilled placeholder in the model card"
    return card


def _state_reader(state_encoder_size: int | None) -> str:
    """How the MinAtar model reads the observation (`PCConfig.state_encoder_size`)."""
    if not state_encoder_size:
        return "The transformer reads the state from its cell tokens."
    return (f"Besides the cell tokens, an MLP state encoder (two hidden layers of {state_encoder_size} ReLU units) "
            f"reads the whole observation; its vector is added to every token that is not a state cell.")


def _mcts_grammar(branch_order: str | None) -> dict:
    """The MinAtar card's sequence grammar for the config's ``branch_order`` (`PCConfig`)."""
    path = "<path> (a<i> r<reward>)×d <act> a_k </s>`"
    if branch_order == "action":
        return {"mcts_grammar": f"`<s> c_1 … c_100 <proc> (n<visits> q<value>)×K {path}",
                "mcts_branches": "every action's visit-share and value deciles in action order, a0 first (the action "
                                 "is then the principal variation's first step, one of the most-visited actions)"}
    return {"mcts_grammar": f"`<s> c_1 … c_100 <proc> (a<i> n<visits> q<value>)×k {path}",
            "mcts_branches": "the most-visited root branches, best first, with visit-share and value deciles"}


def _resolve_token(token):
    token = token or get_token()
    if not token:
        raise ValueError(_NO_TOKEN)
    return token


def _upload(folder: Path, repo_id: str, repo_type: str, token, private: bool, commit_message: str, what) -> str:
    api = HfApi()
    try:
        api.create_repo(repo_id, token=token, exist_ok=True, private=private, repo_type=repo_type)
        info = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type=repo_type, token=token,
                                 commit_message=commit_message)
    except Exception as error:
        # HfHubHTTPError for refusals; connection failures surface as the HTTP client's own errors (httpx2, ...)
        transport = type(error).__module__.split(".")[0].startswith(("httpx", "httpcore"))
        if isinstance(error, (HfHubHTTPError, ConnectionError, TimeoutError)) or transport:
            raise RuntimeError(f"pushing {what} to {repo_id} failed: {error}") from error
        raise
    return str(getattr(info, "commit_url", info))


def push_checkpoint(checkpoint_dir, repo_id: str, token: str | None = None, private: bool = False,
                    eval_results: dict | None = None, training: dict | None = None, dataset_id: str | None = None,
                    curve: list[dict] | None = None, commit_message: str = "Upload procedure cloning policy") -> str:
    """Upload a `PCPolicy.save_pretrained` directory and its generated model card (README.md) in one commit.

    Returns:
        The commit URL.

    Raises:
        FileNotFoundError: ``checkpoint_dir`` lacks config.json or model.safetensors.
        ValueError: no token (argument, ``HF_TOKEN`` or ``hf auth login``).
        RuntimeError: the Hub refused the repository or the upload (chained to the client's error).
    """
    path = Path(checkpoint_dir)
    missing = [name for name in ("config.json", "model.safetensors") if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoint {str(path)!r} is not a PCPolicy directory (missing {', '.join(missing)}; "
                                f"expected files written by PCPolicy.save_pretrained)")
    token = _resolve_token(token)
    card = model_card(path, repo_id, eval_results=eval_results, training=training, dataset_id=dataset_id, curve=curve)
    with tempfile.TemporaryDirectory(prefix="pc_push_") as tmp:
        staged = Path(tmp) / "repo"
        shutil.copytree(path, staged, ignore=shutil.ignore_patterns("__pycache__", ".git"))
        card.save(staged / "README.md")
        return _upload(staged, repo_id, "model", token, private, commit_message, str(checkpoint_dir))


def push_dataset(data_dir, repo_id: str, token: str | None = None, private: bool = False,
                 commit_message: str = "Upload expert maze dataset") -> str:
    """Upload a directory written by `save_maze_dataset` (README.md + data/*.parquet) as a dataset repo.

    Returns:
        The commit URL.
    """
    path = Path(data_dir)
    if not (path / "data").is_dir() or not any((path / "data").glob("*.parquet")):
        raise FileNotFoundError(f"dataset directory {str(path)!r} holds no data/*.parquet (expected a directory "
                                f"written by save_maze_dataset)")
    token = _resolve_token(token)
    return _upload(path, repo_id, "dataset", token, private, commit_message, str(data_dir))


def read_results(path) -> dict:
    """A results JSON: `run_evaluation`'s results, a training run's ``final/results.json`` (the same keys plus
    ``training`` and ``evaluations``), or the demo's results.json (``{"config": ..., "pc": {...}, "bc": {...}}``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {str(path)!r} not found")
    results = json.loads(path.read_text())
    if not isinstance(results, dict):
        raise TypeError(f"results file {str(path)!r} does not hold a JSON object")
    return results


def results_for(results: dict, objective: str | None) -> tuple[dict, dict | None, list[dict] | None]:
    """Split a results dict (see `read_results`) into evaluation results, training settings and the validation
    curve; the demo's file gives the entry of ``objective``."""
    entry = results if "success_rate" in results else results.get(objective) if objective else None
    if not isinstance(entry, dict) or "success_rate" not in entry:
        raise ValueError(f"results hold no success_rate (neither at the top level nor under {objective!r})")
    evaluation = {k: v for k, v in entry.items() if k not in ("training", "evaluations")}
    return evaluation, entry.get("training"), entry.get("evaluations")
