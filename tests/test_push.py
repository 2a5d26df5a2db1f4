"""``pc-transformers push`` / ``push-dataset`` against the loopback Hub server in ``tests/hub_server.py``.

As in ``test_hub_server.py``, the real clients run in subprocesses whose environment points ``HF_ENDPOINT`` at the
server (the endpoint is read when ``huggingface_hub`` is imported), so nothing leaks into the pytest process.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, os.path.dirname(__file__))
from hub_server import client_env, run_client



def cli(env: dict, *args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pc_transformers.cli", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from pc_transformers import PCConfig, PCForProcedureCloning, PCTokenizer
    from pc_transformers.policy import PCPolicy

    torch.manual_seed(0)
    tok = PCTokenizer.for_maze()
    cfg = PCConfig.from_tokenizer(tok, grid_size=5, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64)
    path = tmp_path_factory.mktemp("ckpt") / "pc"
    PCPolicy(PCForProcedureCloning(cfg), tok).save_pretrained(path)
    return path


# --- model card, no server --------------------------------------------------------------------------------------

def test_model_card_fills_every_placeholder(checkpoint):
    from huggingface_hub import ModelCard

    from pc_transformers.hub import model_card

    results = {"success_rate": 0.625, "success_ci95": [0.4, 0.8], "wall_type": "blocks", "max_steps": 50}
    card = model_card(checkpoint, "user/pc-tiny", eval_results=results, training={"steps": 10, "lr": 1e-3},
                      dataset_id="user/maze-tiny")
    text = str(card)
    assert "{{" not in text and "}}" not in text
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["library_name"] == "pc_transformers" and header["datasets"] == ["user/maze-tiny"]
    parsed = ModelCard(text).data
    assert parsed.eval_results[0].metric_value == 0.625 and parsed.eval_results[0].metric_type == "success_rate"
    assert parsed.eval_results[0].dataset_name == "unseen 5x5 blocks mazes"
    assert "| success_rate | 0.625 |" in text and "| steps | 10 |" in text and "capped at\n50 steps" in text
    assert 'PCPolicy.from_pretrained("user/pc-tiny")' in text

    bare = str(model_card(checkpoint, "user/pc-tiny"))
    assert "{{" not in bare and "not evaluated" in bare and ModelCard(bare).data.eval_results is None


def test_model_card_rejects_unknown_placeholder(checkpoint, tmp_path, monkeypatch):
    from pc_transformers import hub

    template = tmp_path / "MODEL_CARD.md"
    template.write_text("---\n{{ card_data }}\n---\n# {{ model_name }} {{ mystery }}\n")
    monkeypatch.setattr(hub, "TEMPLATE_PATH", template)
    with pytest.raises(ValueError, match="mystery"):
        hub.model_card(checkpoint, "user/x")


# --- end to end with the real clients -----------------------------------------------------------------------------

LOAD_CHECKPOINT = """
import os, torch
from huggingface_hub import HfApi, ModelCard, snapshot_download
from pc_transformers.policy import PCPolicy
local = PCPolicy.from_pretrained({local!r})
snapshot = snapshot_download("user/pc-tiny", cache_dir=os.path.abspath("fresh_cache"))
hubbed = PCPolicy.from_pretrained(snapshot)
ref, got = local.model.state_dict(), hubbed.model.state_dict()
assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
assert hubbed.tokenizer.get_vocab() == local.tokenizer.get_vocab()
files = set(HfApi().list_repo_files("user/pc-tiny"))
expected = {{"README.md", "config.json", "model.safetensors", "modeling_pc.py", "configuration_pc.py",
            "tokenization_pc.py", "tokenizer.json", "tokenizer_config.json", "policy_config.json"}}
assert expected <= files, expected - files
card = ModelCard.load("user/pc-tiny")
assert card.data.library_name == "pc_transformers", card.data
assert card.data.eval_results[0].metric_value == 0.75, card.data.eval_results
assert "{{{{" not in card.text
print("PUSH_OK")
"""


def test_push_checkpoint_then_download(hub_env, checkpoint, tmp_path):
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"success_rate": 0.75, "success_ci95": [0.5, 0.9], "wall_type": "tunnel",
                                   "max_steps": 100}))
    proc = cli(hub_env, "push", checkpoint, "--repo-id", "user/pc-tiny", "--token", "test", "--results", results,
               "--dataset-id", "user/maze-tiny", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "pushed to user/pc-tiny" in proc.stdout and "/commit/" in proc.stdout
    assert "PUSH_OK" in run_client(hub_env, LOAD_CHECKPOINT.format(local=str(checkpoint)), tmp_path)


LOAD_DATASET = """
import os, datasets
from pc_transformers.data.maze_dataset import load_maze_dataset
local = load_maze_dataset({local!r})["train"]
loaded = datasets.load_dataset("user/maze-tiny", split="train", cache_dir=os.path.abspath("fresh_ds_cache"))
assert loaded.features == local.features, (loaded.features, local.features)
assert loaded.to_list() == local.to_list()
assert len(loaded) > 0
print("DATASET_OK")
"""


def test_push_dataset_then_load_dataset(hub_env, tmp_path):
    from pc_transformers.data.maze_dataset import MazeDataConfig, generate_maze_dataset, save_maze_dataset

    config = MazeDataConfig(size=5, train_mazes=1, test_mazes=1, trajectories=1)
    data_dir = save_maze_dataset(generate_maze_dataset(config, progress=False), tmp_path / "maze", config)
    proc = cli(hub_env, "push-dataset", data_dir, "--repo-id", "user/maze-tiny", "--token", "test", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "DATASET_OK" in run_client(hub_env, LOAD_DATASET.format(local=str(data_dir)), tmp_path)


# --- errors -----------------------------------------------------------------------------------------------------

def test_push_without_token_fails_before_network(hub, hub_env, checkpoint, tmp_path):
    before = len(hub.requests)
    proc = cli(hub_env, "push", checkpoint, "--repo-id", "user/no-token", cwd=tmp_path)
    assert proc.returncode == 2 and "no Hugging Face token" in proc.stderr, proc.stderr
    assert len(hub.requests) == before


def test_push_missing_checkpoint(tmp_path, capsys):
    from pc_transformers.cli import main  # fails before any network call, so it runs in process

    missing = tmp_path / "nowhere"
    for command in ("push", "push-dataset"):
        assert main([command, str(missing), "--repo-id", "user/x", "--token", "test"]) == 2
        err = capsys.readouterr().err
        assert f"pc-transformers {command}: error:" in err and str(missing) in err, err


def test_push_to_unreachable_hub(checkpoint, tmp_path):
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = client_env(f"http://127.0.0.1:{port}", tmp_path)
    proc = cli(env, "push", checkpoint, "--repo-id", "user/pc-tiny", "--token", "test", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-4000:]
    assert f"pushing {checkpoint} to user/pc-tiny failed" in proc.stderr, proc.stderr
