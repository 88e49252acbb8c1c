"""MAML++'s multi-step loss weights (Antoniou et al. 2019): how much each inner step's query loss counts."""

from __future__ import annotations

import numpy as np
import torch


def msl_weights(steps: int, meta_step: int, anneal_steps: int) -> torch.Tensor:
    """MAML++ multi-step loss weights: uniform at first, annealed linearly towards the last inner step.

    As in Antoniou et al.'s code (counted in meta-steps rather than epochs): every weight but the
    last falls by ``1 / (steps * anneal_steps)`` per meta-step to a floor of ``0.03 / steps``; the last
    takes up the difference. The weights always sum to one.
    """
    weights = np.full(steps, 1.0 / steps)
    if steps == 1:
        return torch.ones(1)
    decay = 1.0 / steps / max(anneal_steps, 1)
    floor = 0.03 / steps
    weights[:-1] = max(1.0 / steps - meta_step * decay, floor)
    weights[-1] = min(1.0 / steps + meta_step * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
    return torch.tensor(weights, dtype=torch.float32)
