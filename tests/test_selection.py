"""The label-free model-selection criteria (uft.selection): each against an independent computation, and as a run
logs them (metrics.json ``selection``), from the target split's pass or, on unlabeled target data, from its own."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from uft.objectives import IM, UEO
from uft.selection import (
    SELECTION_NAMES,
    TargetCosines,
    information_maximisation,
    mean_entropy,
    objective_on,
    selection_values,
    soft_neighborhood_density,
)

from .args import demo_args


def _probs(seed: int, n: int, k: int, scale: float = 30.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(scale * torch.rand(n, k, generator=generator, dtype=torch.float64), dim=1)


def _entropy_rows(p: np.ndarray) -> np.ndarray:
    return np.array([-sum(x * math.log(x) for x in row if x > 0) for row in p])


def _snd_reference(p: np.ndarray, temperature: float = 0.05) -> float:
    """Saito et al. 2021 as written: cosine similarities of the normalised probability vectors, each row without its
    own entry, a softmax at the temperature, the mean of the rows' entropies."""
    f = p / np.linalg.norm(p, axis=1, keepdims=True)
    n = len(f)
    total = 0.0
    for i in range(n):
        s = np.array([f[i] @ f[j] for j in range(n) if j != i]) / temperature
        q = np.exp(s - s.max())
        q /= q.sum()
        total += -(q * np.log(q)).sum()
    return total / n


@pytest.mark.parametrize(("seed", "n", "k"), [(0, 40, 5), (1, 7, 3), (2, 60, 12)])
def test_entropy_and_im_match_their_formulas(seed, n, k):
    p = _probs(seed, n, k)
    conditional = _entropy_rows(p.numpy())
    marginal = _entropy_rows(p.numpy().mean(axis=0, keepdims=True))[0]
    assert mean_entropy(p) == pytest.approx(conditional.mean(), abs=1e-12)
    assert information_maximisation(p) == pytest.approx(marginal - conditional.mean(), abs=1e-12)
    assert information_maximisation(p) > 0  # random rows: a diverse marginal, so the test says something


@pytest.mark.parametrize("chunk", [1, 7, 1024])
@pytest.mark.parametrize(("seed", "n", "k"), [(0, 40, 5), (3, 23, 8)])
def test_snd_matches_the_dense_reference_in_any_chunking(seed, n, k, chunk):
    p = _probs(seed, n, k)
    assert soft_neighborhood_density(p, chunk=chunk) == pytest.approx(_snd_reference(p.numpy()), abs=1e-10)


def test_snd_is_higher_for_denser_neighbourhoods_and_undefined_for_one_sample():
    """Two tight clusters of predictions give lower-entropy neighbourhoods than uniform noise: the criterion moves the
    way the paper reads it (a sample's neighbours spread over many others = a dense neighbourhood)."""
    tight = torch.cat([_probs(0, 1, 4).repeat(20, 1), _probs(1, 1, 4).repeat(20, 1)])
    spread = _probs(2, 40, 4)
    assert soft_neighborhood_density(tight) > soft_neighborhood_density(spread) + 0.5
    assert math.isnan(soft_neighborhood_density(_probs(0, 1, 4)))


def test_selection_values_use_the_training_scale_and_the_objective():
    cosine = torch.rand(30, 6, generator=torch.Generator().manual_seed(4)) * 0.4
    values = selection_values(cosine, 50.0, lambda c: float(c.sum()))
    p = torch.softmax(50.0 * cosine.double(), dim=1)
    assert values["entropy"] == pytest.approx(mean_entropy(p)) and values["snd"] == soft_neighborhood_density(p)
    assert values["objective"] == pytest.approx(float(cosine.double().sum()))
    assert values["entropy"] < selection_values(cosine, 5.0)["entropy"] - 0.5  # the scale matters
    assert math.isnan(selection_values(cosine, 50.0)["objective"])
    assert all(math.isnan(v) for v in selection_values(torch.zeros(0, 6), 50.0).values())


def test_objective_on_takes_the_samples_rows_of_the_table():
    cosine = torch.rand(12, 4, generator=torch.Generator().manual_seed(5))
    index = torch.tensor([9, 2, 5, 0, 1, 3, 4, 6, 7, 8, 10, 11])
    weights = torch.rand(12, generator=torch.Generator().manual_seed(6)) + 0.1
    ueo = UEO()
    value = objective_on(ueo, True, weights, index, 20.0)(cosine)
    assert value == pytest.approx(float(ueo(20.0 * cosine.double(), weights[index], cosine=cosine.double())))
    assert value != pytest.approx(float(ueo(20.0 * cosine.double(), weights, cosine=cosine.double())), abs=1e-4)
    assert objective_on(ueo, True, None, index, 20.0) is None  # no table at hand (online): no value
    assert objective_on(None, False, None, index, 20.0) is None
    assert objective_on(IM(), False, None, index, 20.0)(cosine) == pytest.approx(float(IM()(20.0 * cosine.double())))


def test_target_cosines_come_back_in_sample_order():
    metric = TargetCosines(3)
    cosine = torch.arange(18, dtype=torch.float32).reshape(6, 3)
    index = torch.tensor([4, 0, 5, 2, 1, 3])
    metric.update(cosine[:4], index[:4])
    metric.update(cosine[4:], index[4:])
    got_index, got = metric.compute()
    assert got_index.tolist() == [0, 1, 2, 3, 4, 5]
    assert torch.equal(got, cosine[torch.argsort(index)])


def _logged(root) -> dict:
    (path,) = root.rglob("metrics.json")
    return json.loads(path.read_text())


def test_a_fit_logs_the_criteria_of_the_final_model_on_the_target_set(shapes_dir, tmp_path):
    """metrics.json's ``selection`` equals the criteria recomputed from the trained model's cosines over the target
    set, the UEO objective with its confidence table included."""
    from uft.cli import cli_main

    cli = cli_main(demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=1"), run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    logged = _logged(tmp_path)["selection"]
    model, data = cli.model, cli.datamodule
    cosine = model.cosine_table(data.confidence_dataloader(), data.num_target_samples)
    scale = model.hparams.logit_scale
    p = torch.softmax(scale * cosine.double(), dim=1).numpy()
    weights = model.target_table
    expected = {
        "entropy": _entropy_rows(p).mean(),
        "im": _entropy_rows(p.mean(axis=0, keepdims=True))[0] - _entropy_rows(p).mean(),
        "snd": _snd_reference(p),
        "objective": float(UEO()(scale * cosine.double(), weights, cosine=cosine.double())),
    }
    assert set(logged) == set(SELECTION_NAMES)
    for name, value in expected.items():
        assert logged[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_unlabeled_target_data_gets_the_criteria_from_its_own_pass(shapes_dir, tmp_path):
    """Without target labels no target split is evaluated; the criteria come from a pass over the unlabeled set and
    equal those of the same images evaluated with their labels."""
    from uft.cli import cli_main

    lines = (shapes_dir / "target.txt").read_text().splitlines()
    unlabeled = tmp_path / "unlabeled.txt"  # the images of the target classes (0-6 in tests/tiny.yaml) only
    unlabeled.write_text("".join(line.split()[0] + "\n" for line in lines if int(line.split()[1]) <= 6))
    cli_main(["validate", *demo_args(shapes_dir, tmp_path / "labeled")])
    cli_main(["validate", *demo_args(shapes_dir, tmp_path / "unlabeled", f"--data.train_list={unlabeled}")])
    labeled, bare = _logged(tmp_path / "labeled"), _logged(tmp_path / "unlabeled")
    assert "target" in labeled and "target" not in bare  # the premise: one evaluated the target split, one did not
    assert labeled["selection"]["objective"] is None  # validate of a model never trained: UEO has no table
    for name in ("entropy", "im", "snd"):
        assert bare["selection"][name] == pytest.approx(labeled["selection"][name], rel=1e-6), name
