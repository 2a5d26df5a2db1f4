"""Packaging for pc_transformers: procedure cloning for the Hugging Face ecosystem."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent

setup(
    name="pc-transformers",
    version="0.1.0",
    description="Procedure cloning (Yang et al., NeurIPS 2022) as transformers models, datasets and gymnasium envs",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["pc_transformers", "pc_transformers.*"]),
    # The model-card template (for `pc-transformers push`, see pc_transformers/hub.py) and the recipes with their
    # configs (for `pc-transformers train` / `demo`, see pc_transformers/recipes.py), for installed wheels.
    data_files=[
        ("share/pc_transformers", ["MODEL_CARD.md"]),
        ("share/pc_transformers/recipes", sorted(str(p.relative_to(here)) for p in (here / "recipes").glob("*.py"))),
        ("share/pc_transformers/recipes/configs", sorted(str(p.relative_to(here)) for p in (here / "recipes/configs").glob("*.yaml"))),
    ],
    # The tokenizer assets in tokenizers/ (never a Python package: it would shadow the real `tokenizers` library)
    # are not needed at run time: PCTokenizer.for_maze builds the same vocabulary in code, and
    # recipes/make_tokenizers.py writes the assets from it.
    install_requires=[
        "torch>=2.4",
        "transformers>=5,<6",
        "tokenizers>=0.22",
        "datasets>=4",
        "accelerate>=1.0",
        "safetensors>=0.4",
        "huggingface-hub>=1.0",
        "gymnasium>=1.0",
        "numpy>=1.26",
        "pyyaml>=6",
        "tqdm>=4.66",
        "tensorboard>=2.14",
    ],
    extras_require={
        # minatar: the MinAtar tests (tests/test_minatar_*.py) run in CI; .ci/run makes them fail if it is missing.
        "test": ["pytest>=8", "pytest-timeout>=2.3", "scipy>=1.11", "networkx>=3.2", "matplotlib>=3.7",
                 "minatar>=1.0.15"],
        "bench": ["matplotlib>=3.7"],  # the benchmark's plots
        "minatar": ["minatar>=1.0.15"],
    },
    entry_points={"console_scripts": ["pc-transformers=pc_transformers.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
