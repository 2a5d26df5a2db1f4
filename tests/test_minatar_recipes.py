"""MinAtar in the recipes: ``recipes/train.py`` with ``domain: minatar`` (configs, PC and BC runs, resume, keep_best),
`evaluate_minatar_policy` (its Student-t interval against scipy, every kind of player), and the benchmark's
``--quick`` mode as a subprocess. Tiny budgets: a 1-layer d=16 model, a few steps, episodes of at most 10 steps."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("PC_TRANSFORMERS_REQUIRE_MINATAR"):  # CI (.ci/run): a missing extra fails instead of skipping
    import minatar  # noqa: F401
else:
    pytest.importorskip("minatar")

import numpy as np
import torch
from safetensors.torch import load_file
from scipy import stats

from pc_transformers import PCConfig, PCForProcedureCloning, PCTokenizer
from pc_transformers.data import (
    MinAtarDataConfig,
    generate_minatar_dataset,
    load_minatar_dataset,
    save_minatar_dataset,
)
from pc_transformers.cli import main as cli_main
from pc_transformers.envs.minatar import episode_seeds, make_minatar_env
from pc_transformers.evaluation import run_evaluation
from pc_transformers.evaluation_minatar import (
    GreedyActor,
    MCTSActor,
    RandomActor,
    evaluate_minatar_policy,
    t_interval,
    t_quantile,
)
from pc_transformers.hub import model_card
from pc_transformers.policy import MinAtarPolicy, PCPolicy
from pc_transformers.procedures.mcts import MCTSConfig
from pc_transformers.recipes import config_path, load_recipe

REPO = Path(__file__).resolve().parents[1]
GAMES = ("breakout", "freeway", "asterix")
TINY_MCTS = {"num_simulations": 6, "max_depth": 4, "rollout_depth": 3}
DATA = MinAtarDataConfig(game="breakout", episodes=2, max_episode_steps=10, mcts=TINY_MCTS)
TINY = ["model.hidden_size=16", "model.num_hidden_layers=1", "model.num_attention_heads=2",
        "model.intermediate_size=32", "train.batch_size=4", "train.warmup_steps=0", "eval.episodes=2",
        "eval.final_episodes=3", "eval.max_steps=10", "log_every=2", "report_to=none", "minatar.episodes=2",
        "minatar.max_episode_steps=10", "minatar.num_workers=1", f"minatar.mcts={json.dumps(TINY_MCTS)}"]


@pytest.fixture(scope="module")
def recipe():
    return load_recipe("train")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The tiny breakout expert dataset every run here trains on (``dataset: DIR``)."""
    out = tmp_path_factory.mktemp("breakout")
    save_minatar_dataset(generate_minatar_dataset(DATA, progress=False), out, DATA)
    return out


def weights(path) -> dict:
    return load_file(str(Path(path) / "model.safetensors"))


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --- config ----------------------------------------------------------------------------------------------------

def test_ready_made_minatar_configs(recipe):
    for game in GAMES:
        for objective in ("pc", "bc"):
            config = recipe.load_config(config_path(f"{objective}_minatar_{game}"))
            assert config.domain == "minatar" and config.data is None and config.metric == "mean_return"
            assert config.minatar.game == game and config.minatar.setting == "train"
            assert config.objective == objective and config.eval.keep_best and config.eval.final_episodes > 0


@pytest.mark.parametrize("override, error, match", [
    ("data.size=8", ValueError, "data: is the maze data section"),
    ("minatar.bogus=1", ValueError, "unknown config key minatar.'bogus'"),
    ("minatar.episodes=0", ValueError, "episodes must be an int >= 1, got 0"),
    ("minatar.game=pong", ValueError, "pong"),
    ("minatar.num_shards=2", ValueError, "one shard"),
    ("minatar.mcts={simulations: 3}", ValueError, "unknown MCTS setting 'simulations'"),
    ("minatar=null", ValueError, "needs a minatar: section"),
    ("model.num_channels=3", ValueError, "model.num_channels comes from the game"),
    ("model.objective=imitation", ValueError, "imitation"),
    ("eval.final_episodes=-1", ValueError, "final_episodes must be non-negative"),
    ("eval.random_starts=-1", ValueError, "random_starts must be non-negative, got -1"),
    ("domain=atari", ValueError, "atari"),
])
def test_config_errors_name_the_value(recipe, override, error, match):
    with pytest.raises(error, match=match):
        recipe.load_config(config_path("pc_minatar_breakout"), [override])


def test_maze_config_refuses_a_minatar_section(recipe):
    with pytest.raises(ValueError, match="needs domain: minatar"):
        recipe.load_config(config_path("pc_maze8"), ["minatar.game=breakout"])


def test_train_minatar_pc_in_action_order(recipe, data_dir, tmp_path):
    """``model.branch_order=action`` trains on the records in action order, sizes the decoding budget for them, and
    the policy decodes them so."""
    config = recipe.load_config(config_path("pc_minatar_breakout"), [
        *TINY, f"output_dir={tmp_path}", f"dataset={data_dir}", "train.max_steps=2", "save_every=0", "eval.every=0",
        "eval.final_episodes=1", "eval.max_steps=4", "model.branch_order=action"])
    recipe.main(config)
    policy = PCPolicy.from_pretrained(tmp_path / "final")
    assert policy.model.config.branch_order == "action"
    # The decoding budget fits a procedure in action order: 3 pairs, <path>, the longest principal variation.
    assert policy.model.config.max_procedure_steps == 2 * 3 + 1 + 2 * max(
        len(p) for p in load_minatar_dataset(data_dir)["train"]["pv_actions"])
    obs, _ = make_minatar_env("breakout", "eval").reset(seed=5)
    _, info = policy.act(obs, return_procedure=True)
    assert not info["procedure"].ranked and info["procedure"].num_branches == 3
    # The model card states the grammar the checkpoint decodes.
    card = model_card(tmp_path / "final", "user/pc-breakout").text
    assert "<proc> (n<visits> q<value>)×K <path>" in card and "in action order, a0 first" in card
    assert "The transformer reads the state from its cell tokens." in card  # no state encoder by default


# --- training runs ----------------------------------------------------------------------------------------------

def test_train_minatar_pc_writes_results_and_resumes_to_identical_weights(recipe, data_dir, tmp_path, capsys):
    """PC on breakout, 4 steps with dropout, checkpoints and validation every 2; final/ holds a MinAtarPolicy and
    results.json the eval-setting return ± t-interval, which ``pc-transformers evaluate`` reproduces; a run
    interrupted after step 2 resumes bit-identically."""
    config = recipe.load_config(config_path("pc_minatar_breakout"), [
        *TINY, f"output_dir={tmp_path}", f"dataset={data_dir}", "train.max_steps=4", "save_every=2", "eval.every=2",
        "eval.keep_best=false", "model.hidden_dropout=0.2", "save_total_limit=null"])
    results = recipe.main(config)
    final = tmp_path / "final"
    saved = json.loads((final / "results.json").read_text())
    assert saved["mean_return"] == results["mean_return"] and saved["game"] == "breakout"
    assert (saved["setting"], saved["sticky_action_prob"], saved["difficulty_ramping"]) == ("eval", 0.1, True)
    assert saved["episodes"] == 3 and len(saved["returns"]) == 3 and saved["seeds"] == list(episode_seeds("eval", 3))
    low, high = saved["return_ci95"]
    assert low <= saved["mean_return"] <= high and "Student-t" in saved["ci_method"]
    # Ranked records: the first procedure token is the action, so acting stops after the prompt's pass.
    assert saved["ms_per_decision"] > 0 and saved["mean_forward_passes"] == 1
    assert (saved["training"]["episodes"], saved["training"]["decisions"]) == (2, len(load_minatar_dataset(
        data_dir)["train"]))
    assert [e["step"] for e in saved["evaluations"]] == [2, 4] and "mean_return" in saved["evaluations"][0]
    policy = PCPolicy.from_pretrained(final)
    assert isinstance(policy, MinAtarPolicy) and policy.tokenizer.domain == "minatar"
    assert policy.model.config.num_channels == 4 and policy.model.config.num_actions == 3
    assert recipe.load_config(final / "train_config.yaml") == config  # the resolved config reruns as is
    # The model card `pc-transformers push` / push_to_hub would upload, from these results.
    card = model_card(final, "user/pc-breakout", eval_results={k: v for k, v in saved.items() if k not in (
        "training", "evaluations", "returns", "seeds")}, training=saved["training"])
    assert "| mean_return |" in card.text and "| game | breakout |" in card.text
    assert "MinAtar/Breakout-v1" in card.text and "Monte Carlo tree search" in card.text and "maze" not in card.text
    assert "<proc> (a<i> n<visits> q<value>)×k <path>" in card.text and "best first" in card.text
    assert card.data.eval_results[0].metric_type == "mean_return" and "minatar" in card.data.tags
    curve = model_card(final, "user/pc-breakout", curve=saved["evaluations"]).text
    assert "validation mean return" in curve and f"| {saved['evaluations'][-1]['step']} |" in curve

    # `pc-transformers evaluate` plays the checkpoint's game (from its train_config.yaml) on the same held-out seeds
    # in the eval setting: the training run's final returns again.
    out = tmp_path / "evaluate.json"
    assert cli_main(["evaluate", str(final), "--episodes", "3", "--max-steps", "10", "--batch-size", "2",
                     "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "mean return" in printed and "breakout, eval setting: sticky actions 0.1" in printed
    evaluated = json.loads(out.read_text())
    assert (evaluated["returns"], evaluated["seeds"]) == (saved["returns"], saved["seeds"])
    assert evaluated["trained_on"] == evaluated["game"] == "breakout" and evaluated["batch_size"] == 2
    assert evaluated["mean_return"] == pytest.approx(saved["mean_return"]) and evaluated["max_steps"] == 10
    train_setting = run_evaluation(final, episodes=2, setting="train", max_steps=4)
    assert (train_setting["sticky_action_prob"], train_setting["difficulty_ramping"]) == (0.0, False)
    assert train_setting["seeds"] == list(episode_seeds("eval", 2)) and train_setting["mean_length"] <= 4
    for bad, named in ((["--mazes", "2"], "mazes=2: only for maze checkpoints"),
                       (["--game", "asterix"], "chooses among 3 actions but 'asterix' has 5"),
                       (["--episodes", "0"], "episodes must be at least 1, got 0"),
                       (["--no-procedure-cache"], "procedure_cache=False: only for maze checkpoints")):
        assert cli_main(["evaluate", str(final), *bad]) == 2
        assert named in capsys.readouterr().err, bad
    no_game = tmp_path / "no_game"
    shutil.copytree(final, no_game, ignore=shutil.ignore_patterns("train_config.yaml"))
    with pytest.raises(ValueError, match="without a train_config.yaml naming its game; pass --game"):
        run_evaluation(no_game, episodes=1, max_steps=2)
    assert run_evaluation(no_game, game="breakout", episodes=1, max_steps=2)["trained_on"] is None

    uninterrupted = weights(final)
    checkpoints = tmp_path / "checkpoints"
    shutil.rmtree(checkpoints / "step_000004")
    shutil.rmtree(final)
    (checkpoints / "last").write_text("step_000002")
    resumed = recipe.main(config, resume=True)
    assert same_weights(weights(final), uninterrupted)  # same data order, dropout RNG and optimizer state
    assert resumed["training"]["steps"] == 4 and resumed["returns"] == results["returns"]


def test_train_minatar_bc_keep_best_and_generated_data(recipe, tmp_path, monkeypatch):
    """BC generates its own data from the minatar: section and ends with the best validation mean return; validation
    plays eval.random_starts random actions first, the final evaluation none."""
    config = recipe.load_config(config_path("bc_minatar_breakout"), [
        *TINY, f"output_dir={tmp_path}", "train.max_steps=3", "save_every=0", "eval.every=1", "eval.keep_best=true",
        "train.learning_rate=0.03", "eval.random_starts=4"])
    calls = []
    evaluate = recipe.evaluate_minatar_policy

    def spy(*args, **kwargs):
        report = evaluate(*args, **kwargs)
        calls.append((args[2], report["random_start_steps"]))
        return report

    monkeypatch.setattr(recipe, "evaluate_minatar_policy", spy)
    results = recipe.main(config)
    assert calls == [("train", 4)] * 3 + [("eval", 0)] and results["random_start_steps"] == 0
    assert (tmp_path / "data" / "data" / "train-00000-of-00001.parquet").is_file()
    assert (tmp_path / "data" / "README.md").is_file()
    curve = [(e["mean_return"], -e["step"]) for e in results["evaluations"]]
    assert results["training"]["selected_step"] == -max(curve)[1]
    assert same_weights(weights(tmp_path / "final"), weights(tmp_path / "checkpoints" / "best"))
    # One pass, on <act>, gives the action; </s> is forced.
    assert results["objective"] == "bc" and results["mean_forward_passes"] == 1
    assert json.loads((tmp_path / "final" / "config.json").read_text())["objective"] == "bc"


# --- evaluation -----------------------------------------------------------------------------------------------

def test_t_quantile_and_interval_match_scipy():
    for df in (1, 2, 3, 5, 9, 29, 30, 100, 1000):
        for q in (0.975, 0.995, 0.9, 0.025):
            assert t_quantile(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-9, abs=1e-12)
    values = [3.0, 0.0, 7.0, 2.0, 2.0]
    ours = t_interval(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (ours["low"], ours["high"]) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    single = t_interval([4.0])
    assert single["mean"] == 4.0 and math.isnan(single["half_width"])
    with pytest.raises(ValueError, match="df"):
        t_quantile(0.975, 0)


def test_evaluate_baselines_and_their_interval():
    seeds = episode_seeds("eval", 4)
    report = evaluate_minatar_policy(RandomActor(seed=1), "breakout", "eval", seeds, max_steps=30)
    returns = report["returns"]
    assert report["episodes"] == 4 and report["seeds"] == list(seeds) and report["batch_size"] == 1
    assert (report["sticky_action_prob"], report["difficulty_ramping"]) == (0.1, True)
    assert report["mean_return"] == pytest.approx(np.mean(returns))
    if np.std(returns) > 0:
        low, high = stats.t.interval(0.95, 3, loc=np.mean(returns), scale=stats.sem(returns))
        assert report["return_ci95"] == [pytest.approx(low), pytest.approx(high)]
    assert report["mean_forward_passes"] is None and report["decisions"] == round(4 * report["mean_length"])
    # Reseeded per episode: the same returns again, also from 2 worker processes.
    again = evaluate_minatar_policy(RandomActor(seed=1), "breakout", "eval", seeds, max_steps=30, num_workers=2)
    assert again["returns"] == returns
    mcts = evaluate_minatar_policy(MCTSActor(MCTSConfig(**TINY_MCTS)), "breakout", "train", seeds[:2], max_steps=8)
    assert mcts["decisions"] > 0 and mcts["ms_per_decision"] > 0 and mcts["setting"] == "train"
    greedy = evaluate_minatar_policy(GreedyActor(), "freeway", "eval", seeds[:2], max_steps=5)
    assert greedy["truncated_episodes"] == 2 and greedy["mean_length"] == 5  # freeway never ends in 5 steps


def test_evaluate_a_policy_batched_or_alone():
    tok = PCTokenizer.for_minatar()
    torch.manual_seed(0)
    model = PCForProcedureCloning(PCConfig.from_tokenizer(tok, num_channels=4, num_actions=3, hidden_size=16,
                                                          num_hidden_layers=1, num_attention_heads=2,
                                                          intermediate_size=32, max_procedure_steps=16))
    policy = MinAtarPolicy(model, tok, full_procedure=True)
    seeds = episode_seeds("eval", 3)
    batched = evaluate_minatar_policy(policy, "breakout", "eval", seeds, max_steps=6)
    alone = evaluate_minatar_policy(policy, "breakout", "eval", seeds, max_steps=6, batch_size=1)
    assert (batched["batch_size"], alone["batch_size"]) == (3, 1)
    assert batched["returns"] == alone["returns"] and batched["decisions"] == alone["decisions"]
    # At least a n q, <path> or a branch, r, a step or <act>: the choices of the shortest procedure.
    assert batched["mean_forward_passes"] >= 6 and batched["fallback_rate"] == 0 and alone["ms_per_decision"] > 0
    # Stopping once the action is fixed (the default) plays the same games; ranked: one pass per decision.
    early = evaluate_minatar_policy(MinAtarPolicy(model, tok), "breakout", "eval", seeds, max_steps=6)
    assert early["returns"] == batched["returns"] and early["mean_forward_passes"] == 1
    with pytest.raises(ValueError, match="chooses among 3 actions but 'asterix' has 5"):
        evaluate_minatar_policy(policy, "asterix", "eval", seeds, max_steps=6)
    with pytest.raises(ValueError, match="at least one episode seed"):
        evaluate_minatar_policy(policy, "breakout", "eval", [], max_steps=6)


# --- the benchmark ----------------------------------------------------------------------------------------------

@pytest.mark.timeout(300)
def _evaluation(tmp_path, name, returns, game="breakout", seeds=(1000000, 1000001, 1000002, 1000003)):
    """A `pc-transformers evaluate` JSON with the keys minatar_seeds.py reads (the real one is tested above)."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"game": game, "setting": "eval", "sticky_action_prob": 0.1, "difficulty_ramping": True,
                                "max_steps": 300, "random_start_steps": 0, "seeds": list(seeds),
                                "returns": list(returns), "mean_return": float(np.mean(returns)),
                                "checkpoint": f"runs/{name}"}))
    return str(path)


def test_minatar_seeds_averages_training_seeds_per_episode(tmp_path):
    main = load_recipe("benchmarks/minatar_seeds").main
    pc0, bc0 = [3.0, 5.0, 1.0, 4.0], [1.0, 5.0, 2.0, 1.0]
    pc1, bc1 = [2.0, 6.0, 0.0, 5.0], [2.0, 2.0, 1.0, 2.0]
    pairs = ["--pair", "breakout", "0", _evaluation(tmp_path, "pc0", pc0), _evaluation(tmp_path, "bc0", bc0),
             "--pair", "breakout", "1", _evaluation(tmp_path, "pc1", pc1), _evaluation(tmp_path, "bc1", bc1)]
    (game,) = main([*pairs, "--out", str(tmp_path / "out"), "--pc-label", "PC (ranked)"])["games"]
    d0, d1 = np.subtract(pc0, bc0), np.subtract(pc1, bc1)
    for row, d in zip(game["seeds"], (d0, d1)):
        low, high = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
        assert row["pc_minus_bc"]["mean"] == pytest.approx(d.mean())
        assert (row["pc_minus_bc"]["low"], row["pc_minus_bc"]["high"]) == (pytest.approx(low), pytest.approx(high))
    average = (d0 + d1) / 2  # per episode, then the interval over episodes
    low, high = stats.t.interval(0.95, 3, loc=average.mean(), scale=stats.sem(average))
    assert game["average"]["pc_minus_bc"]["mean"] == pytest.approx(average.mean())
    assert (game["average"]["pc_minus_bc"]["low"], game["average"]["pc_minus_bc"]["high"]) == (
        pytest.approx(low), pytest.approx(high))
    assert game["average"]["pc_mean_return"] == pytest.approx((np.mean(pc0) + np.mean(pc1)) / 2)
    assert game["seed_spread"] == pytest.approx(abs(d0.mean() - d1.mean()))
    assert game["training_seeds"] == [0, 1] and game["seeds"][1]["inputs"]["bc"].endswith("bc1.json")
    assert game["between_seeds"] is None  # two seeds: no interval between them
    table = (tmp_path / "out" / "table.md").read_text()
    assert "| breakout | average of 0, 1 |" in table and "PC (ranked) − BC, paired over episodes" in table
    assert json.loads((tmp_path / "out" / "seeds.json").read_text())["games"][0] == game
    # A third seed: the interval over the seeds' mean differences, with 2 degrees of freedom.
    pc2, bc2 = [4.0, 4.0, 3.0, 5.0], [1.0, 2.0, 2.0, 2.0]
    three = [*pairs, "--pair", "breakout", "2", _evaluation(tmp_path, "pc2", pc2), _evaluation(tmp_path, "bc2", bc2)]
    (game3,) = main([*three, "--out", str(tmp_path / "out3")])["games"]
    means = [d0.mean(), d1.mean(), np.subtract(pc2, bc2).mean()]
    low, high = stats.t.interval(0.95, 2, loc=np.mean(means), scale=stats.sem(means))
    assert game3["between_seeds"]["mean"] == pytest.approx(np.mean(means)) and game3["between_seeds"]["n"] == 3
    assert (game3["between_seeds"]["low"], game3["between_seeds"]["high"]) == (pytest.approx(low), pytest.approx(high))
    assert f"| {np.mean(means):+.2f} ({low:+.2f} to {high:+.2f}) |" in (tmp_path / "out3" / "table.md").read_text()
    # The same episodes for every checkpoint of a game, each seed once, integer seeds.
    other = _evaluation(tmp_path, "other", bc1, seeds=(7, 8, 9, 10))
    with pytest.raises(ValueError, match=r"breakout BC, seed 1 played seeds=4 seeds from 7, but breakout PC, seed 0 "
                                         r"played seeds=4 seeds from 1000000"):
        main([*pairs[:9], other, "--out", str(tmp_path / "bad")])
    with pytest.raises(ValueError, match=r"freeway PC, seed 0: the evaluation played 'breakout', expected 'freeway'"):
        main(["--pair", "freeway", "0", *pairs[3:5], "--out", str(tmp_path / "bad")])
    for bad in (["--pair", "breakout", "0", *pairs[3:5]], ["--pair", "breakout", "one", *pairs[3:5]]):
        with pytest.raises(SystemExit):
            main([*pairs[:5], *bad, "--out", str(tmp_path / "bad")])


def test_minatar_generalization_benchmark_quick(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, REPO / "recipes" / "benchmarks" / "minatar_generalization.py", "--quick",
                           "--games", "breakout", "--out", tmp_path, "--game-mcts", "breakout:rollout_hold=0.5",
                           "freeway:merge_equivalent=false", "--branch-order", "action",
                           "--lr-scheduler", "cosine", "--state-encoder-size", "8",
                           "--methods", "pc", "bc", "aux_bc", "mcts", "random", "greedy"], env=env, capture_output=True,
                          text=True, timeout=280, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    (game,) = results["games"]
    assert game["game"] == "breakout" and set(game["runs"]) == {"pc", "bc", "aux_bc", "mcts", "random", "greedy"}
    for method, run in game["runs"].items():
        assert run["episodes"] == 2 and run["setting"] == "eval" and len(run["returns"]) == 2, method
    assert game["runs"]["pc"]["latency_batch1"]["ms_per_decision"] > 0 and game["pc_ge_bc"] in (True, False)
    assert game["pc_latency_fraction"] > 0
    for name in ("table.md", "returns.png", "runs/breakout_pc/final/model.safetensors", "data/breakout/README.md"):
        assert (tmp_path / name).is_file(), name
    assert "| breakout |" in (tmp_path / "table.md").read_text()
    # --game-mcts reached the expert of its game only (the data card records the settings).
    assert game["data"]["mcts"]["rollout_hold"] == 0.5 and game["data"]["mcts"]["merge_equivalent"] is True
    # PC and auxiliary BC trained in action order, BC as ever; all with the MLP state encoder.
    pc, bc, aux = (PCPolicy.from_pretrained(tmp_path / f"runs/breakout_{m}/final").model for m in ("pc", "bc", "aux_bc"))
    assert pc.config.branch_order == aux.config.branch_order == "action" and bc.config.branch_order == "visits"
    assert [m.config.objective for m in (pc, bc, aux)] == ["pc", "bc", "aux_bc"]
    assert pc.config.state_encoder_size == bc.config.state_encoder_size == aux.config.state_encoder_size == 8
    # Auxiliary BC acts like BC, one pass per decision (its action is read at <act> from the state alone).
    assert game["runs"]["aux_bc"]["latency_batch1"]["mean_forward_passes"] == 1
    assert pc.model.state_encoder.net[0].weight.shape == (8, 100 * 4)
    assert "an MLP state encoder (two hidden layers of 8 ReLU units)" in model_card(
        tmp_path / "runs/breakout_pc/final", "user/pc-breakout").text

    # The latency script plays the run's PC, BC and expert, one environment at a time.
    latency = load_recipe("benchmarks/minatar_latency").main([str(tmp_path), "--games", "breakout", "--episodes", "1",
                                                              "--max-steps", "3", "--repeats", "2", "--json",
                                                              str(tmp_path / "latency.json")])
    (timed,) = json.loads((tmp_path / "latency.json").read_text())["games"]
    assert timed == latency["games"][0] and timed["branch_order"] == "action"
    assert all(len(timed["all_ms_per_decision"][m]) == 2 and timed["ms_per_decision"][m] > 0
               for m in ("pc", "pc_full", "bc", "mcts"))
    assert timed["pc_over_mcts"] == timed["ms_per_decision"]["pc"] / timed["ms_per_decision"]["mcts"]
    # In action order PC decides after every action's visit and value tokens (6 choices for breakout's 3 actions),
    # then the first step when visit buckets tie; the whole procedure adds at least a reward and a step or <act>.
    passes = timed["forward_passes_per_decision"]
    assert 6 <= passes["pc"] <= 7 < passes["pc_full"]
    assert timed["forward_passes_per_decision"]["bc"] == 1 and timed["forward_passes_per_decision"]["mcts"] is None
    # A game's PC and BC from separate --out directories (runs made with --methods pc, then --methods bc).
    for method in ("pc", "bc"):
        (tmp_path / f"only_{method}" / "runs").mkdir(parents=True)
        run = f"runs/breakout_{method}"
        (tmp_path / f"only_{method}" / run).symlink_to(tmp_path / run)
    (tmp_path / "only_pc" / "data").symlink_to(tmp_path / "data")
    apart = load_recipe("benchmarks/minatar_latency").main([str(tmp_path / "only_pc"), str(tmp_path / "only_bc"),
                                                            "--games", "breakout", "--episodes", "1", "--max-steps",
                                                            "2", "--repeats", "1"])
    (apart_game,) = apart["games"]
    assert apart_game["forward_passes_per_decision"]["bc"] == 1 and apart_game["branch_order"] == "action"
    latency_main = load_recipe("benchmarks/minatar_latency").main
    with pytest.raises(FileNotFoundError, match=r"no bc run of 'breakout'.*only_pc"):
        latency_main([str(tmp_path / "only_pc"), "--games", "breakout"])
    with pytest.raises(ValueError, match=r"pc of 'breakout' was found in .*give only one"):
        latency_main([str(tmp_path), str(tmp_path / "only_pc"), "--games", "breakout"])

    # minatar_paired.py: PC against BC as a paired interval over `pc-transformers evaluate` JSONs of the same seeds,
    # with the benchmark's expert runs beside them.
    evaluated = {}
    for method in ("pc", "bc"):
        path = tmp_path / f"evaluate_{method}.json"
        assert cli_main(["evaluate", str(tmp_path / f"runs/breakout_{method}/final"), "--episodes", "2",
                         "--max-steps", "10", "--json", str(path)]) == 0
        evaluated[method] = json.loads(path.read_text())
        assert evaluated[method]["returns"] == game["runs"][method]["returns"]  # the benchmark's own episodes
    paired_main = load_recipe("benchmarks/minatar_paired").main
    pairs = ["--pair", "breakout", str(tmp_path / "evaluate_pc.json"), str(tmp_path / "evaluate_bc.json")]
    paired = paired_main([*pairs, "--experts", "breakout", str(tmp_path / "results.json"), "--out",
                          str(tmp_path / "paired")])
    (row,) = paired["games"]
    differences = np.subtract(evaluated["pc"]["returns"], evaluated["bc"]["returns"])
    assert row["pc_minus_bc"]["mean"] == pytest.approx(differences.mean())
    assert row["pc_ge_bc"] == (differences.mean() >= 0) and set(row) >= {"mcts", "random", "greedy"}
    assert row["mcts"]["mean_return"] == game["runs"]["mcts"]["mean_return"]
    # The interval against scipy, on BC returns shifted so that the differences spread (tiny runs often tie at 0).
    shifted = {**evaluated["bc"], "returns": [r + s for r, s in zip(evaluated["bc"]["returns"], (1.0, 4.0))]}
    (tmp_path / "evaluate_bc_shifted.json").write_text(json.dumps(shifted))
    (row,) = paired_main([*pairs[:3], str(tmp_path / "evaluate_bc_shifted.json"), "--out", str(tmp_path / "p1"),
                          "--pc-label", "PC (ranked)", "--bc-label", "aux-BC"])["games"]
    differences -= (1.0, 4.0)
    low, high = stats.t.interval(0.95, 1, loc=differences.mean(), scale=stats.sem(differences))
    assert (row["pc_minus_bc"]["low"], row["pc_minus_bc"]["high"]) == (pytest.approx(low), pytest.approx(high))
    p1_table = (tmp_path / "p1" / "table.md").read_text()
    assert not row["significant"] and "no significant difference" in p1_table
    assert "| PC (ranked) | aux-BC |" in p1_table and "PC (ranked) − aux-BC, paired over seeds" in p1_table
    assert json.loads((tmp_path / "p1" / "paired.json").read_text())["bc_label"] == "aux-BC"
    assert "| breakout | 2 |" in (tmp_path / "paired" / "table.md").read_text()
    assert (tmp_path / "paired" / "breakout_experts.json").read_text() == (tmp_path / "results.json").read_text()
    assert cli_main(["evaluate", str(tmp_path / "runs/breakout_bc/final"), "--episodes", "3", "--max-steps", "10",
                     "--json", str(tmp_path / "evaluate_bc3.json")]) == 0
    with pytest.raises(ValueError, match=r"breakout BC played seeds=3 seeds from .* needs the same episodes"):
        paired_main([*pairs[:3], str(tmp_path / "evaluate_bc3.json"), "--out", str(tmp_path / "p2")])
    with pytest.raises(ValueError, match=r"given for 'freeway' played 'breakout'"):
        paired_main(["--pair", "freeway", *pairs[2:], "--out", str(tmp_path / "p3")])
    with pytest.raises(SystemExit):  # experts for a game without a pair
        paired_main([*pairs, "--experts", "asterix", str(tmp_path / "results.json"), "--out", str(tmp_path / "p4")])

    # The probe reads the same directory: the expert data, the clones, and the validation seeds' diversity.
    probe = load_recipe("benchmarks/minatar_probe").main([str(tmp_path), "--games", "breakout", "--holdout-every", "2",
                                                          "--probe-steps", "5", "--max-decisions", "7",
                                                          "--val-episodes", "6", "--diversity-steps", "5",
                                                          "--play-episodes", "2", "--play-max-steps", "4"])
    (probed,) = probe["games"]
    played = probed["probe_play"]  # the probe played as a policy: unseen eval-setting episodes, capped
    assert played["episodes"] == 2 and played["max_steps"] == 4 and played["sticky_action_prob"] == 0.1
    assert len(played["returns"]) == 2 and played["mean_return"] == pytest.approx(np.mean(played["returns"]))
    data = load_minatar_dataset(tmp_path / "data" / "breakout")["train"]
    actions, episodes = np.asarray(data["action"]), np.asarray(data["episode"])
    held = episodes % 2 == 0
    majority = np.bincount(actions[~held]).argmax()
    assert probed["probe"]["train_decisions"] == int((~held).sum()) and probed["probe"]["heldout_decisions"] == int(
        held.sum())
    assert probed["probe"]["heldout_majority_accuracy"] == pytest.approx(float((actions[held] == majority).mean()))
    assert set(probed["clone_accuracy"]) == {"pc", "bc"} and probed["clone_decisions"] == 7
    assert all(0 <= a <= 1 for a in probed["clone_accuracy"].values())
    # MinAtar Breakout starts in one of two states (the ball on the left or the right); a greedy policy's validation
    # in the training setting (no sticky actions) sees no more than two different episodes.
    assert probed["distinct_validation_episodes"] == 2
    for bad in (["--probe-steps", "0"], ["--play-episodes", "-1"], ["--probe-batch-size", "0"]):
        with pytest.raises(SystemExit):
            load_recipe("benchmarks/minatar_probe").main([str(tmp_path), *bad])

    # --combine merges per-game runs made with the same settings, and refuses runs made with others.
    benchmark = load_recipe("benchmarks/minatar_generalization")
    other = tmp_path / "other"
    other.mkdir()
    renamed = {**results, "games": [{**game, "game": "freeway"}]}
    (other / "results.json").write_text(json.dumps(renamed))
    merged = benchmark.main(["--combine", str(tmp_path), str(other), "--out", str(tmp_path / "both")])
    assert [g["game"] for g in merged["games"]] == ["breakout", "freeway"] and merged["args"]["games"] == [
        "breakout", "freeway"]
    assert merged["games"][0] == {**game, "args": results["args"]} and (tmp_path / "both" / "returns.png").is_file()
    assert json.loads((tmp_path / "both" / "results.json").read_text())["games"][1]["game"] == "freeway"
    renamed["args"] = {**results["args"], "steps": 7}  # training settings may differ by game, and are kept
    (other / "results.json").write_text(json.dumps(renamed))
    merged = benchmark.main(["--combine", str(tmp_path), str(other), "--out", str(tmp_path / "both")])
    assert [g["args"]["steps"] for g in merged["games"]] == [3, 7]
    renamed["args"] = {**results["args"], "eval_max_steps": 7}  # the evaluation protocol may not
    (other / "results.json").write_text(json.dumps(renamed))
    with pytest.raises(ValueError, match="other settings"):
        benchmark.main(["--combine", str(tmp_path), str(other), "--out", str(tmp_path / "both")])
    # One game's methods from separate runs (PC alone, then BC and the baselines) merge back into the same game.
    split = {}
    for name, methods in (("pc_only", ["pc"]), ("the_rest", ["bc", "aux_bc", "mcts", "random", "greedy"])):
        split[name] = tmp_path / name
        split[name].mkdir()
        part = {**results, "args": {**results["args"], "methods": methods, "steps": len(methods)},
                "games": [{**game, "runs": {m: game["runs"][m] for m in methods}}]}
        (split[name] / "results.json").write_text(json.dumps(part))
    merged = benchmark.main(["--combine", str(split["pc_only"]), str(split["the_rest"]), "--out",
                             str(tmp_path / "joined")])
    (joined,) = merged["games"]
    assert joined["runs"] == game["runs"] and merged["args"]["methods"] == list(game["runs"])
    assert {k: joined[k] for k in ("pc_ge_bc", "pc_within_10pct_of_mcts", "pc_latency_fraction")} == {
        k: game[k] for k in ("pc_ge_bc", "pc_within_10pct_of_mcts", "pc_latency_fraction")}
    assert joined["args_by_method"]["pc"]["steps"] == 1 and joined["args_by_method"]["mcts"]["steps"] == 5
    with pytest.raises(ValueError, match=r"plays pc on 'breakout' again"):
        benchmark.main(["--combine", str(split["pc_only"]), str(split["pc_only"]), "--out", str(tmp_path / "j2")])
    freeway_pc = tmp_path / "freeway_pc"
    freeway_pc.mkdir()
    pc_only = json.loads((split["pc_only"] / "results.json").read_text())
    pc_only["games"][0]["game"] = "freeway"
    (freeway_pc / "results.json").write_text(json.dumps(pc_only))
    pc_only["games"][0].update(game="breakout", data={**game["data"], "episodes": 99})
    (freeway_pc / "results.json").write_text(json.dumps(pc_only))  # now breakout's PC, on other expert data
    with pytest.raises(ValueError, match=r"other expert data for 'breakout'"):
        benchmark.main(["--combine", str(split["the_rest"]), str(freeway_pc), "--out", str(tmp_path / "j4")])
    pc_only["games"][0].update(game="freeway", data=game["data"])
    (freeway_pc / "results.json").write_text(json.dumps(pc_only))
    with pytest.raises(ValueError, match=r"'breakout' has no pc run .* every game needs the same methods"):
        benchmark.main(["--combine", str(split["the_rest"]), str(freeway_pc), "--out", str(tmp_path / "j3")])


@pytest.mark.parametrize(("item", "message"), [
    ("breakout:nope=1", "expects GAME:FIELD=VALUE"), ("pong:rollout_hold=0.5", "expects GAME:FIELD=VALUE"),
    ("breakout:rollout_hold", "expects GAME:FIELD=VALUE"), ("breakout:rollout_hold=high", "must be a number"),
])
def test_minatar_benchmark_rejects_bad_game_mcts(item, message, capsys):
    benchmark = load_recipe("benchmarks/minatar_generalization")
    with pytest.raises(SystemExit):
        benchmark.main(["--game-mcts", item, "--combine", "unused"])
    err = capsys.readouterr().err
    assert message in err and repr(item) in err
