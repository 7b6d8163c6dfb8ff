"""Figures every model card reports, defined once for the visual and the acoustic models.

The evaluation of replays on a line (``edge_inspector.evaluation``) counts decisions; these are
the threshold-free figures of scores against ground truth, which only training and evaluation need.
"""

from __future__ import annotations

import numpy as np


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) formula, ties averaged.

    ``positive`` marks the defective (faulty) samples; NaN when either class is absent.
    """
    scores = np.asarray(scores, np.float64)
    positive = np.asarray(positive, bool)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average the ranks of tied scores
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc_of(negatives: np.ndarray, positives: np.ndarray) -> float:
    """:func:`auroc` of good (``negatives``) against defective (``positives``) scores."""
    negatives, positives = np.ravel(negatives), np.ravel(positives)
    return auroc(np.concatenate([negatives, positives]),
                 np.concatenate([np.zeros(len(negatives), bool), np.ones(len(positives), bool)]))
