"""Look at an embedding space: project it to 2-D, and measure how well classes separate there.

Explained in notebook 04, which draws the test sentences before and after training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Coordinates along the two directions of largest variance (PCA: SVD of the centred vectors)."""
    centred = np.asarray(vectors, dtype=np.float64) - np.mean(vectors, axis=0)
    _, _, directions = np.linalg.svd(centred, full_matrices=False)
    return centred @ directions[:2].T


def nearest_centroid_accuracy(points: np.ndarray, labels: Sequence[str]) -> float:
    """Share of points closer to their own class's centre than to any other class's.

    A plain number for what a picture shows: 1.0 means the classes sit apart, chance means they overlap.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    centres = np.stack([points[labels == label].mean(axis=0) for label in classes])
    distances = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=-1)
    return float(np.mean(classes[distances.argmin(axis=1)] == labels))
