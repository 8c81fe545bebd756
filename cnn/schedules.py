"""Learning-rate schedules: the learning rate of each epoch as a closed form of the epoch number.

Epochs count from 1, as in :func:`cnn.fit`; ``k = epoch - 1`` is the number of epochs already
trained. With base rate ``lr``, ``W`` warm-up epochs and ``E`` epochs in all, the main schedule
runs over ``T = E - W`` epochs, its own ``j = k - W`` counting from 0:

    warm-up (k < W):  lr * (k + 1) / (W + 1)          linear, reaching lr at epoch W + 1
    constant:         lr
    step:             lr * gamma ** (j // step)       times gamma every ``step`` epochs
    cosine:           lr_min + (lr - lr_min) * (1 + cos(pi * j / T)) / 2,   lr_min = min_factor * lr

These are PyTorch's ``LinearLR(start_factor=1/(W+1), total_iters=W)``, ``StepLR``,
``CosineAnnealingLR(T_max=T, eta_min=lr_min)`` chained by ``SequentialLR(milestones=[W])`` and
stepped once per epoch (tests/cnn/test_schedules.py compares them). A closed form, not a stateful
object: a run resumed from a checkpoint after epoch ``e`` gets the rates an uninterrupted run
would have had, with nothing to save.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

KINDS = ("constant", "step", "cosine")


@dataclass(frozen=True)
class Schedule:
    """``Schedule(lr, epochs, kind="constant", warmup_epochs=0, step_epochs=5, gamma=0.1, min_factor=0.0)``;
    ``schedule(epoch)`` is the learning rate of ``epoch`` (1-based)."""

    lr: float
    epochs: int
    kind: str = "constant"
    warmup_epochs: int = 0
    step_epochs: int = 5
    gamma: float = 0.1
    min_factor: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"schedule must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"learning rate must be a finite number > 0, got {self.lr!r}")
        for name, low in (("epochs", 1), ("warmup_epochs", 0), ("step_epochs", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not 0 < self.gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if not 0 <= self.min_factor <= 1:
            raise ValueError(f"min_factor must be in [0, 1], got {self.min_factor!r}")

    def __call__(self, epoch: int) -> float:
        if epoch < 1:
            raise ValueError(f"epochs count from 1, got {epoch}")
        k, w = epoch - 1, self.warmup_epochs
        if k < w:
            return self.lr * (k + 1) / (w + 1)
        j = k - w
        if self.kind == "step":
            return self.lr * self.gamma ** (j // self.step_epochs)
        if self.kind == "cosine":
            span = max(1, self.epochs - w)
            low = self.min_factor * self.lr
            return low + (self.lr - low) * (1 + math.cos(math.pi * min(j, span) / span)) / 2
        return self.lr

    def rates(self) -> list[float]:
        """The learning rate of every epoch, 1 .. ``epochs``."""
        return [self(e) for e in range(1, self.epochs + 1)]
