"""pc_transformers: procedure cloning (Yang et al., NeurIPS 2022) for the Hugging Face ecosystem.

Importing the package registers the maze environment (``pc_transformers/Maze-v0``) with gymnasium and the model with
the transformers Auto classes (``AutoConfig``, ``AutoModel``, ``AutoModelForCausalLM``, ``AutoTokenizer``).
"""

from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

from . import envs  # noqa: F401  (registers pc_transformers/Maze-v0)
from .configuration_pc import PCConfig
from .modeling_pc import GridDecodeOutput, PCForProcedureCloning, PCModel, PCOutput, PCPreTrainedModel
from .tokenization_pc import PCTokenizer

__version__ = "0.1.0"

AutoConfig.register(PCConfig.model_type, PCConfig, exist_ok=True)
AutoModel.register(PCConfig, PCModel, exist_ok=True)
AutoModelForCausalLM.register(PCConfig, PCForProcedureCloning, exist_ok=True)
AutoTokenizer.register(PCConfig, tokenizer_class=PCTokenizer, exist_ok=True)
# Remote code: save_pretrained copies the defining files and writes auto_map, so users without this package can load a
# checkpoint with trust_remote_code=True (PCForProcedureCloning.save_pretrained adds AutoModel, see modeling_pc.py).
PCConfig.register_for_auto_class()
PCForProcedureCloning.register_for_auto_class("AutoModelForCausalLM")
PCTokenizer.register_for_auto_class("AutoTokenizer")

__all__ = [
    "PCConfig",
    "PCModel",
    "PCForProcedureCloning",
    "PCPreTrainedModel",
    "PCOutput",
    "GridDecodeOutput",
    "PCTokenizer",
]
