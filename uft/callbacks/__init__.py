"""Callbacks of the harness, one job each: the run's checkpoint (:mod:`~uft.callbacks.checkpoint`), stopping on
divergence (:mod:`~uft.callbacks.divergence`) and on a signal (:mod:`~uft.callbacks.stop`), the run summary
``metrics.json`` (:mod:`~uft.callbacks.summary`), the list of unreadable images ``skipped_images.txt``
(:mod:`~uft.callbacks.skipped`), pictures (:mod:`~uft.callbacks.figures`), ``predictions.csv`` of a prediction or
of an online stream (:mod:`~uft.callbacks.predictions`), and Lightning's noise hidden in spawned processes
(:mod:`~uft.callbacks.quiet`)."""

from uft.callbacks.checkpoint import RunCheckpoint
from uft.callbacks.divergence import DivergenceWatch
from uft.callbacks.figures import EvaluationFigures
from uft.callbacks.predictions import PredictionCSV, StreamPredictionCSV
from uft.callbacks.quiet import QuietSpawnedProcesses
from uft.callbacks.skipped import SkippedImagesFile
from uft.callbacks.stop import GracefulStop
from uft.callbacks.summary import MetricsJSON, metrics_table

__all__ = [
    "DivergenceWatch",
    "EvaluationFigures",
    "GracefulStop",
    "MetricsJSON",
    "PredictionCSV",
    "QuietSpawnedProcesses",
    "RunCheckpoint",
    "SkippedImagesFile",
    "StreamPredictionCSV",
    "metrics_table",
]
