"""What uft relies on inside Lightning, beyond its public API: each private member uft overrides or calls, with the
parameters uft passes, and the layout of the loop state in a checkpoint that uft.loop_progress reads and rewrites.

A Lightning release that changes any of these fails here, by name, before a run or a resume goes quietly wrong
(a no-op override that no longer replaces anything, a checkpoint key that moved). ``pyproject.toml`` pins Lightning
to the minor version these were checked against; widen the pin only once this file passes on the new version."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import lightning
import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.cli import LightningCLI

import uft.callbacks
from uft.cli import UFTCLI, UFTTrainer, cli_main
from uft.data.datamodule import TargetDataModule
from uft.loop_progress import loader_state
from uft.module import UFTModule

from .args import ROOT, demo_args

PIN = re.search(r'"(lightning\b[^"]*)"', (ROOT / "pyproject.toml").read_text()).group(1)


def broken(what: str) -> str:
    """The failure message: what changed, and why the pin."""
    return (
        f"Lightning {lightning.__version__}: {what}. pyproject.toml pins {PIN} because uft relies on this; adapt uft "
        "(and tests/test_lightning_contract.py) before widening the pin"
    )


@dataclass(frozen=True)
class Member:
    """A private member of a Lightning class that uft overrides or uses, and where."""

    owner: str  # the class, as module.name
    name: str
    params: tuple[str, ...] | None  # a method's parameters as uft calls or overrides it; None: an attribute
    used_by: str

    def __str__(self) -> str:
        return f"{self.owner.rpartition('.')[2]}.{self.name} ({self.used_by})"

    def owner_class(self) -> type:
        module, _, name = self.owner.rpartition(".")
        owner = getattr(importlib.import_module(module), name, None)
        assert isinstance(owner, type), broken(f"{self.owner} no longer exists, so neither does {self}")
        return owner


CLI, CHECKPOINT = "lightning.pytorch.cli.LightningCLI", "lightning.pytorch.callbacks.ModelCheckpoint"
MEMBERS = [
    Member(
        CLI,
        "_prepare_subcommand_parser",
        ("self", "klass", "subcommand", "kwargs"),
        "overridden by UFTCLI: the weights_only, return_predictions and verbose defaults of the subcommands",
    ),
    Member(
        CLI,
        "_parse_ckpt_path",
        ("self",),
        "overridden by UFTCLI as a no-op: the typed configuration wins over a checkpoint's hyper-parameters",
    ),
    Member(CHECKPOINT, "_save_checkpoint", ("self", "trainer", "filepath"), "overridden by RunCheckpoint: atomic"),
    Member(
        CHECKPOINT,
        "_save_last_checkpoint",
        ("self", "trainer", "monitor_candidates"),
        "called by RunCheckpoint._save_last",
    ),
    Member(CHECKPOINT, "_should_skip_saving_checkpoint", ("self", "trainer"), "called by RunCheckpoint._save_last"),
    Member(
        CHECKPOINT,
        "_find_last_checkpoints",
        ("self", "trainer"),
        "overridden by RunCheckpoint: --ckpt_path last resolved before setup",
    ),
    Member(CHECKPOINT, "_monitor_candidates", ("self", "trainer"), "called by RunCheckpoint._save_last"),
    Member(CHECKPOINT, "_last_global_step_saved", None, "read by RunCheckpoint._save_last"),
    Member(CHECKPOINT, "_last_checkpoint_saved", None, "set by RunCheckpoint._save_checkpoint"),
    Member(CHECKPOINT, "CHECKPOINT_NAME_LAST", None, "RunCheckpoint.last_path"),
    Member(CHECKPOINT, "FILE_EXTENSION", None, "RunCheckpoint.last_path and checked_path"),
    Member(
        "lightning.pytorch.LightningModule",
        "_trainer",
        None,
        "read by UFTModule: whether it is attached to a trainer (the trainer property raises where it is not)",
    ),
    Member(
        "lightning.pytorch.loops._FitLoop",
        "reset_restart_stage",
        ("self",),
        "called by RunCheckpoint.on_train_epoch_end: the epochs after a resumed one are new",
    ),
]


@pytest.mark.parametrize("member", MEMBERS, ids=str)
def test_lightning_has_each_member_uft_relies_on(member):
    owner = member.owner_class()
    if member.params is None:  # an attribute: of the class, or set on each instance
        assert member.name in _lightning_names(owner), broken(f"{member} no longer exists")
        return
    # Defined on the class itself: an inherited default (the base loop's reset_restart_stage is a no-op) would pass
    # a signature check and do nothing.
    assert member.name in vars(owner), broken(f"{member} is no longer defined on {owner.__name__}")
    params = tuple(inspect.signature(vars(owner)[member.name]).parameters)
    assert params == member.params, broken(f"{member} now takes {params}, uft passes {member.params}")


def test_the_cli_is_built_with_the_arguments_uft_passes():
    params = inspect.signature(LightningCLI.__init__).parameters
    for name in ("trainer_class", "trainer_defaults", "parser_kwargs", "save_config_kwargs", "args", "run"):
        assert name in params, broken(f"LightningCLI no longer takes {name} (uft.cli.cli_main passes it)")


# --- no private member beyond the list ----------------------------------------------------------------------------


def _private_names(cls: type) -> tuple[set[str], set[str]]:
    """The private names ``cls``'s own source defines (methods, class attributes, ``self._x = ...``) and those it
    reads or calls on ``self`` or ``super()``."""
    defined, used = set(), set()
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(cls)))):
        if isinstance(node, ast.FunctionDef):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            defined.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Attribute):
            on_self = isinstance(node.value, ast.Name) and node.value.id == "self"
            on_super = isinstance(node.value, ast.Call) and getattr(node.value.func, "id", None) == "super"
            if on_self and isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
            elif on_self or on_super:
                used.add(node.attr)

    def private(names):
        return {n for n in names if n.startswith("_") and not n.startswith("__")}

    return private(defined), private(used)


def _is_callback(value) -> bool:
    return isinstance(value, type) and issubclass(value, Callback)


def _lightning_names(base: type) -> set[str]:
    """Every name a Lightning class has: its attributes and the ``self._x`` its classes (and their bases) set."""
    names = set(dir(base))
    for klass in base.__mro__:
        if klass.__module__.startswith("lightning"):
            names |= _private_names(klass)[0]
    return names


EXPORTED = map(uft.callbacks.__dict__.get, uft.callbacks.__all__)
SUBCLASSES = [UFTCLI, UFTTrainer, UFTModule, TargetDataModule, *(c for c in EXPORTED if _is_callback(c))]


@pytest.mark.parametrize("cls", SUBCLASSES, ids=lambda c: c.__name__)
def test_uft_relies_on_no_other_private_member(cls):
    """A private name that uft's subclass defines and Lightning has too, or one it uses without defining it, is in
    :data:`MEMBERS`: a new Lightning member of the same name as one of uft's own would be overridden unawares."""
    base = next(k for k in cls.__mro__[1:] if k.__module__.startswith("lightning"))
    known = {m.name for m in MEMBERS if issubclass(base, m.owner_class())}
    defined, used = _private_names(cls)
    overridden = sorted(defined & _lightning_names(base) - known)
    assert not overridden, broken(
        f"{cls.__name__} defines {', '.join(overridden)}, which {base.__name__} now has too: rename uft's, or add an "
        "intended override to MEMBERS"
    )
    relied_on = sorted(used - defined - known)
    assert not relied_on, f"{cls.__name__} uses Lightning's private {', '.join(relied_on)}: add them to MEMBERS"


# --- a fit: the subcommand dispatch and the checkpoint's loop state -----------------------------------------------

PROGRESS = ("ready", "started", "processed", "completed")


def _at(checkpoint: dict, *keys):
    """``checkpoint[k1][k2]...``, failing with the key path that is missing."""
    value = checkpoint
    for depth, key in enumerate(keys):
        assert isinstance(value, dict) and key in value, broken(
            f"a checkpoint has no {'.'.join(map(str, keys[: depth + 1]))} (read by uft.loop_progress)"
        )
        value = value[key]
    return value


def test_a_fit_runs_through_uft_overrides_and_saves_the_loop_state_uft_reads(shapes_dir, tmp_path, monkeypatch):
    called = []

    def recorded(name):
        original = getattr(UFTCLI, name)

        def run(self, *args, **kwargs):
            called.append(name)
            return original(self, *args, **kwargs)

        return run

    for name in ("fit", "_parse_ckpt_path"):  # run by LightningCLI by name: the subcommand, the no-op override
        monkeypatch.setattr(UFTCLI, name, recorded(name))
    cli = cli_main(["fit", *demo_args(shapes_dir, tmp_path, "--trainer.max_epochs=1")])
    assert "_parse_ckpt_path" in called, broken("LightningCLI no longer calls _parse_ckpt_path (UFTCLI's no-op)")
    assert "fit" in called, broken("LightningCLI runs `fit` without UFTCLI.fit (which holds the run folder's lock)")
    assert type(cli.trainer) is UFTTrainer, broken("the trainer is not built from trainer_class")
    defaults = "UFTCLI._prepare_subcommand_parser's defaults (weights_only) are no longer applied"
    assert cli.config["fit"].get("weights_only") is True, broken(defaults)
    assert "reset_restart_stage" in vars(type(cli.trainer.fit_loop)), broken(
        f"the trainer's fit loop ({type(cli.trainer.fit_loop).__name__}) defines no reset_restart_stage"
    )

    checkpoint = torch.load(Path(tmp_path, "checkpoints", "last.ckpt"), map_location="cpu", weights_only=True)
    fit_loop = ("loops", "fit_loop")
    for part in ("total", "current"):
        for key in PROGRESS:
            assert isinstance(_at(checkpoint, *fit_loop, "epoch_progress", part, key), int)
            assert isinstance(_at(checkpoint, *fit_loop, "epoch_loop.batch_progress", part, key), int)
    _at(checkpoint, *fit_loop, "epoch_loop.batch_progress", "is_last_batch")
    assert _at(checkpoint, *fit_loop, "epoch_loop.state_dict", "_batches_that_stepped") == checkpoint["global_step"]
    loaders = _at(checkpoint, *fit_loop, "state_dict", "combined_loader")
    assert isinstance(loaders, list) and loader_state(checkpoint) == loaders[0], broken(
        "the training loader's state is no longer state_dict.combined_loader[0] of the fit loop"
    )
    assert {"epoch", "batches_done", "num_samples", "batch_size"} <= set(loaders[0])
