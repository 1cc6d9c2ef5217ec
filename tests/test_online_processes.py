"""An online stream on 1 and 2 real processes (DDP, gloo, CPU), and killed from outside with SIGKILL then resumed:
the same predictions, row for row, the same parameters and metrics. Every run is a subprocess with a timeout."""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest
import torch

from .args import ROOT, ddp_args, demo_args
from .processes import checkpoint_step, interrupt, uft
from .test_online import TARGETS
from .tolerances import PARAM_ATOL

pytestmark = pytest.mark.slow

ONLINE = ["-c", str(ROOT / "configs" / "online.yaml")]
BATCH = 10  # 42 stream images: 4 full global batches and one of 2, padded (on 2 processes one holds only pads)
STEPS = 5


def run_args(data: Path, root: Path, *extra: str) -> list[str]:
    return [
        "fit",
        *demo_args(data, root, *ONLINE, f"--data.batch_size={BATCH}", "--data.eval_batch_size=64", *extra),
        "--trainer.callbacks+=tests.helpers.RecordTraining",
        f"--trainer.callbacks.path={root / 'record.pt'}",
    ]


def fit(args: list[str]) -> None:
    proc = uft(args)
    assert proc.returncode == 0, proc.stderr[-3000:]


def rows_of(root: Path) -> list[dict]:
    newest = max(root.rglob("predictions.csv"), key=lambda p: p.stat().st_mtime)
    with newest.open(newline="") as handle:
        return list(csv.DictReader(handle))


def metrics_of(root: Path) -> dict:
    newest = max(root.rglob("metrics.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(newest.read_text())


def assert_same_stream(a: list[dict], b: list[dict], score_atol: float) -> None:
    """Two predictions.csv of the stream: one row per image in stream order, each predicted at the same step, with
    the same scores (within ``score_atol``) and the same top classes."""
    assert [int(r["index"]) for r in a] == [int(r["index"]) for r in b] == list(range(TARGETS))
    assert [(r["path"], r["step"], r["top5"]) for r in a] == [(r["path"], r["step"], r["top5"]) for r in b]
    scores = [torch.tensor([float(r["score"]) for r in rows], dtype=torch.float64) for rows in (a, b)]
    torch.testing.assert_close(*scores, rtol=0, atol=score_atol)


def assert_same_parameters(a: dict, b: dict, atol: float) -> None:
    for name, value in a["params"].items():
        torch.testing.assert_close(b["params"][name], value, rtol=0, atol=atol, msg=name)
    moved = max(float((value - a["initial"][name]).abs().max()) for name, value in a["params"].items())
    assert moved > 100 * atol  # the stream trained: equal parameters are not equal no-ops


def test_one_and_two_processes_adapt_the_same_stream(shapes_dir, tmp_path):
    """The global batch is split over the processes as in training and the stream's order does not depend on their
    number: the same predictions (scores within float32 rounding: printed to 6 digits), parameters and online
    metrics. The last global batch holds 2 images and 8 pads: one process gets pads only."""
    fit(run_args(shapes_dir, tmp_path / "one", *ddp_args(1)))
    fit(run_args(shapes_dir, tmp_path / "two", *ddp_args(2)))
    one, two = (torch.load(tmp_path / run / "record.pt", weights_only=True) for run in ("one", "two"))
    assert (one["world_size"], two["world_size"]) == (1, 2)  # a fall-back to one process would compare 1 with 1
    assert len(one["losses"]) == len(two["losses"]) == STEPS
    assert_same_stream(rows_of(tmp_path / "one"), rows_of(tmp_path / "two"), score_atol=1e-5)
    assert_same_parameters(one, two, PARAM_ATOL)
    online = metrics_of(tmp_path / "one")["online"], metrics_of(tmp_path / "two")["online"]
    assert online[0]["samples"] == online[1]["samples"] == TARGETS
    for name in ("pacc", "gacc", "auroc", "fpr95", "hm"):
        assert online[0][name] == pytest.approx(online[1][name], abs=1e-6), name


@pytest.mark.parametrize("launch", [[], ddp_args(2)], ids=["single-device", "ddp-2"])
def test_a_stream_killed_mid_way_resumes_with_every_prediction_once(shapes_dir, tmp_path, launch):
    """SIGKILL after step 3 of 5 (every step checkpointed), then `--ckpt_path last`: the run resumes at the next
    global batch, and its predictions.csv equals the uninterrupted run's row for row (no row missing, none twice),
    its parameters and metrics too."""
    full, cut = tmp_path / "full", tmp_path / "cut"
    fit(run_args(shapes_dir, full, *launch))
    every_step = "--checkpoint.every_n_train_steps=1"
    interrupt(run_args(shapes_dir, cut, *launch, every_step), cut, 3, signal.SIGKILL)
    assert not (cut / "record.pt").exists()  # it really died
    assert not list(cut.rglob("predictions.csv"))  # before the end of the stream: nothing written yet
    killed_at = checkpoint_step(cut)
    assert 1 <= killed_at < STEPS  # killed in the middle of the stream (its last save may lag the kill by a step)
    fit(run_args(shapes_dir, cut, *launch, every_step, "--ckpt_path=last"))

    resumed, whole = (torch.load(root / "record.pt", weights_only=True) for root in (cut, full))
    assert resumed["first_step"] == killed_at and len(resumed["losses"]) == STEPS - killed_at  # no batch twice
    assert_same_stream(rows_of(full), rows_of(cut), score_atol=1e-6)
    assert_same_parameters(whole, resumed, 1e-6)
    assert metrics_of(cut)["online"] == pytest.approx(metrics_of(full)["online"], abs=1e-6)
