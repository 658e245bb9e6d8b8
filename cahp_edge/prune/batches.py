"""Tokenised batches for the selection stage (calibration, salience, sweep accuracy).

Built by :func:`cahp_edge.data.encode` (length-sorted, padded per batch); every consumer masks
padding, so the order changes speed, never a result beyond float rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass
class Batches:
    """A list of model-ready batches (dicts of tensors) with a ``labels`` entry each."""

    items: list[dict[str, torch.Tensor]]

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_examples(self) -> int:
        return sum(int(b["labels"].shape[0]) for b in self.items)

    def to(self, device: torch.device | str) -> Batches:
        return Batches([{k: v.to(device) for k, v in b.items()} for b in self.items])

    def head(self, n_examples: int) -> Batches:
        """The first batches holding at least ``n_examples`` examples (for cheap rounds)."""
        out, seen = [], 0
        for b in self.items:
            if seen >= n_examples:
                break
            out.append(b)
            seen += int(b["labels"].shape[0])
        return Batches(out)


def from_dataset(tokenizer, ds, max_length: int = 128, batch_size: int = 32) -> Batches:
    """Encode a :class:`cahp_edge.data.TextDataset` (labels already aligned with the model)."""
    from cahp_edge.data import encode

    return Batches(encode(tokenizer, ds, max_length=max_length, batch_size=batch_size))


MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's inputs only (batches also carry labels, row indices and, for taggers, word maps)."""
    return {k: v for k, v in batch.items() if k in MODEL_INPUTS}

