"""From expert-dataset rows to model inputs: tokenized examples, then padded batches.

``build_examples(dataset, tokenizer, config)`` maps each expert decision to one example for the configured objective
(labels follow transformers' convention: the input ids, -100 where no loss is wanted; the model finds its targets by
the grammar):

* ``bc``: ``<s> state <act> a </s>``: the action only.
* ``pc`` / ``aux_bc``: ``<s> state <proc> x_0 … x_L <act> a </s>``. The factorization is the model's business (its
  attention pattern), not the data's.

`PCDataCollator` right-pads a list of examples into ``input_ids``, ``attention_mask`` and ``labels`` tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset

from .maze_dataset import procedure_format_of, record_from_row

IGNORE_INDEX = -100


def examples_from_row(row: dict, tokenizer, config) -> list[dict]:
    """The training examples of one expert decision (a dataset row in numpy format)."""
    walls, goal, agent = np.asarray(row["walls"], dtype=bool), tuple(row["goal"]), tuple(row["agent"])
    if walls.shape != (config.grid_size, config.grid_size):
        raise ValueError(f"maze of shape {walls.shape} does not fit the model's grid_size={config.grid_size}")
    record = None if config.objective == "bc" else record_from_row(row, config.procedure_format)
    ids = tokenizer.encode_example(walls, goal, agent, record, action=int(row["action"]))
    return [{"input_ids": ids, "labels": list(ids)}]


def build_examples(dataset: Dataset, tokenizer, config, num_proc: int | None = None) -> Dataset:
    """Tokenized training examples (``input_ids``, ``labels``) for ``config``'s objective."""
    fmt = procedure_format_of(dataset)
    if config.objective != "bc" and fmt != config.procedure_format:
        raise ValueError(f"the dataset holds {fmt!r} procedures but the model is configured for "
                         f"{config.procedure_format!r}")

    def expand(batch):
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        examples = [e for row in rows for e in examples_from_row(row, tokenizer, config)]
        return {"input_ids": [e["input_ids"] for e in examples], "labels": [e["labels"] for e in examples]}

    return dataset.with_format("numpy").map(
        expand, batched=True, batch_size=64, remove_columns=dataset.column_names, num_proc=num_proc,
        desc=f"tokenizing ({config.objective})",
    ).with_format(None)


@dataclass
class PCDataCollator:
    """Right-pads examples into tensors; padding gets ``pad_token_id`` in ``input_ids`` and -100 in ``labels``.

    Args:
        pad_token_id: the tokenizer's ``<pad>`` id.
        pad_to_multiple_of: optional length multiple.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        length = max(len(e["input_ids"]) for e in examples)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        batch = len(examples)
        input_ids = torch.full((batch, length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, length), dtype=torch.long)
        labels = torch.full((batch, length), IGNORE_INDEX, dtype=torch.long)
        for i, e in enumerate(examples):
            ids = torch.as_tensor(e["input_ids"], dtype=torch.long)
            input_ids[i, : len(ids)] = ids
            attention_mask[i, : len(ids)] = 1
            if "labels" in e:
                lab = torch.as_tensor(e["labels"], dtype=torch.long)
                if len(lab) != len(ids):
                    raise ValueError(f"example {i}: labels ({len(lab)}) and input_ids ({len(ids)}) differ in length")
                labels[i, : len(lab)] = lab
        out = {"input_ids": input_ids, "attention_mask": attention_mask}
        if any("labels" in e for e in examples):
            out["labels"] = labels
        return out
