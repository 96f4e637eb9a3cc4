"""Zero-padding of a batch to a fixed size (one home for the rule; numpy only).

Compiled networks are traced once per input shape (a JAX compile of B0 takes seconds), so
every caller feeds fixed batch sizes and pads the last, partial batch with zero images.
"""

from __future__ import annotations

import numpy as np


def pad_batch(batch: np.ndarray, size: int) -> np.ndarray:
    """``batch`` with zero rows appended up to ``size`` rows, or itself when it has enough."""
    missing = size - len(batch)
    if missing <= 0:
        return batch
    return np.concatenate([batch, np.zeros((missing, *batch.shape[1:]), batch.dtype)])
