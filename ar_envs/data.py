"""Expert demonstrations: generation (and, later, saving / loading)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .core import Task, as_rng, check_int


@dataclass
class Demonstrations:
    """``n`` expert sequences: ``contexts (n, L)``, ``sequences (n, H)`` and optionally the
    expert's teacher-forced next-token distributions ``expert_probs (n, H, V)``."""

    contexts: np.ndarray
    sequences: np.ndarray
    expert_probs: np.ndarray | None = None
    task_name: str = ""
    task_args: dict = field(default_factory=dict)
    seed: int | None = None

    def __len__(self) -> int:
        return int(self.sequences.shape[0])


def generate(task: Task, n: int, seed: int | None = None, with_probs: bool = False) -> Demonstrations:
    """Sample ``n`` demonstrations from ``task``'s expert (same seed, same arrays)."""
    n = check_int("n", n, 1)
    ctx, seq = task.sample_expert(n, as_rng(seed))
    probs = task.expert_step_probs(ctx, seq) if with_probs else None
    return Demonstrations(ctx, seq, probs, task.name, task.task_args(), seed)
