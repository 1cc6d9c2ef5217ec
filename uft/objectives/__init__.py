"""Unsupervised objectives: plain ``nn.Module`` losses over class logits, no Lightning imports.

Each is chosen in YAML by ``class_path`` (``uft.objectives.UEO``) with its ``init_args``; see
:class:`~uft.objectives.base.Objective` for the interface.
"""

from uft.objectives.base import Objective
from uft.objectives.entropy import ENT, IM, UEO, UEOOracle
from uft.objectives.pseudo_label import UPL
from uft.objectives.transport import POUF

__all__ = ["ENT", "IM", "POUF", "UEO", "UPL", "Objective", "UEOOracle"]
