"""The command line: ``uft fit|validate|test|predict`` through LightningCLI."""

from __future__ import annotations

import signal
import sys
import warnings

from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from uft.callbacks import MetricsJSON, RunCheckpoint
from uft.data.datamodule import TargetDataModule
from uft.data.samplers import per_process_batch
from uft.errors import InputError
from uft.module import UFTModule

# The frozen CLIP stays in eval mode on purpose (see UFTModule.train); Lightning's warning about it is noise.
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode.*")
# Every process computes every split's metrics (a collective), also where it saw no batch of that split.
warnings.filterwarnings("ignore", message=r".*was called before the ``update`` method.*")
# Logged metrics are computed from states already gathered over all processes: the same value on each.
warnings.filterwarnings("ignore", message=r".*It is recommended to use `self.log\('(test|target)/.*sync_dist=True.*")


class UFTCLI(LightningCLI):
    """LightningCLI with what the model learns from the data (known class names, evaluation split names) linked
    from the data module, never written twice."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.known_class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.eval_splits", "model.eval_splits", apply_on="instantiate")

    def before_fit(self) -> None:
        # Refuse a global batch that does not split over the processes before they are started (one message).
        per_process_batch(self.datamodule.batch_size, self.trainer.num_nodes * self.trainer.num_devices)


def cli_main(args: list[str] | None = None, run: bool = True) -> UFTCLI:
    """Build (and by default run) the CLI; ``args=None`` reads ``sys.argv``. Used by the console script and tests."""
    return UFTCLI(
        UFTModule,
        TargetDataModule,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"num_sanity_val_steps": 0, "callbacks": [RunCheckpoint(), MetricsJSON()]},
    )


def main() -> None:
    """Console entry point: bad input ends with one line naming the problem, not a traceback."""
    try:
        cli_main()
    except InputError as err:
        print(f"uft: error: {err}", file=sys.stderr)
        sys.exit(2)
    except SIGTERMException:  # Lightning's is a SystemExit with status 0: a stopped run must not look finished
        print("uft: stopped by SIGTERM", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
