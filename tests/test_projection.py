import numpy as np
import pytest

from helpers.projection import nearest_centroid_accuracy, pca_2d


def test_pca_finds_the_directions_of_largest_variance():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(500, 5)) * np.array([10.0, 0.1, 3.0, 0.1, 0.1])
    projected = pca_2d(points)
    assert projected.shape == (500, 2)
    assert np.allclose(projected.mean(axis=0), 0.0)
    assert abs(np.corrcoef(projected[:, 0], points[:, 0])[0, 1]) > 0.99  # the widest axis first
    assert abs(np.corrcoef(projected[:, 1], points[:, 2])[0, 1]) > 0.99  # then the next widest


def test_nearest_centroid_accuracy_by_hand():
    points = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [3.0, 0.0]])
    labels = ["a", "a", "b", "b"]  # centres 0.5 and 6.5: the point at 3.0 sits nearer "a"
    assert nearest_centroid_accuracy(points, labels) == pytest.approx(0.75)
    assert nearest_centroid_accuracy(points[:3], labels[:3]) == 1.0
