"""End to end through LightningCLI on the tiny CLIP: fit, validate, checkpoints, resume."""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from uft.cli import cli_main
from uft.errors import InputError
from uft.metrics import METRIC_NAMES
from uft.module import UFTModule
from uft.quiet import QUIET_LOGGERS, QUIET_WARNINGS, _QuietLightning
from uft.target_table import VALUES_KEY as TABLE_KEY

from .args import ROOT, demo_args


def metrics_of(cli) -> dict:
    return json.loads((Path(cli.trainer.log_dir) / "metrics.json").read_text())


@pytest.mark.slow
def test_validate_then_fit_then_validate_from_last_checkpoint(shapes_dir, tmp_path):
    """Zero-shot validate, fit with UEO, and a validate from last.ckpt that reproduces fit's last-epoch metrics."""
    zero_shot = cli_main(["validate", *demo_args(shapes_dir, tmp_path)])
    before = metrics_of(zero_shot)
    assert set(before) == {"test", "target", "selection"}  # selection: the label-free criteria
    assert before["test"]["samples"] == len(zero_shot.datamodule.test_samples)
    assert before["target"]["samples"] == len(zero_shot.datamodule.target_samples)
    for key, split in before.items():
        if key != "selection":
            assert set(METRIC_NAMES) <= set(split)
            assert all(0.0 <= split[name] <= 1.0 for name in METRIC_NAMES)

    fit = cli_main(["fit", *demo_args(shapes_dir, tmp_path)])
    after = metrics_of(fit)
    assert after["train"]["loss"] == pytest.approx(float(fit.trainer.callback_metrics["train/loss"]))
    assert Path(fit.trainer.log_dir) != Path(zero_shot.trainer.log_dir)  # nothing is overwritten

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    trained = {n for n, p in fit.model.named_parameters() if p.requires_grad}
    assert set(state["state_dict"]) == trained and "prompts.ctx" in trained
    assert not any(k.startswith("clip.transformer") or k == "clip.token_embedding.weight" for k in state["state_dict"])
    assert state[TABLE_KEY].shape == (len(fit.datamodule.target_samples),)
    assert state["hyper_parameters"]["model_name"] == "uft-tiny-vit"
    # The trained parameters moved away from their zero-shot values.
    assert not torch.equal(state["state_dict"]["prompts.ctx"], zero_shot.model.prompts.ctx.detach())

    for command in ("validate", "test"):
        again = cli_main([command, *demo_args(shapes_dir, tmp_path), f"--ckpt_path={ckpt}"])
        reloaded = metrics_of(again)
        for split in ("test", "target"):
            for name in METRIC_NAMES:
                assert reloaded[split][name] == pytest.approx(after[split][name], abs=1e-6), (command, split, name)
        for name, value in after["selection"].items():  # the criteria too: the objective with the checkpoint's table
            assert value is not None and reloaded["selection"][name] == pytest.approx(value, abs=1e-5), (command, name)


@pytest.mark.slow
def test_typed_arguments_win_over_the_checkpoint_and_conflicts_are_refused(shapes_dir, tmp_path):
    """With --ckpt_path the configuration comes from what the user typed: a compatible value is used (another
    logit scale; the same weights by another path), a conflicting one is refused naming both values."""
    weights = ROOT / "data" / "world" / "uft-world-vit.pt"
    world = ["--model.model_name=uft-world-vit", f"--model.pretrained={weights.relative_to(ROOT)}"]
    cli_main(["fit", *demo_args(shapes_dir, tmp_path, *world, "--trainer.max_epochs=1")])
    ckpt = f"--ckpt_path={tmp_path / 'checkpoints' / 'last.ckpt'}"

    same_weights_elsewhere = [*world[:1], f"--model.pretrained={weights}", "--model.logit_scale=50"]
    used = cli_main(["validate", *demo_args(shapes_dir, tmp_path, *same_weights_elsewhere), ckpt])
    assert used.model.hparams.logit_scale == 50 and used.model.hparams.pretrained == str(weights)

    other_weights = tmp_path / "other.pt"
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state["logit_scale"] = state["logit_scale"] + 1
    torch.save(state, other_weights)
    conflicts = [
        (["--model.model_name=uft-tiny-vit", "--model.pretrained=null"], "model_name: checkpoint 'uft-world-vit', "),
        ([*world[:1], f"--model.pretrained={other_weights}"], "weights: checkpoint 'sha256:"),
        ([*world, "--data.split.num_known=4"], "class_names: checkpoint ['circle', "),
        ([*world, "--model.ctx_init=a photo"], "context_length: checkpoint 4, configured 2"),
    ]
    for args, message in conflicts:
        with pytest.raises(InputError, match=re.escape(message)):
            cli_main(["validate", *demo_args(shapes_dir, tmp_path, *args), ckpt])
    with pytest.raises(InputError, match=re.escape("tune: checkpoint 'both', configured 'prompt'")):
        cli_main(
            ["fit", *demo_args(shapes_dir, tmp_path, *world, "--model.tune=prompt", "--trainer.max_epochs=2"), ckpt]
        )
    other = UFTModule(["a", "b"], objective=None, model_name="uft-tiny-rn", pretrained=None)
    with pytest.raises(InputError, match="model_name: checkpoint 'uft-world-vit', configured 'uft-tiny-rn'"):
        other.on_load_checkpoint(torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True))


@pytest.mark.slow
def test_resume_after_interruption_equals_uninterrupted_run(shapes_dir, tmp_path, monkeypatch):
    """Stop after epoch 1, resume with --ckpt_path last: same final metrics and parameters, no second weight pass."""
    passes = []
    original = UFTModule.cosine_table
    monkeypatch.setattr(UFTModule, "cosine_table", lambda self, *a: passes.append(1) or original(self, *a))

    full = cli_main(["fit", *demo_args(shapes_dir, tmp_path / "full")])
    assert len(passes) == 1
    cut = tmp_path / "cut"
    interrupted = cli_main(["fit", *demo_args(shapes_dir, cut), "--trainer.callbacks+=tests.helpers.StopAfterEpoch"])
    assert interrupted.trainer.current_epoch == 1 and len(passes) == 2
    resumed = cli_main(["fit", *demo_args(shapes_dir, cut), "--ckpt_path=last"])
    assert len(passes) == 2, "a resumed run must reuse the checkpoint's confidence table"
    assert resumed.trainer.current_epoch == 2

    assert metrics_of(resumed)["test"] == pytest.approx(metrics_of(full)["test"], abs=1e-6)
    assert metrics_of(resumed)["target"] == pytest.approx(metrics_of(full)["target"], abs=1e-6)
    for (name, a), b in zip(full.model.named_parameters(), resumed.model.parameters()):
        if a.requires_grad:
            torch.testing.assert_close(a, b, msg=name, rtol=0, atol=1e-6)


def test_print_config_shows_linked_and_chosen_components(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", "-c", "tests/tiny.yaml", "--print_config"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "class_path: uft.objectives.UEO" in out and "model_name: uft-tiny-vit" in out


@pytest.mark.parametrize("frozen_dtype", ["float32", "bfloat16"])
def test_bf16_mixed_precision_keeps_trained_parameters_in_float32(shapes_dir, tmp_path, frozen_dtype):
    """bf16-mixed on the CPU trains; trained parameters (and their checkpoint) stay float32; with
    frozen_dtype=bfloat16 the frozen CLIP weights take half the memory."""
    args = ["--trainer.precision=bf16-mixed", f"--model.frozen_dtype={frozen_dtype}", "--trainer.max_epochs=1"]
    fit = cli_main(["fit", *demo_args(shapes_dir, tmp_path, *args)])
    metrics = metrics_of(fit)
    assert math.isfinite(metrics["train"]["loss"]) and 0.0 <= metrics["test"]["pacc"] <= 1.0
    trained = [p for p in fit.model.parameters() if p.requires_grad]
    frozen = [p for p in fit.model.clip.parameters() if not p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    assert {p.dtype for p in frozen} == {getattr(torch, frozen_dtype)}
    state = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float32 for v in state["state_dict"].values())


def test_half_frozen_weights_need_a_mixed_precision(shapes_dir, tmp_path):
    with pytest.raises(InputError, match="frozen_dtype=bfloat16 needs a mixed trainer.precision"):
        cli_main(["fit", *demo_args(shapes_dir, tmp_path, "--model.frozen_dtype=bfloat16")])


def test_fit_and_validate_from_python(shapes_dir):
    """The Python API works as the CLI does: Trainer.fit and Trainer.validate with the data module; a model built
    for other evaluation splits than the data serves is refused."""
    from lightning.pytorch import Trainer

    from uft.data.datamodule import TargetDataModule
    from uft.data.splits import ClassSplit
    from uft.objectives import UEO

    data = TargetDataModule(
        root=str(shapes_dir),
        class_names=str(shapes_dir / "classes.txt"),
        split=ClassSplit(5, "0-6", "0-7"),
        train_list=str(shapes_dir / "target.txt"),
        test_list=str(shapes_dir / "test.txt"),
        batch_size=16,
        num_workers=0,
    )
    model = UFTModule(
        data.known_class_names, UEO(), model_name="uft-tiny-vit", pretrained=None, prompt_lr=0.01, visual_lr=0.01
    )
    trainer = Trainer(
        accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=data)
    assert model.target_table.shape == (42,)
    result = trainer.validate(model, datamodule=data)[0]  # one dict per dataloader, each with every metric
    assert result["test/samples"] == 32 and result["target/samples"] == 42

    only_test = UFTModule(data.known_class_names, model_name="uft-tiny-vit", pretrained=None, eval_splits=["test"])
    with pytest.raises(InputError, match="model.eval_splits is"):
        trainer.validate(only_test, datamodule=data)


@pytest.mark.parametrize("given, expected", [("1", 1), ("2", 2), ("1.0", 1.0), ("0.5", 0.5)])
def test_batch_limits_keep_the_type_they_were_written_in(shapes_dir, tmp_path, given, expected):
    """A whole number is a number of batches, a decimal a fraction (Lightning's Trainer alone reads 1 as 1.0: all)."""
    limits = [f"--trainer.limit_{stage}_batches={given}" for stage in ("train", "val", "test", "predict")]
    trainer = cli_main(demo_args(shapes_dir, tmp_path, *limits), run=False).trainer
    for stage in ("train", "val", "test", "predict"):
        value = getattr(trainer, f"limit_{stage}_batches")
        assert value == expected and type(value) is type(expected)


def test_limit_train_batches_1_trains_one_batch_an_epoch_and_resumes_at_the_next(shapes_dir, tmp_path):
    """42 target images in batches of 16 are 2 batches an epoch; with the limit 1, each epoch trains one, and a
    resumed run starts the next epoch (the loader's place after the cut epoch is the next epoch's start)."""
    args = demo_args(shapes_dir, tmp_path, "--trainer.limit_train_batches=1", "--trainer.max_epochs=1")
    assert cli_main(["fit", *args]).trainer.global_step == 1
    cli = cli_main(["fit", *args, "--trainer.max_epochs=3", "--ckpt_path=last"])
    assert (cli.trainer.global_step, cli.trainer.current_epoch) == (3, 3)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    loader = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]
    assert (loader["epoch"], loader["batches_done"]) == (3, 0)


@pytest.mark.parametrize("argv", [["data"], ["data", "chek"]], ids=["alone", "typo"])
def test_uft_data_without_a_known_command_names_the_commands(argv):
    proc = subprocess.run([sys.executable, "-m", "uft", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("uft: error: uft data: ")
    assert "uft data check DATASET ROOT" in proc.stderr and "uft data shard SOURCE OUT" in proc.stderr


IMPORT_FILTERS = """
import logging, warnings
import lightning.pytorch  # Lightning's own filters, set as it is imported, are not uft's

def state():
    loggers = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed")
    return list(warnings.filters), [list(logging.getLogger(name).filters) for name in loggers]

before = state()
import uft.cli
print("unchanged" if state() == before else f"changed: {before} -> {state()}")
"""


def test_importing_the_cli_sets_no_warning_or_logging_filter():
    """The runner, the tests and a user's script that import uft.cli keep their warnings and console lines."""
    proc = subprocess.run([sys.executable, "-c", IMPORT_FILTERS], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "unchanged", proc.stdout + proc.stderr


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_cli_main_hides_lightning_noise_during_its_run_only(shapes_dir, tmp_path):
    """Lightning's banners, tips and warnings that say nothing to a uft user stay hidden while cli_main builds and
    runs a fit; afterwards the warning filters and the loggers are as they were."""
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    records = _Records()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        filters, logger_filters = list(warnings.filters), [list(logger.filters) for logger in loggers]
        for logger in loggers:
            logger.addHandler(records)
        try:
            cli_main(["fit", *demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=1")])
            shown = [str(w.message) for w in caught]
            assert not [m for m in shown if any(re.match(pattern, m, re.I | re.S) for pattern in QUIET_WARNINGS)]
            assert not [m for m in records.messages if any(noise in m for noise in _QuietLightning.NOISE)]
            assert warnings.filters == filters and [logger.filters for logger in loggers] == logger_filters
            # Outside the run the same lines show again.
            warnings.warn("Found 3 module(s) in eval mode at the start of training.", UserWarning, stacklevel=1)
            loggers[0].warning("GPU available: False, used: False")
            assert "module(s) in eval mode" in str(caught[-1].message) and records.messages[-1].startswith("GPU")
        finally:
            for logger in loggers:
                logger.removeHandler(records)
