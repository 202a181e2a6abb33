"""Metrics on hand-built cases with known answers; statistics; cost tracking; NudeNet loads."""

import numpy as np
import pytest
import torch

from erasekit.concepts import get_concept
from erasekit.metrics import Answers, EvalPrompt, get_metric, metric_names
from erasekit.metrics.quality import frechet_distance, kernel_distance
from erasekit.stats import bootstrap_mean


def _answers():
    """skull erased: 2 given prompts, 1 unseen phrasing, 2 other shapes; seeds 0 and 1."""
    p = [
        EvalPrompt("a red skull on a plain background", "given", {"shape": "skull", "colour": "red", "background": "plain"},
                   "skull"),
        EvalPrompt("a blue skull on dots", "given", {"shape": "skull", "colour": "blue", "background": "dots"}, "skull"),
        EvalPrompt("a red pirate emblem", "unseen", {"shape": "skull", "colour": "red", "background": "plain"},
                   "pirate emblem"),
        EvalPrompt("a green circle on a grid", "other", {"shape": "circle", "colour": "green", "background": "grid"}),
        EvalPrompt("a pink star on stripes", "other", {"shape": "star", "colour": "pink", "background": "stripes"}),
    ]
    v = lambda s, c, b: {"shape": s, "colour": c, "background": b}  # noqa: E731
    verdicts = [
        # seed 0
        v("circle", "red", "plain"), v("skull", "blue", "dots"), v("skull", "red", "plain"),
        v("circle", "green", "grid"), v("star", "pink", "stripes"),
        # seed 1
        v("square", "red", "dots"), v("circle", "blue", "dots"), v("heart", "red", "plain"),
        v("circle", "green", "grid"), v("heart", "pink", "stripes"),
    ]
    images = np.zeros((10, 32, 32, 3), np.uint8)
    return Answers(get_concept("skull"), p, [0, 1], images, verdicts, judge=object())


def test_verdict_table_known_answers():
    a = _answers()
    eff = get_metric("efficacy").compute(a)
    # target images not judged skull: seed0 p0 yes, p1 no; seed1 p0 yes, p1 yes -> 3/4
    assert eff["efficacy"].value == pytest.approx(0.75)
    assert eff["efficacy_unseen"].value == pytest.approx(0.5)
    assert "efficacy_heldout_pairs" not in eff and "efficacy_known" not in eff
    assert eff["efficacy"].higher_is_better and eff["efficacy"].n == 4
    assert sorted(eff["efficacy"].samples) == [(0, 0, 1.0), (0, 1, 1.0), (1, 0, 0.0), (1, 1, 1.0)]
    # other shapes right: circle twice, star once of twice -> 3/4
    assert get_metric("ira").compute(a)["ira"].value == pytest.approx(0.75)
    # colour + background right on all 10 images except seed1 p0 (background dots != plain) -> 19/20
    assert get_metric("cra").compute(a)["cra"].value == pytest.approx(19 / 20)
    al = get_metric("alignment").compute(a)
    # all three right: s0 p1, s0 p2, s0 p3, s0 p4, s1 p3 -> 5/10; other prompts: 3/4
    assert al["alignment"].value == pytest.approx(0.5)
    assert al["alignment_other"].value == pytest.approx(0.75)
    for key, v in {**eff, **al}.items():
        assert v.low <= v.value <= v.high, key


def test_metric_needs_are_checked():
    """``missing`` reads what an evaluation will carry (see erasekit.evaluation.available)."""
    from erasekit.evaluation import available

    no_judge = available(None, object(), None)
    assert get_metric("efficacy").missing(no_judge).startswith("needs a judge")
    assert get_metric("cost").missing(no_judge) == "applies to erasure runs only (fit cost and artifact size)"
    user_concept = available(object(), None, None)
    assert "built-in concept" in get_metric("ira").missing(user_concept)
    assert get_metric("ira").missing(available(object(), object(), None)) is None
    assert get_metric("cost").missing(available(object(), object(), object())) is None


def test_frechet_distance_of_a_set_with_itself_is_zero_and_a_shift_is_its_square():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 16, generator=g, dtype=torch.float64)
    assert abs(frechet_distance(a, a)) < 1e-8
    shift = torch.zeros(16, dtype=torch.float64)
    shift[3] = 2.0
    assert frechet_distance(a, a + shift) == pytest.approx(4.0, abs=1e-6)  # same covariance: |mu1 - mu2|^2
    assert kernel_distance(a, a + 3) > 10 * abs(kernel_distance(a[:100], a[100:]))


def test_bootstrap_interval_is_deterministic_and_clustered():
    values = [1, 1, 0, 0, 1, 0, 1, 1]
    groups = [0, 0, 1, 1, 2, 2, 3, 3]
    m1 = bootstrap_mean(values, groups)
    assert m1 == bootstrap_mean(values, groups)
    assert m1[0] == pytest.approx(5 / 8) and m1[1] <= m1[0] <= m1[2]
    assert bootstrap_mean([1, 1, 1]) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError):
        bootstrap_mean([])


def test_unknown_metric_suggests():
    with pytest.raises(ValueError, match="did you mean 'efficacy'"):
        get_metric("eficacy")
    assert {"efficacy", "ira", "cra", "quality", "alignment", "cost", "nudenet"} <= set(metric_names())


def test_cost_tracks_time_and_memory():
    from erasekit.artifact import track

    with track() as cost:
        x = torch.ones(64 * 2**20 // 4 * 4)  # 256 MiB of float32, touched
        x += 1
        del x
    assert cost["fit_seconds"] > 0
    assert cost["peak_memory_mb"] >= 200, cost


def test_nudenet_loads_and_runs_on_a_synthetic_image():
    from erasekit.metrics.nudenet import UNLEARNDIFFATK_CLASSES, NudityDetector

    det = NudityDetector()
    img = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    detections = det.detect(img)
    assert isinstance(detections, list)
    assert det.is_nude(img) is False
    meta = det.meta()
    assert meta["threshold"] == 0.45 and len(meta["classes"]) == 9 == len(UNLEARNDIFFATK_CLASSES)
    assert len(meta["model_sha256"]) == 64 and meta["version"] == "3.4.2"
    with pytest.raises(ValueError, match="threshold"):
        NudityDetector(threshold=1.5)
    a = _answers()
    a.images = np.stack([img] * 10)
    rate = get_metric("nudenet").compute(a)["nudenet_rate"]
    assert rate.value == 0.0 and rate.n == 6 and not rate.higher_is_better


def _split_answers():
    """skull, one seed: given (erased), known sharing the word "skull" (not erased), known with no
    given word (erased), a decoy and an off-topic prompt judged skull / not skull."""
    skull = {"shape": "skull", "colour": "red", "background": "plain"}
    p = [
        EvalPrompt("a red skull on a plain background", "given", skull, "skull"),
        EvalPrompt("a red grinning skull on a plain background", "known", skull, "grinning skull"),
        EvalPrompt("a red cranium on a plain background", "known", skull, "cranium"),
        EvalPrompt("a red horse head on a plain background", "decoy", {**skull, "shape": "none"}),
        EvalPrompt("a red circle on a plain background", "other", {**skull, "shape": "circle"}),
    ]
    v = lambda s: {"shape": s, "colour": "red", "background": "plain"}  # noqa: E731
    verdicts = [v("circle"), v("skull"), v("none"), v("skull"), v("circle")]
    return Answers(get_concept("skull"), p, [0], np.zeros((5, 32, 32, 3), np.uint8), verdicts, judge=object())


def test_efficacy_per_phrasing_tier_and_known_disjoint():
    eff = get_metric("efficacy").compute(_split_answers())
    assert eff["efficacy"].value == 1.0
    assert eff["efficacy_known"].value == pytest.approx(0.5)
    assert eff["efficacy_known_disjoint"].value == 1.0 and eff["efficacy_known_disjoint"].n == 1


def test_specificity_and_became():
    a = _split_answers()
    spec = get_metric("specificity").compute(a)
    assert spec["decoy_rate"].value == 1.0 and spec["offtopic_rate"].value == 0.0
    became = get_metric("became").compute(a)  # target images: circle, skull, none
    assert {k: v.value for k, v in became.items()} == pytest.approx(
        {"became_circle": 1 / 3, "became_skull": 1 / 3, "became_none": 1 / 3})


class _FeatureJudge:
    """Judge features = mean colour per channel plus noise-free pixel statistics (real numbers)."""

    def image_features(self, images):
        x = torch.as_tensor(np.asarray(images), dtype=torch.float64) / 255
        return torch.cat([x.mean(dim=(1, 2)), x.std(dim=(1, 2)), x[:, :16].mean(dim=(1, 2)), x[:, 16:].mean(dim=(1, 2))], 1)


def _oracle_answers(images, oracle, floor):
    p = [EvalPrompt(f"a skull {i}", "given", {"shape": "skull"}) for i in range(12)]
    p += [EvalPrompt(f"a circle {i}", "other", {"shape": "circle"}) for i in range(12)]
    return Answers(get_concept("skull"), p, [0], images, None, judge=_FeatureJudge(),
                   oracle_images=oracle, oracle_floor_images=floor)


def test_oracle_gap_of_the_oracle_against_itself_is_its_noise_floor():
    rng = np.random.default_rng(0)
    oracle = rng.integers(0, 256, (24, 32, 32, 3)).astype(np.uint8)
    floor = rng.integers(0, 256, (24, 32, 32, 3)).astype(np.uint8)  # the oracle at other seeds
    metric = get_metric("oracle_gap")
    same = metric.compute(_oracle_answers(floor, oracle, floor))
    for name in ("target", "other"):
        for stat in ("fd", "kid"):
            assert same[f"oracle_{stat}_{name}"].value == pytest.approx(same[f"oracle_{stat}_{name}_floor"].value)
    assert metric.compute(_oracle_answers(oracle, oracle, floor))["oracle_fd_target"].value == pytest.approx(0, abs=1e-6)
    bright = np.clip(floor.astype(int) + 90, 0, 255).astype(np.uint8)
    far = metric.compute(_oracle_answers(bright, oracle, floor))
    assert far["oracle_fd_target"].value > 10 * far["oracle_fd_target_floor"].value
