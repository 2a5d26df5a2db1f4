"""The README's examples run: its Python blocks in order, in one namespace, after its dataset command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pc_transformers import cli

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_commands_are_the_ci_commands():
    """The test command .ci/run executes is the one the README shows, and the main command runs the demo."""
    bash = _blocks("bash")
    assert any(b.strip().endswith("pc-transformers demo") for b in bash)
    assert any("python -m pytest" in b for b in bash)
    assert "<!-- test-command -->" in README.read_text(encoding="utf-8")


def test_readme_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    for block in _blocks("bash"):
        for line in block.splitlines():
            if line.startswith("pc-transformers generate"):
                assert cli.main(shlex.split(line)[1:]) == 0
    namespace: dict = {}
    python = _blocks("python")
    assert len(python) >= 5
    for i, block in enumerate(python):
        try:
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
        except Exception as error:  # name the block: a README example that fails is a bug in the README
            pytest.fail(f"README python block {i} failed: {error!r}\n{block}")
    assert namespace["record"] == namespace["tokenizer"].parse(namespace["ids"]).record
    assert 0.0 <= namespace["report"]["success_rate"] <= 1.0
