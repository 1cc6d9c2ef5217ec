"""``skipped_images.txt``: the run's unreadable images, listed as they are found."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from uft.atomic_files import write_text
from uft.data.contract import SkippedImagesRecord
from uft.data.skipped import SkippedImages


class SkippedImagesFile(Callback):
    """Writes ``skipped_images.txt`` (``split<TAB>path<TAB>reason`` per unreadable image) into the run's log
    directory whenever the data's record of unreadable images (:class:`~uft.data.contract.SkippedImagesRecord`)
    changes, also when too many of them stop the run, and at the end prints how many were skipped. On several
    processes rank 0 writes it (every process holds the same record). Without unreadable images there is no file.

    Args:
        filename: name of the file inside the log directory.
    """

    def __init__(self, filename: str = "skipped_images.txt") -> None:
        self.filename = filename

    def _path(self, trainer: Trainer) -> Path:
        return Path(trainer.log_dir or trainer.default_root_dir) / self.filename  # log_dir: a broadcast under DDP

    def _write(self, trainer: Trainer, record: SkippedImages) -> None:
        if len(record):
            _write_lines(self._path(trainer), record.lines())

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if isinstance(data, SkippedImagesRecord):
            record = data.skipped_images
            record.on_change = lambda: self._write(trainer, record)
            self._write(trainer, record)  # found by verify_images in the data's setup, which runs first

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # Too many unreadable images found by the data's setup stop the run before `setup` above.
        if isinstance(trainer.datamodule, SkippedImagesRecord):
            self._write(trainer, trainer.datamodule.skipped_images)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        data = trainer.datamodule
        if isinstance(data, SkippedImagesRecord):
            data.skipped_images.on_change = None
            if len(data.skipped_images):
                record = data.skipped_images
                rank_zero_info(f"uft: {record.summary(record.totals())}; listed in {self._path(trainer)}")


@rank_zero_only
def _write_lines(path: Path, lines: list[str]) -> None:
    write_text(path, "".join(line + "\n" for line in lines))
