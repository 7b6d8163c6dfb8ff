"""Evaluation of a replay against ground-truth labels: metrics, HTML report, JSON figures.

``replay --labels FILE`` builds an :class:`Evaluation` from the labels CSV (format in
:mod:`edge_inspector.evaluation.labels`), feeds it every verdict, and writes the report.
"""

from edge_inspector.evaluation.collector import Evaluation
from edge_inspector.evaluation.labels import Labels, load_labels

__all__ = ["Evaluation", "Labels", "load_labels"]
