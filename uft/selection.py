"""Label-free model-selection criteria: numbers computed from the model's predictions on the unlabeled target set,
which a user without labels can compare across runs (learning rates, epochs, methods) to pick one.

Each is a function of the target set's class probabilities ``p_i = softmax(logit_scale * cos_i)`` (the model's,
at its training scale), never of labels:

- ``objective``: the run's own unsupervised objective on the whole target set in one batch, ``L(logits, table)``
  with the objective's per-sample table (lower is better for the objective; NaN without an objective, or when its
  table is not at hand, as in an online run);
- ``entropy``: mean prediction entropy ``mean_i H(p_i)`` (lower: more confident);
- ``im``: the information-maximisation score ``H(mean_i p_i) - mean_i H(p_i)`` (higher: confident and diverse;
  SHOT-IM's objective with its sign turned, Liang et al., ICML 2020);
- ``snd``: soft neighbourhood density (Saito et al., "Tune it the Right Way: Unsupervised Validation of Domain
  Adaptation via Soft Neighborhood Density", ICCV 2021): with ``f_i = p_i / ||p_i||``, ``s_ij = f_i . f_j`` over
  ``j != i`` and ``q_i = softmax_j(s_ij / T)`` at ``T = 0.05``, ``SND = mean_i H(q_i)`` (higher: denser
  neighbourhoods, the paper's criterion to maximise).

Whether any of them ranks runs as their labeled test results do is an empirical question: ``docs/selection.md``
measures it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

SELECTION_SPLIT = "selection"  # the criteria's group in metrics.json and the logs: selection/<criterion>
SELECTION_NAMES = ("objective", "entropy", "im", "snd")
HIGHER_IS_BETTER = {"objective": False, "entropy": False, "im": True, "snd": True}
SND_TEMPERATURE = 0.05  # Saito et al. 2021's default
SND_CHUNK = 1024  # rows of the N x N similarity matrix held at once


def _entropy(probs: Tensor) -> Tensor:
    return -(probs * torch.log(probs.clamp_min(1e-300))).sum(dim=-1)


def mean_entropy(probs: Tensor) -> float:
    """``mean_i H(p_i)`` in nats; ``probs`` (N, K) rows summing to one."""
    return float(_entropy(probs.double()).mean())


def information_maximisation(probs: Tensor) -> float:
    """``H(mean_i p_i) - mean_i H(p_i)`` in nats: the marginal's entropy less the mean conditional entropy."""
    probs = probs.double()
    return float(_entropy(probs.mean(dim=0)) - _entropy(probs).mean())


def soft_neighborhood_density(probs: Tensor, temperature: float = SND_TEMPERATURE, chunk: int = SND_CHUNK) -> float:
    """Soft neighbourhood density of the samples' probability vectors (Saito et al., ICCV 2021; see the module
    docstring): the mean entropy of each sample's softmax over its cosine similarities to the others at
    ``temperature``. Computed ``chunk`` rows at a time, so memory stays ``chunk x N``; NaN with fewer than two
    samples."""
    n = probs.shape[0]
    if n < 2:
        return float("nan")
    features = torch.nn.functional.normalize(probs.double(), dim=1)
    total = torch.zeros((), dtype=torch.float64, device=probs.device)
    for start in range(0, n, chunk):
        rows = features[start : start + chunk] @ features.T / temperature
        rows[torch.arange(rows.shape[0]), torch.arange(start, start + rows.shape[0])] = float("-inf")  # not itself
        total += _entropy(torch.softmax(rows, dim=1)).sum()
    return float(total / n)


def selection_values(
    cosine: Tensor, logit_scale: float, objective_value: Callable[[Tensor], float] | None = None
) -> dict[str, float]:
    """Every criterion of the module docstring from the target set's cosines (N, K), in sample order.

    Args:
        cosine: cosine similarities of the readable target images with the class features, by sample index.
        logit_scale: the model's training scale: the probabilities are ``softmax(logit_scale * cosine)``.
        objective_value: the run's objective on these cosines (None: no objective, ``objective`` is NaN).
    """
    if not len(cosine):
        return dict.fromkeys(SELECTION_NAMES, float("nan"))
    probs = torch.softmax(logit_scale * cosine.double(), dim=-1)
    return {
        "objective": objective_value(cosine) if objective_value is not None else float("nan"),
        "entropy": mean_entropy(probs),
        "im": information_maximisation(probs),
        "snd": soft_neighborhood_density(probs),
    }


def objective_on(
    objective: Callable | None, needs_table: bool, table: Tensor | None, index: Tensor, logit_scale: float
) -> Callable[[Tensor], float] | None:
    """The ``objective_value`` of :func:`selection_values`: ``objective`` on the cosines of the target samples
    ``index`` (all in one batch, float64), with those samples' rows of its per-sample ``table`` when it has one; None
    without an objective or without the table it needs."""
    if objective is None or (needs_table and table is None):
        return None

    def value(cosine: Tensor) -> float:
        rows = table[index.to(table.device)] if needs_table else None
        with torch.no_grad():
            return float(objective(logit_scale * cosine.double(), rows, cosine=cosine.double()))

    return value


class TargetCosines(Metric):
    """The cosines of the target split's images with their sample indices, gathered over every process; ``compute``
    returns ``(index, cosine)`` in sample order, so the criteria see the same rows in the same order whatever the
    number of processes."""

    full_state_update = False

    def __init__(self, num_known: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_known = num_known
        # Flat float states: a process that got no batch syncs torchmetrics' empty float placeholder, of one dim.
        self.add_state("cosine", default=[], dist_reduce_fx="cat")
        self.add_state("index", default=[], dist_reduce_fx="cat")

    def update(self, cosine: Tensor, index: Tensor) -> None:
        self.cosine.append(cosine.float().flatten())
        self.index.append(index.float())

    def compute(self) -> tuple[Tensor, Tensor]:
        if len(self.index) == 0:
            return torch.zeros(0, dtype=torch.long), torch.zeros(0, self.num_known)
        index, cosine = dim_zero_cat(self.index).long(), dim_zero_cat(self.cosine).reshape(-1, self.num_known)
        order = torch.argsort(index)
        return index[order], cosine[order]
