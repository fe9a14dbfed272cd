"""Class re-balancing sampling math (Decoupling, Kang et al., ICLR 2020, §3).

With ``n_j`` training samples in class j, ``N = sum_j n_j`` and C classes,
the Decoupling paper samples a class with probability

- Eq. (1): ``p_j = n_j^q / sum_i n_i^q``; q = 1 instance-balanced,
  q = 0 class-balanced, q = 1/2 square-root;
- Eq. (2): ``p_j(t) = (1 - t/T) * n_j/N + (t/T) * 1/C`` (progressively
  balanced, t the epoch and T the number of epochs),

and then a sample of that class. The functions here turn these into lists of
dataset indices; they are framework-free (torch only) and deterministic given
a ``torch.Generator``. The mmengine samplers in
:mod:`lt_mm.engine.samplers` wrap them.

Classes with ``n_j = 0`` can never be drawn: they get ``p_j = 0`` and C in
the class-balanced term counts only classes with ``n_j > 0``.

Multi-label samples (a detection image with several classes, a segmentation
map) may appear in several class lists; the draw is then "a class, then a
sample containing it", and the realised per-class frequencies are no longer
exactly ``p_j``.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from .checks import CountsLike, as_counts, check_range, check_size


def class_sampling_probs(counts: CountsLike, q: float) -> torch.Tensor:
    """Class sampling probabilities ``p_j ∝ n_j^q`` (Decoupling Eq. 1).

    Args:
        counts: ``n_j`` per class, shape (C,); zeros allowed (``p_j = 0``).
        q: exponent in [0, 1]: 1 instance-balanced, 0 class-balanced,
            0.5 square-root sampling.

    Returns:
        torch.Tensor: shape (C,), float64, sums to 1.
    """
    n = as_counts(counts, allow_zero=True)
    q = check_range(
        'q',
        q,
        low=0.0,
        high=1.0,
        hint='Decoupling Eq. 1 uses q in [0, 1] (1 instance-balanced, '
        '0 class-balanced, 0.5 square-root).')
    if not (n > 0).any():
        raise ValueError('counts are all zero: no class can be sampled.')
    w = torch.where(n > 0, n.pow(q), torch.zeros_like(n))
    return w / w.sum()


def progressive_class_probs(counts: CountsLike, epoch: float,
                            total_epochs: float) -> torch.Tensor:
    """Progressively-balanced probabilities (Decoupling Eq. 2).

    ``p_j(t) = (1 - t/T) * n_j / N + (t/T) * 1/C`` with t = ``epoch``
    clamped to [0, T] and T = ``total_epochs``: instance-balanced at t = 0,
    class-balanced at t = T. C counts only classes with ``n_j > 0``.

    Args:
        counts: ``n_j`` per class, shape (C,).
        epoch: t (an mmengine epoch index starts at 0).
        total_epochs: T > 0.

    Returns:
        torch.Tensor: shape (C,), float64, sums to 1.
    """
    T = check_range('total_epochs', total_epochs, low=0, low_inclusive=False)
    t = check_range('epoch', epoch)
    lam = min(max(t, 0.0), T) / T
    instance = class_sampling_probs(counts, 1.0)
    balanced = class_sampling_probs(counts, 0.0)
    return (1.0 - lam) * instance + lam * balanced


class _ShuffledCycle:
    """Endless iterator over ``items``, reshuffled each time it is used up.

    Shuffles happen lazily (first use and each exhaustion) with the shared
    generator, so the sequence is deterministic given the generator state
    and the order of calls.
    """

    def __init__(self, items: Sequence[int],
                 generator: Optional[torch.Generator]) -> None:
        self.items = list(items)
        self.generator = generator
        self.order: List[int] = []
        self.pos = 0

    def next(self) -> int:
        if self.pos >= len(self.order):
            perm = torch.randperm(
                len(self.items), generator=self.generator).tolist()
            self.order = [self.items[i] for i in perm]
            self.pos = 0
        item = self.order[self.pos]
        self.pos += 1
        return item


def _check_class_lists(class_to_indices: Sequence[Sequence[int]],
                       num_samples: int) -> int:
    if isinstance(class_to_indices,
                  (str, bytes)) or not hasattr(class_to_indices, '__len__'):
        raise ValueError('class_to_indices must be a list with, for each '
                         'class, the list of dataset indices of that class.')
    if len(class_to_indices) == 0:
        raise ValueError('class_to_indices is empty; expected one list of '
                         'dataset indices per class.')
    # check_size: an integer >= 0 (2.5 / inf / nan / True are refused with
    # a ValueError instead of being truncated or raising OverflowError)
    num_samples = check_size('num_samples', num_samples, low=0)
    if not any(len(c) for c in class_to_indices):
        raise ValueError('every class list in class_to_indices is empty: '
                         'there is nothing to sample.')
    return num_samples


def class_aware_indices(
        class_to_indices: Sequence[Sequence[int]],
        num_samples: int,
        samples_per_class: int = 4,
        generator: Optional[torch.Generator] = None) -> List[int]:
    """Class-balanced sampling, Decoupling's ``ClassAwareSampler`` scheme.

    Realises Eq. 1 with q = 0 (p_j = 1/C). The classes are visited in a
    shuffled order, reshuffled after every pass over all classes. Each visit
    takes ``samples_per_class`` consecutive samples from that class's own
    shuffled cycle (reshuffled whenever it is used up, so a class with fewer
    samples repeats them). Classes with no samples are skipped.

    Args:
        class_to_indices: for each class j, the dataset indices containing j
            (length C; a multi-label sample may be in several lists).
        num_samples: length of the returned list (the last visit may be cut).
        samples_per_class: consecutive samples per class visit (4 in the
            Decoupling configs).
        generator: torch RNG; ``None`` uses torch's global RNG.

    Returns:
        list[int]: ``num_samples`` dataset indices.
    """
    num_samples = _check_class_lists(class_to_indices, num_samples)
    spc = check_size('samples_per_class', samples_per_class, low=1)
    classes = [j for j, c in enumerate(class_to_indices) if len(c)]
    class_cycle = _ShuffledCycle(classes, generator)
    cycles = {}
    out: List[int] = []
    while len(out) < num_samples:
        j = class_cycle.next()
        if j not in cycles:
            cycles[j] = _ShuffledCycle(class_to_indices[j], generator)
        for _ in range(min(spc, num_samples - len(out))):
            out.append(cycles[j].next())
    return out


def class_weighted_indices(
        class_to_indices: Sequence[Sequence[int]],
        class_probs: CountsLike,
        num_samples: int,
        generator: Optional[torch.Generator] = None) -> List[int]:
    """Draw a class from ``class_probs``, then its next sample.

    Used for square-root (Eq. 1, q = 1/2) and progressively-balanced
    (Eq. 2) sampling: ``num_samples`` classes are drawn i.i.d. (with
    replacement) from ``class_probs``; each draw of class j yields the next
    sample of j's own shuffled cycle (reshuffled when used up), so samples
    within a class are visited without replacement as far as possible.

    Args:
        class_to_indices: for each class j, its dataset indices (length C).
        class_probs: class probabilities, shape (C,); they are normalised
            here. A class with positive probability must have samples.
        num_samples: length of the returned list.
        generator: torch RNG; ``None`` uses torch's global RNG.

    Returns:
        list[int]: ``num_samples`` dataset indices.
    """
    num_samples = _check_class_lists(class_to_indices, num_samples)
    p = as_counts(
        class_probs,
        num_classes=len(class_to_indices),
        name='class_probs',
        allow_zero=True)
    if not (p > 0).any():
        raise ValueError('class_probs are all zero.')
    empty = [
        j for j in range(len(p)) if p[j] > 0 and len(class_to_indices[j]) == 0
    ]
    if empty:
        raise ValueError(
            f'classes {empty} have a positive sampling probability but no '
            'samples; give them probability 0 (counts of 0).')
    if num_samples == 0:
        return []
    drawn = torch.multinomial(
        p / p.sum(), num_samples, replacement=True,
        generator=generator).tolist()
    cycles = {}
    out: List[int] = []
    for j in drawn:
        if j not in cycles:
            cycles[j] = _ShuffledCycle(class_to_indices[j], generator)
        out.append(cycles[j].next())
    return out
