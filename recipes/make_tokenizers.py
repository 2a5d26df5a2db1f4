"""Write the tokenizer assets in ``tokenizers/`` from `PCTokenizer.for_maze` / `PCTokenizer.for_minatar` (the source
of truth).

    python recipes/make_tokenizers.py                 # tokenizers/maze-bfs-maps, maze-bfs-trace and minatar-mcts
    python recipes/make_tokenizers.py --out /tmp/tok  # somewhere else

Each folder holds JSON only (``tokenizer.json``, ``tokenizer_config.json``) and loads with
``PCTokenizer.from_pretrained(folder)`` or, after ``import pc_transformers``, ``AutoTokenizer.from_pretrained(folder)``.
Never edit these files by hand: ``tests/test_tokenizer.py`` compares them with a freshly built tokenizer.

Why no remote code here: ``pc_transformers`` registers `PCTokenizer` for ``trust_remote_code``, so a plain
``save_pretrained`` would copy ``tokenization_pc.py`` into the folder and write an ``auto_map`` pointing at it. A
Python file under the repository's ``tokenizers/`` folder is exactly what must never exist there (a package named
``tokenizers`` would shadow the real library), and the package itself provides the class, so the assets are saved
without either. Checkpoints saved by the model still ship the remote code.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from transformers import AutoTokenizer

import pc_transformers  # noqa: F401  (registers PCTokenizer with AutoTokenizer)
from pc_transformers.tokenization_pc import (
    MINATAR_PROCEDURE_FORMATS,
    PROCEDURE_FORMATS,
    PCTokenizer,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
# (domain, procedure_format) of every shipped asset.
ASSETS = [("maze", fmt) for fmt in PROCEDURE_FORMATS] + [("minatar", fmt) for fmt in MINATAR_PROCEDURE_FORMATS]
BUILDERS = {"maze": PCTokenizer.for_maze, "minatar": PCTokenizer.for_minatar}


def asset_name(procedure_format: str, domain: str = "maze") -> str:
    """``bfs_maps`` → ``maze-bfs-maps``; ``mcts`` (minatar) → ``minatar-mcts``."""
    return f"{domain}-{procedure_format.replace('_', '-')}"


def build_tokenizer(procedure_format: str, domain: str = "maze") -> PCTokenizer:
    """A fresh ``PCTokenizer.for_<domain>(procedure_format)``."""
    if domain not in BUILDERS:
        raise ValueError(f"domain must be one of {tuple(BUILDERS)}, got {domain!r}")
    return BUILDERS[domain](procedure_format)


def write_tokenizer(procedure_format: str, out_dir: Path, domain: str = "maze") -> Path:
    """Save ``PCTokenizer.for_<domain>(procedure_format)`` as JSON only into ``out_dir / asset_name(...)``."""
    path = out_dir / asset_name(procedure_format, domain)
    tokenizer = build_tokenizer(procedure_format, domain)
    # An instance attribute shadows the class-level registration made by `register_for_auto_class`, so this save
    # neither copies tokenization_pc.py nor writes auto_map, and nothing global changes.
    tokenizer._auto_class = None
    tokenizer.save_pretrained(str(path))
    for stale in sorted(path.glob("*.py")):  # left over from an older version of this script
        stale.unlink()
        print(f"  removed {stale}")
    return path


def check_tokenizer(procedure_format: str, path: Path, domain: str = "maze") -> None:
    """Reload the saved folder both ways and compare it with a freshly built tokenizer; raise on any difference."""
    fresh = build_tokenizer(procedure_format, domain)
    # Any valid game will do to compare the layouts of MinAtar tokenizers: the largest one covers every id.
    layout_args = {"num_channels": 10, "num_actions": 6} if domain == "minatar" else {}
    config = json.loads((path / "tokenizer_config.json").read_text())
    if "auto_map" in config:
        raise RuntimeError(f"{path}/tokenizer_config.json has an auto_map {config['auto_map']}; assets are JSON only")
    python_files = sorted(p.name for p in path.glob("*.py"))
    if python_files:
        raise RuntimeError(f"{path} holds Python files {python_files}; assets are JSON only")
    for loader in (PCTokenizer.from_pretrained, AutoTokenizer.from_pretrained):
        loaded = loader(str(path))
        if type(loaded) is not PCTokenizer:
            raise RuntimeError(f"{loader.__qualname__}({path}) returned {type(loaded).__name__}, expected PCTokenizer")
        if loaded.get_vocab() != fresh.get_vocab():
            raise RuntimeError(f"the vocabulary in {path} differs from PCTokenizer.for_{domain}({procedure_format!r})")
        recorded = (loaded.domain, loaded.procedure_format, loaded.max_grid_size)
        if recorded != (domain, procedure_format, fresh.max_grid_size):
            raise RuntimeError(
                f"{path} records domain={loaded.domain!r}, procedure_format={loaded.procedure_format!r}, "
                f"max_grid_size={loaded.max_grid_size}; expected {domain!r}, {procedure_format!r}, {fresh.max_grid_size}"
            )
        if loaded.layout_token_ids(**layout_args) != fresh.layout_token_ids(**layout_args):
            raise RuntimeError(f"the special-token layout in {path} differs from a fresh tokenizer's")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "tokenizers",
                        help="folder receiving one sub-folder per procedure format (default: the repo's tokenizers/)")
    args = parser.parse_args(argv)
    for domain, procedure_format in ASSETS:
        path = write_tokenizer(procedure_format, args.out, domain)
        check_tokenizer(procedure_format, path, domain)
        files = ", ".join(sorted(p.name for p in path.iterdir()))
        vocab_size = len(PCTokenizer.from_pretrained(str(path)))
        print(f"wrote {path} ({files}): {vocab_size} tokens, domain={domain!r}, procedure_format={procedure_format!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
