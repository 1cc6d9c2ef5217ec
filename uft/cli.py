"""The command line: ``uft fit|validate|test|predict`` through LightningCLI."""

from __future__ import annotations

import difflib
import importlib
import re
import signal
import sys
import threading
from pathlib import Path

import torch
from jsonargparse import ArgumentError
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from uft import config_files
from uft.atomic_files import WRITE_ERRORS, check_output_folder, write_error
from uft.callbacks import (
    DivergenceWatch,
    EvaluationFigures,
    GracefulStop,
    MetricsJSON,
    PredictionCSV,
    QuietSpawnedProcesses,
    RunCheckpoint,
    SkippedImagesFile,
    StreamPredictionCSV,
)
from uft.checkpoint_contents import check_checkpoint_file
from uft.data.commands import main as data_command
from uft.data.datamodule import TargetDataModule
from uft.data.samplers import per_process_batch
from uft.distributed import release_process_group
from uft.errors import Exit, InputError, UFTError, one_line_errors
from uft.loop_progress import EPOCH_END_KEY, finished, loader_state, place, saved_epoch_batches
from uft.module import UFTModule
from uft.online import check_online
from uft.quiet import quiet_lightning
from uft.run_lock import RunLock, describe_owner


class UFTTrainer(Trainer):
    """Lightning's ``Trainer``, whose batch limits keep the type they were written in: ``Trainer`` declares them
    ``float | int``, so the parser reads ``--trainer.limit_train_batches 1`` as 1.0, a fraction (the whole epoch),
    where the user asked for one batch. Here a whole number is a number of batches, a decimal a fraction (``1.0``:
    all). Everything else is ``Trainer``'s; see its arguments below."""

    def __init__(
        self,
        *,
        limit_train_batches: int | float | None = None,
        limit_val_batches: int | float | None = None,
        limit_test_batches: int | float | None = None,
        limit_predict_batches: int | float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            limit_train_batches=limit_train_batches,
            limit_val_batches=limit_val_batches,
            limit_test_batches=limit_test_batches,
            limit_predict_batches=limit_predict_batches,
            **kwargs,
        )


class UFTCLI(LightningCLI):
    """LightningCLI with the known class names linked from the data module to the model, never written twice (the
    model reads the rest of what it needs from the data through :class:`~uft.data.contract.TargetData`)."""

    _evaluation_left: Path | None = None  # a finished run's checkpoint whose final evaluation was interrupted
    _lock: RunLock | None = None  # of the run folder, held by a fit
    _checkpoint_read: dict | None = None  # --ckpt_path, read when checked before the model was built

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.known_class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")  # --checkpoint.every_n_minutes ...
        parser.add_argument(
            "--fresh",
            action="store_true",
            help="fit: start a new run although the checkpoint folder holds an earlier run's last.ckpt, which this "
            "run's first save replaces (without it, such a fit is refused: resume it with --ckpt_path last)",
        )
        parser.add_argument(
            f"--{config_files.KEY}",
            type=config_files.applied,
            default=None,
            help="in a config file: the config files applied before it (paths relative to it); on the command line "
            "give each with -c",
        )

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs):
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        # A checkpoint holds tensors and plain values only: never unpickle code from one (torch's own default,
        # stated so that it does not depend on the torch version).
        parser.set_defaults(weights_only=True)
        if subcommand == "predict":  # predictions stream to predictions.csv; none are kept in memory
            parser.set_defaults(return_predictions=False)
        if subcommand in ("validate", "test"):  # MetricsJSON prints one table (Lightning's repeats every metric)
            parser.set_defaults(verbose=False)
        return parser

    def _parse_ckpt_path(self) -> None:
        # Lightning would replace the configured model arguments with the checkpoint's hyper-parameters. Here the
        # configuration the user typed wins; the module refuses a checkpoint that cannot work with it.
        pass

    def before_instantiate_classes(self) -> None:
        # A bad checkpoint file is named before the model is built (and loaded).
        config = self.config[self.subcommand] if self.subcommand else self.config
        self._checkpoint_read = check_checkpoint_file(config.get("ckpt_path"))  # kept for `_check_resume`
        check_strategy(config.get("trainer", {}).get("strategy"))

    def before_validate(self) -> None:
        check_evaluation(self.trainer.limit_val_batches, "limit_val_batches")
        self._check_input_and_output("evaluate")

    def before_test(self) -> None:
        check_evaluation(self.trainer.limit_test_batches, "limit_test_batches")
        self._check_input_and_output("evaluate")

    def before_predict(self) -> None:
        self._check_input_and_output("predict")

    def _check_input_and_output(self, purpose: str) -> None:
        # The data is read before the run starts (Lightning would read it in `setup`, after its logger has made
        # the run's folder): a run refused for its input writes nothing. Then, before the run writes, the output.
        data = self.datamodule
        if isinstance(data, TargetDataModule):
            data.prepare_data()  # a recipe's data set, made once (every process of a launch may ask: race-safe)
            data.read()
            if purpose == "evaluate":
                data.check_evaluable()
            if purpose == "fit":
                data.check_trainable()
        check_output_folder(self.trainer.default_root_dir, "trainer.default_root_dir")

    def before_fit(self) -> None:
        if self.trainer.max_epochs == 0 or self.trainer.max_steps == 0 or self.trainer.limit_train_batches == 0:
            raise InputError("nothing to train: trainer.max_epochs, max_steps or limit_train_batches is 0")
        # Refuse a global batch that does not split over the processes before they are started (one message).
        per_process_batch(self.datamodule.batch_size, self.trainer.num_nodes * self.trainer.num_devices)
        model, trainer = self.model, self.trainer
        if isinstance(model, UFTModule):  # an online run's settings, before anything is read or written
            shuffle = getattr(self.datamodule, "shuffle", False)
            check_online(model.online, model.objective, trainer.max_epochs, trainer.max_steps, shuffle)
        self._check_input_and_output("fit")
        self._take_lock()
        try:
            self._check_resume()
        except BaseException:
            self._release_lock()
            raise

    def _check_resume(self) -> None:
        config = self.config[self.subcommand]
        ckpt_path, fresh = config.get("ckpt_path"), config.get("fresh", False)
        if fresh and ckpt_path is not None:
            rank_zero_info(f"uft: --fresh: starting a new run; --ckpt_path {ckpt_path} is not used")
            ckpt_path = self.config_init[self.subcommand]["ckpt_path"] = None
        checkpoint = self.trainer.checkpoint_callback
        if isinstance(checkpoint, RunCheckpoint):
            last = checkpoint.last_path(self.trainer)
            check_run_folder(last, ckpt_path, fresh)
            if ckpt_path == "last" and last.exists():
                ckpt_path = str(last)
        read = self._checkpoint_read if ckpt_path == config.get("ckpt_path") else None
        self._checkpoint_read = None  # not held through the run
        if ckpt_path is not None and Path(ckpt_path).is_file() and evaluation_left(Path(ckpt_path), self.trainer, read):
            self._evaluation_left = Path(ckpt_path)

    def fit(self, model, **kwargs) -> None:
        """``trainer.fit``, holding the run folder's lock (taken in ``before_fit``); for a run that finished training
        but was stopped in its final evaluation, that evaluation."""
        try:
            self._logs_named(self._fit, model, **kwargs)
        finally:
            self._release_lock()

    def validate(self, model, **kwargs) -> None:
        self._logs_named(self.trainer.validate, model, **kwargs)

    def test(self, model, **kwargs) -> None:
        self._logs_named(self.trainer.test, model, **kwargs)

    def predict(self, model, **kwargs) -> None:
        self._logs_named(self.trainer.predict, model, **kwargs)

    def _logs_named(self, run, *args, **kwargs) -> None:
        """``run``, with a failed write that names no file (a log writer's: TensorBoard on a full disk) named by the
        run's log folder."""
        try:
            run(*args, **kwargs)
        except OSError as err:
            if err.filename is not None or err.errno not in WRITE_ERRORS:
                raise
            folder = self.trainer.log_dir or self.trainer.default_root_dir
            raise write_error(f"{folder} (the run's logs)", err) from None

    def _take_lock(self) -> None:
        """The run folder's lock (:mod:`uft.run_lock`), before anything reads or writes the folder."""
        checkpoint = self.trainer.checkpoint_callback
        folder = checkpoint.last_path(self.trainer).parent if isinstance(checkpoint, RunCheckpoint) else None
        self._lock = RunLock(folder or self.trainer.default_root_dir, holder=rank_zero_only.rank == 0)
        self._lock.acquire()
        if self._lock.taken_over is not None:
            owner = describe_owner(self._lock.taken_over)
            rank_zero_info(f"uft: {self._lock.path} was left by a fit that no longer runs ({owner}): taking it over")

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _fit(self, model, **kwargs) -> None:
        if self._evaluation_left is None:
            self.trainer.fit(model, **kwargs)
            return
        rank_zero_info(
            f"uft: {self._evaluation_left} finished training but was stopped before its final evaluation: evaluating"
        )
        self.trainer.validate(
            model,
            datamodule=kwargs.get("datamodule"),
            ckpt_path=str(self._evaluation_left),
            verbose=False,
            weights_only=kwargs.get("weights_only"),
        )


def check_strategy(strategy) -> None:
    """Strategies that shard parameters across processes (FSDP, DeepSpeed) are refused before the trainer is built:
    uft trains a few thousand parameters beside a frozen CLIP that every process holds whole, and its checkpoints,
    per-sample table and metrics are written for data-parallel runs."""
    name = strategy if isinstance(strategy, str) else getattr(strategy, "class_path", None)
    if name and any(word in name.lower() for word in ("fsdp", "deepspeed")):
        raise InputError(
            f"trainer.strategy={name} is not supported: uft runs on one device or data-parallel with ddp or "
            "ddp_spawn (the trained prompt context and norm affines are small; every process holds the frozen CLIP)"
        )


def check_evaluation(limit: int | float, option: str) -> None:
    """`validate`/`test` limited to no batch stop with the reason instead of exiting 0 without metrics (data without
    an evaluation split: :meth:`~uft.data.datamodule.TargetDataModule.check_evaluable`)."""
    if limit == 0:
        raise InputError(f"nothing to evaluate: trainer.{option} is 0")


def evaluation_left(path: Path, trainer, checkpoint: dict | None = None) -> bool:
    """Whether the checkpoint at ``path`` (``checkpoint``, when read already) has training left under the trainer's
    limits (``False``), only its final evaluation (``True``), or nothing at all (refused: a finished run)."""
    if checkpoint is None:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    state = loader_state(checkpoint)
    if state is None:
        return False
    epoch_batches = saved_epoch_batches(state, trainer.limit_train_batches)
    if not finished(checkpoint, epoch_batches, trainer.max_epochs, trainer.max_steps):
        return False
    if not checkpoint.get(EPOCH_END_KEY, False):
        return True
    epochs = place(state, epoch_batches)[0]
    raise InputError(
        f"{path} holds a finished run ({epochs} epochs, step {checkpoint.get('global_step')}; trainer.max_epochs="
        f"{trainer.max_epochs}, max_steps={trainer.max_steps}): nothing to resume; to train longer raise "
        "--trainer.max_epochs, to start again use --fresh"
    )


def check_run_folder(last: Path, ckpt_path: str | None, fresh: bool) -> None:
    """One ``last.ckpt`` per run folder: a new fit never silently starts beside (or over) an earlier run."""
    if ckpt_path == "last" and not last.exists():
        rank_zero_info(f"uft: no checkpoint to resume in {last.parent}: starting from scratch")
    elif ckpt_path is None and last.exists():
        if not fresh:
            raise InputError(
                f"{last} holds an earlier run: resume it with --ckpt_path last, or start afresh with --fresh (which "
                "replaces it) or another --trainer.default_root_dir"
            )
        rank_zero_info(f"uft: --fresh: starting a new run; its first save replaces {last}")


class _ParseOnlyCLI(UFTCLI):
    """The CLI stopped after parsing: nothing (no model, no CLIP) is built."""

    def instantiate_classes(self) -> None:
        pass


def cli_main(
    args: list[str] | None = None, run: bool = True, print_table: bool = True, parse_only: bool = False
) -> UFTCLI:
    """Build (and by default run) the CLI, with Lightning's noise hidden meanwhile (:func:`quiet_lightning`);
    ``args=None`` reads ``sys.argv``. Used by the console script, the comparison runner (which prints its own table:
    ``print_table=False``, and checks every method's arguments first: ``parse_only``) and tests."""
    with quiet_lightning():
        cli = (_ParseOnlyCLI if parse_only else UFTCLI)(
            UFTModule,
            TargetDataModule,
            trainer_class=UFTTrainer,
            args=config_files.expand_includes(sys.argv[1:] if args is None else list(args)),
            run=run,
            save_config_kwargs={"overwrite": True},
            # A bad argument raises (main reports it in one line) instead of printing the whole usage first.
            parser_kwargs={"exit_on_error": False},
            trainer_defaults={
                "num_sanity_val_steps": 0,
                "callbacks": [
                    MetricsJSON(print_table=print_table),
                    SkippedImagesFile(),
                    EvaluationFigures(),
                    PredictionCSV(),
                    StreamPredictionCSV(),
                    DivergenceWatch(),
                    GracefulStop(),
                    QuietSpawnedProcesses(),
                ],
            },
        )
    if run:  # the run is over on every process (nothing collective follows): each lets go of its process group
        release_process_group()
    return cli


def describe_argument_error(err: ArgumentError) -> str:
    """jsonargparse's error in one line, with the nearest valid names for a mistyped class path."""
    message = str(err)
    key = re.search(r'Parser key "([^"]+)"', message)
    missing = re.search(r"module '([\w.]+)' has no attribute '(\w+)'", message)
    if missing:
        module, name = missing.groups()
        known = [n for n in dir(importlib.import_module(module)) if not n.startswith("_")]
        near = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(f'{module}.{n}' for n in near)}?" if near else ""
        return f"{key.group(1) + ': ' if key else ''}{module}.{name} does not exist{hint}"
    message = message.replace(key.group(0) + ":", "", 1) if key else message
    lines = [line.strip(" -") for line in message.splitlines() if line.strip(" -")]
    if not key:
        return "; ".join(lines[:2])
    reasons = [line for line in lines if not line.startswith(("Subtypes", "Errors", "Given value type"))]
    return f"{key.group(1)}: " + "; ".join(reasons[:1] + [line for line in reasons if line.startswith("Given value")])


def _quiet_write_errors(args: threading.ExceptHookArgs) -> None:
    """A writer thread's failed write (TensorBoard's, on a full disk) is not printed as a traceback: the main thread
    meets the same failure at its next write and reports it in one line."""
    if isinstance(args.exc_value, OSError) and args.exc_value.errno in WRITE_ERRORS:
        return
    sys.__excepthook__(args.exc_type, args.exc_value, args.exc_traceback)


def _one_line(err: BaseException) -> Exit | None:
    """The CLI's own one-line ends, beside :class:`~uft.errors.UFTError` (:func:`~uft.errors.one_line_errors`)."""
    if isinstance(err, ArgumentError):
        return Exit.error(describe_argument_error(err))
    # jsonargparse wraps what the constructor of a class chosen by class_path (a data recipe) raised in an error of
    # its own, several lines long: the constructor's one line is the report.
    if isinstance(err, ValueError) and isinstance(err.__cause__, UFTError):
        return Exit.error(err.__cause__)
    if isinstance(err, OSError) and err.errno in WRITE_ERRORS:
        # A write that failed mid-run (a full disk, a folder made read-only): the file is named, the run's earlier
        # files (last.ckpt) are whole (every write is atomic).
        return Exit.error(write_error(err.filename or "a log file of the run", err))
    # Lightning's SIGTERMException is a SystemExit with status 0: a stopped run must not look finished.
    if isinstance(err, SIGTERMException):
        return Exit("stopped by a signal (SIGTERM, Ctrl-C or SIGUSR1)", 128 + signal.SIGTERM)
    return None


def main() -> None:
    """Console entry point: bad input ends with one line naming the problem, not a traceback. ``uft data ...`` goes
    to :mod:`uft.data.commands`, ``uft export ...`` to :func:`uft.export_command.export_main`; everything else to
    LightningCLI."""
    threading.excepthook = _quiet_write_errors
    if sys.argv[1:2] == ["data"]:
        data_command(sys.argv[2:])
        return
    if sys.argv[1:2] == ["export"]:
        from uft.export_command import export_main  # it builds its runs through cli_main

        export_main(sys.argv[2:])
        return
    with one_line_errors(_one_line):
        cli_main()
