"""What every run would print that is not the user's business, silenced once where a command starts.

Kept: what the run itself says (data, checkpoints restored, results written, warnings about the
user's own settings). Dropped: library tips and self-description repeated at every trainer
("GPU available: False", "💡 Tip: ... litlogger"), the notice that a limit of 100% uses every
batch, Optuna's study and database lines, and a deprecation inside Lightning's own code.
"""

from __future__ import annotations

import logging
import re
import warnings

NOISE = re.compile(
    r"^(GPU|TPU|HPU|IPU) available: |^💡 Tip:|litlogger|was configured so 100% of the batches will be used"
    r"|^You are using a CUDA device .* Tensor Cores"
)


class DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not NOISE.search(record.getMessage())


def quiet_libraries() -> None:
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropNoise) for f in logger.filters):
            logger.addFilter(DropNoise())
    logging.getLogger("optuna").setLevel(logging.WARNING)
    logging.getLogger("sqlalchemy").setLevel(logging.WARNING)
    # Lightning 2.6.6's CombinedLoader uses torch's pytree LeafSpec, which torch 2.13 deprecates; not ours to fix.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"optuna\..*")
