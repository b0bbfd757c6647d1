"""Frechet distance, streaming statistics, kernel distance, Inception Score, and the statistics cache."""

import json

import numpy as np
import pytest

from vidgan.metrics import frechet
from vidgan.metrics.frechet import (
    CachedFeatures,
    FeatureStats,
    cache_key,
    frechet_distance,
    frechet_distance_rows,
    frechet_distance_sqrtm,
    kernel_distance,
    load_cached,
    save_cached,
    stats_distance,
)
from vidgan.metrics.inception_score import inception_score


def _random_cov(rng, d, scale=1.0):
    a = rng.normal(size=(d, d))
    return scale * (a @ a.T / d + 0.1 * np.eye(d))


def test_frechet_closed_form_for_commuting_gaussians():
    # Diagonal covariances commute: FD = |mu1 - mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert expected == pytest.approx(1 + 0 + 6.25 + 4 + 1 + 0)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    # A shared rotation changes nothing: R a R^T and R b R^T still commute.
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    assert frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T) == pytest.approx(expected, rel=1e-10)


def test_frechet_matches_scipy_sqrtm_formula_and_is_symmetric_and_zero_for_identical():
    rng = np.random.default_rng(1)
    for d in (5, 40):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = _random_cov(rng, d), _random_cov(rng, d, 3.0)
        ours = frechet_distance(mu1, s1, mu2, s2)
        assert ours == pytest.approx(frechet_distance_sqrtm(mu1, s1, mu2, s2), rel=1e-6)
        assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(ours, rel=1e-9)
        assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8 * np.trace(s1))


def test_rows_route_equals_covariance_route_with_fewer_rows_than_dimensions():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 64)) @ rng.normal(size=(64, 64)) * 0.2
    y = rng.normal(size=(45, 64)) + 0.3
    a, b = FeatureStats.from_features(x), FeatureStats.from_features(y)
    by_cov = frechet_distance(a.mean, a.cov, b.mean, b.cov)  # singular covariances (rank < d)
    assert frechet_distance_rows(x, y) == pytest.approx(by_cov, rel=1e-6)
    assert frechet_distance_sqrtm(a.mean, a.cov, b.mean, b.cov) == pytest.approx(by_cov, rel=1e-5)
    kept_a, kept_b = FeatureStats.from_features(x, True), FeatureStats.from_features(y, True)
    assert stats_distance(kept_a, kept_b) == pytest.approx(by_cov, rel=1e-6)
    assert frechet_distance_rows(x, x) == pytest.approx(0.0, abs=1e-9 * np.trace(a.cov))


def test_streaming_statistics_equal_one_shot_statistics():
    rng = np.random.default_rng(3)
    x = rng.normal(loc=100.0, size=(103, 7))  # a large mean: the naive sum-of-squares update would lose digits
    stats = FeatureStats(keep_features=True)
    for chunk in np.array_split(x, [1, 10, 11, 60]):
        stats.append(chunk)
    assert stats.count == 103
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False, bias=True), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(stats.features, x.astype(np.float32))
    # merging partial statistics (as from several processes) gives the same
    left, right = FeatureStats.from_features(x[:40]), FeatureStats.from_features(x[40:])
    left.merge(right)
    np.testing.assert_allclose(left.cov, stats.cov, rtol=1e-10)
    with pytest.raises(ValueError, match="width"):
        stats.append(np.zeros((2, 3)))


def test_kernel_distance_is_unbiased_for_equal_distributions():
    rng = np.random.default_rng(4)
    same = [kernel_distance(rng.normal(size=(60, 8)), rng.normal(size=(60, 8)), num_subsets=10, seed=i)[0] for i in range(40)]
    shifted = kernel_distance(rng.normal(size=(60, 8)), rng.normal(loc=0.7, size=(60, 8)), num_subsets=10)[0]
    mean, sem = np.mean(same), np.std(same) / np.sqrt(len(same))
    assert abs(mean) < 3 * sem  # an unbiased estimator: values scatter around 0, some negative
    assert min(same) < 0
    assert shifted > 10 * np.std(same)


def test_inception_score_closed_form():
    confident = np.eye(10)[np.arange(100) % 10]  # each sample certain, classes spread evenly
    assert inception_score(confident, splits=10)[0] == pytest.approx(10.0)
    uniform = np.full((100, 10), 0.1)  # no sample is certain of anything
    assert inception_score(uniform, splits=10)[0] == pytest.approx(1.0)
    one_class = np.eye(10)[np.zeros(100, int)]  # all the same class
    assert inception_score(one_class, splits=5)[0] == pytest.approx(1.0)


def test_cache_round_trip_without_pickle_and_keys(tmp_path):
    rng = np.random.default_rng(5)
    kept = FeatureStats.from_features(rng.normal(size=(20, 6)), keep_features=True)
    entry = CachedFeatures(kept, np.arange(40).reshape(20, 2), {"source": {"path": "x"}})
    path = tmp_path / "stats.npz"
    save_cached(path, entry)
    with np.load(path, allow_pickle=False) as z:  # plain arrays only: loads with pickles refused
        assert set(z.files) == {"refs", "meta", "features"}
        assert json.loads(str(z["meta"])) == {"source": {"path": "x"}}
    back = load_cached(path, need_features=True)
    np.testing.assert_allclose(back.stats.cov, kept.cov, rtol=1e-6)
    np.testing.assert_array_equal(back.refs, entry.refs)

    stats_only = FeatureStats.from_features(rng.normal(size=(20, 6)))
    save_cached(path, CachedFeatures(stats_only, np.zeros((20, 2), int)))
    assert load_cached(path, need_features=True) is None  # rows needed but not stored: recompute
    np.testing.assert_array_equal(load_cached(path, need_features=False).stats.m2, stats_only.m2)
    path.write_bytes(b"not an npz")
    assert load_cached(path, need_features=False) is None  # a damaged cache file is recomputed

    protocol = {"frames": 16, "n": 2048}
    key = cache_key("dataset:abc", protocol, "effnet")
    assert key == cache_key("dataset:abc", dict(protocol), "effnet")
    assert key != cache_key("dataset:abd", protocol, "effnet")
    assert key != cache_key("dataset:abc", {"frames": 8, "n": 2048}, "effnet")
    assert key != cache_key("dataset:abc", protocol, "i3d")
    assert frechet.default_cache_dir().name == "metrics"
