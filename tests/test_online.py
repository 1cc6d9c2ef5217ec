"""Online adaptation (``-c configs/online.yaml``): one pass over the target list in its order, each global batch
predicted by the state before its update, the stream's metrics and predictions, the episodic policy and bad input."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from uft.cli import cli_main, main
from uft.data.lists import read_list_file
from uft.data.samplers import StreamSampler
from uft.scores import MSP

from .args import ROOT, data_args, demo_args
from .helpers import one_line
from .reference import open_set_metrics_ref

ONLINE = ["-c", str(ROOT / "configs" / "online.yaml")]
KNOWN = 5
TARGETS = 42  # the tiny shapes' target images of classes 0-6 (6 each)


def online_args(data: Path, root: Path, *extra: str) -> list[str]:
    return [*demo_args(data, root, *ONLINE, "--data.eval_batch_size=64"), *extra]


def target_labels(data: Path) -> torch.Tensor:
    samples = read_list_file(data / "target.txt", data, 8)
    return torch.tensor([s.label for s in samples if s.label < 7])


def predictions(root: Path) -> list[dict]:
    (path,) = root.rglob("predictions.csv")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------------------------------- the stream


@pytest.mark.parametrize("world_size", [1, 2, 4])
@pytest.mark.parametrize("repeats", [1, 2])
def test_the_stream_is_the_list_order_cut_into_global_batches_on_any_number_of_processes(world_size, repeats):
    """42 samples in global batches of 8: 5 full batches and one of 2, padded with the last sample to a full one;
    each served ``repeats`` times; the processes' slices put back together give the one-process stream."""
    samplers = [StreamSampler(42, 8, rank, world_size, repeats) for rank in range(world_size)]
    slices = [[i for i, _ in sampler] for sampler in samplers]
    local = 8 // world_size
    assert all(len(s) == len(samplers[0]) == 6 * repeats * local for s in slices)
    served = [sum((s[b * local : (b + 1) * local] for s in slices), []) for b in range(6 * repeats)]
    expected = [list(range(start, min(start + 8, 42))) for start in range(0, 42, 8)]
    expected[-1] += [41] * 6  # the pads: the stream's last sample, after the real rows
    assert served == [batch for batch in expected for _ in range(repeats)]


def test_a_resumed_stream_continues_at_the_next_global_batch():
    sampler = StreamSampler(42, 8, rank=1, world_size=2, repeats=2)
    sampler.skip_batches = 5  # batch 2, second serving
    assert [i for i, _ in sampler] == [20, 21, 22, 23] + [28, 29, 30, 31] * 2 + [36, 37, 38, 39] * 2 + [41] * 8


# ---------------------------------------------------------------------------------------------------- the protocol


class ScoresAroundSteps(Callback):
    """Every global batch's cosine similarities computed apart from training (evaluation mode, no gradient) with the
    state before its step and with the state after it, by sample index."""

    def __init__(self) -> None:
        self.before: dict[int, torch.Tensor] = {}
        self.after: dict[int, torch.Tensor] = {}
        self.steps: dict[int, int] = {}

    def _scores(self, pl_module, batch) -> dict[int, torch.Tensor]:
        pl_module.eval()
        with torch.no_grad():
            cosine = pl_module.cosine(batch.images)
        pl_module.train()
        return dict(zip(batch.index.tolist(), cosine))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.before.update(self._scores(pl_module, batch))
        self.steps.update(dict.fromkeys(batch.index.tolist(), trainer.global_step))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.after.update(self._scores(pl_module, batch))


def test_each_batch_is_predicted_by_the_state_before_its_update(shapes_dir, tmp_path):
    """The recorded prediction of every stream image (its MSP score, top class and step) is what the state before
    its batch's update says, computed apart; the state after the update says something else, by far more than the
    tolerance (so the comparison tells the two apart). One row per image, in list order, and the ``online`` split
    of metrics.json is the open-set metrics of those predictions (scikit-learn's, tests/reference.py)."""
    around = ScoresAroundSteps()
    cli = cli_main(online_args(shapes_dir, tmp_path, "--data.batch_size=8"), run=False)
    cli.trainer.callbacks.append(around)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    rows = predictions(tmp_path)
    assert [int(r["index"]) for r in rows] == list(range(TARGETS))  # every image once, in the list's order
    paths = [s.path for s in read_list_file(shapes_dir / "target.txt", shapes_dir, 8) if s.label < 7]
    assert [r["path"] for r in rows] == paths
    assert [int(r["step"]) for r in rows] == [i // 8 for i in range(TARGETS)]  # 6 batches, the last of 2
    before = torch.stack([around.before[i] for i in range(TARGETS)])
    after = torch.stack([around.after[i] for i in range(TARGETS)])
    score = torch.tensor([float(r["score"]) for r in rows], dtype=torch.float64)
    torch.testing.assert_close(score, MSP()(before).double(), rtol=0, atol=1e-6)
    assert [r["top5"].split(";")[0] for r in rows] == [cli.model.hparams.class_names[k] for k in before.argmax(1)]
    assert float((MSP()(after).double() - score).abs().max()) > 1e-3  # the update moved what the model says
    assert cli.trainer.global_step == 6

    metrics = json.loads(next(tmp_path.rglob("metrics.json")).read_text())
    reference = open_set_metrics_ref(before, target_labels(shapes_dir), KNOWN)
    for name, value in reference.items():
        assert metrics["online"][name] == pytest.approx(value, abs=1e-6), name
    assert metrics["online"]["samples"] == TARGETS and metrics["test"]["samples"] == 32  # and the test split after


def test_episodic_resets_restore_the_zero_shot_state_exactly(shapes_dir, tmp_path):
    """Episodic, two steps per batch: after each batch the parameters are bit for bit the zero-shot ones (and the
    optimiser's state is empty), though each batch's steps moved them far."""
    states = []

    class AfterSteps(Callback):  # runs before the module's own end-of-batch hook, which resets
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            states.append([p.detach().clone() for p in pl_module.adapted_parameters])

    extra = ["--data.batch_size=8", "--model.online.policy=episodic", "--model.online.steps_per_batch=2"]
    cli = cli_main(online_args(shapes_dir, tmp_path, *extra), run=False)
    start = [p.detach().clone() for p in cli.model.adapted_parameters]
    cli.trainer.callbacks.append(AfterSteps())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    assert cli.trainer.global_step == 12 and len(states) == 12  # 6 batches x 2 steps
    for state in states:
        assert max(float((p - s).abs().max()) for p, s in zip(state, start)) > 1e-3  # each step moved them
    for p, s in zip(cli.model.adapted_parameters, start):
        assert torch.equal(p.detach(), s)
    assert not cli.trainer.optimizers[0].state
    steps = [int(r["step"]) for r in predictions(tmp_path)]
    assert steps == [2 * (i // 8) for i in range(TARGETS)]  # predicted at each batch's first step only


def test_online_ueo_weighs_each_batch_by_the_zero_shot_model(shapes_dir, tmp_path):
    """Continual UEO: the confidence weights of every step are those of the zero-shot model (the start's context
    and norm affines) on that batch, computed apart from a model that never trained; no pass over the target set."""
    from .helpers import RecordTrainingInputs

    inputs = RecordTrainingInputs()
    extra = ["--data.batch_size=8", "--model.objective=tests.helpers.RecordingUEO", "--model.objective.tau=0.5"]
    cli = cli_main(online_args(shapes_dir, tmp_path, *extra), run=False)
    zero_shot = cli_main(online_args(shapes_dir, tmp_path / "zs", *extra), run=False).model.eval()
    cli.trainer.callbacks.append(inputs)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    assert cli.model.target_table is None  # no table over the target set
    calls = cli.model.objective.calls
    assert len(calls) == len(inputs.batches) == 6
    for (_, weights, cosine), batch in zip(calls[1:], inputs.batches[1:]):
        with torch.no_grad():
            expected = torch.softmax(zero_shot.cosine(batch.images) / 0.5, dim=-1).max(dim=-1).values
        expected = expected[: len(weights)]  # the last batch: its pads are not trained on
        torch.testing.assert_close(weights, expected, rtol=0, atol=1e-6)
        current = torch.softmax(cosine / 0.5, dim=-1).max(dim=-1).values  # the adapted model's: another thing
        assert float((current - expected).abs().max()) > 1e-4


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["--model.objective=uft.objectives.UEOOracle"], "UEOOracle builds its table from the labels"),
        (["--data.shuffle=true"], "data.shuffle=true shuffles the stream"),
        (["--trainer.max_epochs=2"], "an online run is one pass over the stream: trainer.max_epochs must be 1"),
        (["--model.online.steps_per_batch=0"], "model.online.steps_per_batch must be 1 or more, got 0"),
    ],
)
def test_bad_online_settings_are_one_line_before_any_work(shapes_dir, tmp_path, capsys, monkeypatch, extra, expected):
    def uft(args: list[str]) -> None:
        monkeypatch.setattr(sys, "argv", ["uft", *args])
        main()

    message = one_line(uft, ["fit", *online_args(shapes_dir, tmp_path / "run", *extra)], capsys)
    assert expected in message
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_segmented_stream_is_reported_per_segment(shapes_dir, tmp_path):
    """A target list cut by ``# segment`` lines (here after its 20th line: class 7's images, outside the target
    classes, are left out of the stream): metrics.json holds ``online.<segment>`` beside ``online``, each the
    open-set metrics of that segment's predictions."""
    lines = (shapes_dir / "target.txt").read_text().splitlines()
    listed = segmented_list(shapes_dir, tmp_path)
    cli = cli_main(online_args(shapes_dir, tmp_path, "--data.batch_size=8", f"--data.train_list={listed}"), run=False)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    first = sum(1 for line in lines[:20] if int(line.split()[-1]) < 7)
    assert cli.datamodule.target_segments() == [("first", range(0, first)), ("second", range(first, TARGETS))]
    metrics = json.loads(next(tmp_path.rglob("metrics.json")).read_text())
    rows = predictions(tmp_path)
    labels = target_labels(shapes_dir)
    for split, members in (("online.first", range(0, first)), ("online.second", range(first, TARGETS))):
        assert metrics[split]["samples"] == len(members)
        known = labels[list(members)] < KNOWN
        names = cli.model.hparams.class_names
        hits = [names.index(rows[i]["top5"].split(";")[0]) == int(labels[i]) for i in members]
        known_hits = [hit for hit, is_known in zip(hits, known.tolist()) if is_known]
        assert metrics[split]["gacc"] == pytest.approx(sum(known_hits) / len(known_hits), abs=1e-6)
    assert metrics["online"]["samples"] == TARGETS


def segmented_list(data: Path, folder: Path) -> Path:
    """The tiny target list cut into two segments after its 20th line."""
    lines = (data / "target.txt").read_text().splitlines()
    listed = folder / "segmented.txt"
    listed.write_text("\n".join(["# segment first", *lines[:20], "# segment second", *lines[20:]]) + "\n")
    return listed


def test_the_comparison_runner_tables_an_online_comparison(shapes_dir, tmp_path):
    """With the online overlay among its configs the runner's table is the stream's PACC, AUROC and HM overall and per
    segment, then the test split's after the pass. A trained row's online values are its fit's; the zero-shot row's
    are its target split's (a model that never changes predicts the stream as it predicts that split), per segment
    too: the evaluation of a segmented target split reports each segment."""
    from uft.harness.compare import compare, markdown_table

    extra = [
        *data_args(shapes_dir),
        "--data.eval_batch_size=64",
        "--data.batch_size=8",
        f"--data.train_list={segmented_list(shapes_dir, tmp_path)}",
    ]
    methods = [ROOT / "configs" / "method" / f"{name}.yaml" for name in ("zeroshot", "ent")]
    rows = compare([str(ROOT / "tests" / "tiny.yaml"), *ONLINE[1:]], methods, tmp_path / "out", extra)
    zero_shot, ent = rows
    splits = ["online", "online.first", "online.second", "test"]
    head = markdown_table(rows).splitlines()[0]
    assert head == "| method | " + " | ".join(f"{s} {m}" for s in splits for m in ("PACC", "AUROC", "HM")) + " |"
    for split in ("", ".first", ".second"):
        assert zero_shot.metrics["online" + split] == zero_shot.metrics["target" + split]
    counts = [ent.metrics[split]["samples"] for split in splits[:3]]
    assert counts[0] == counts[1] + counts[2] == TARGETS
    assert ent.metrics["online"]["pacc"] != zero_shot.metrics["online"]["pacc"]  # ENT adapted along the stream


def test_an_offline_comparison_on_a_segmented_stream_tables_the_target_split_per_segment():
    """Offline, the stream's numbers are the target split's (the final model on every stream image), per segment."""
    from uft.harness.compare import Row, columns

    split = {"pacc": 0.5, "auroc": 0.5, "hm": 0.5}
    row = Row("ueo", False, {"test": split, "target": split, "target.a": split, "target.b": split})
    assert [s for s, m in columns([row]) if m == "pacc"] == ["target", "target.a", "target.b", "test"]
    plain = Row("ueo", False, {"test": split, "target": split})
    assert columns([plain]) == [(s, m) for s in ("test", "target") for m in ("pacc", "gacc", "auroc", "fpr95", "hm")]


@pytest.mark.parametrize("objective", ["UPL", "POUF", "IM", "ENT"])
def test_every_objective_without_labels_runs_online(shapes_dir, tmp_path, objective):
    """UPL's pseudo-labels come from each batch's zero-shot scores (its top_k per class within the batch); IM, ENT
    and POUF run unchanged. Every stream image is predicted once and the parameters move."""
    extra = ["--data.batch_size=8", f"--model.objective=uft.objectives.{objective}"]
    cli = cli_main(online_args(shapes_dir, tmp_path, *extra), run=False)
    start = [p.detach().clone() for p in cli.model.adapted_parameters]
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert [int(r["index"]) for r in predictions(tmp_path)] == list(range(TARGETS))
    moved = max(float((p.detach() - s).abs().max()) for p, s in zip(cli.model.adapted_parameters, start))
    assert moved > 1e-4
