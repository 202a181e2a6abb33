import numpy as np
import pytest

from erasekit.concepts import get_concept, shares_no_word
from erasekit.testbed import data


def test_render_is_deterministic_in_seed():
    a = data.Attributes("skull", "red", "stripes")
    np.testing.assert_array_equal(data.render(a, 7), data.render(a, 7))
    assert not np.array_equal(data.render(a, 7), data.render(a, 8))
    img = data.render(a, 7)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8


def test_batches_are_deterministic_in_seed():
    x1, c1, a1 = data.make_batch(24, seed=3)
    x2, c2, a2 = data.make_batch(24, seed=3)
    np.testing.assert_array_equal(x1, x2)
    assert c1 == c2 and a1 == a2
    x3, c3, _ = data.make_batch(24, seed=4)
    assert c3 != c1 and not np.array_equal(x1, x3)


def test_family_sizes_meet_the_spec():
    assert len(data.SHAPES) >= 8 and {"skull", "logo"} <= set(data.SHAPES)
    assert len(data.COLOURS) >= 8
    assert len(data.BACKGROUNDS) >= 6 and "neon" in data.BACKGROUNDS


def test_every_value_renders_distinct_pixels():
    base = data.Attributes("circle", "red", "plain")
    for family, values in data.FAMILIES.items():
        imgs = [data.render(data.Attributes(**{**base.as_dict(), family: v}), 0) for v in values]
        for i in range(len(imgs)):
            for j in range(i + 1, len(imgs)):
                assert np.abs(imgs[i].astype(int) - imgs[j].astype(int)).mean() > 2, (family, values[i], values[j])


def _phrase_in(phrase: str, text: str) -> bool:
    return data.phrase_in(phrase, text)


def _tiers(tier: str) -> list[str]:
    return [p for table in data.PHRASES.values() for v in table.values() for p in v[tier]]


def test_tiers_meet_the_spec():
    for family, table in data.PHRASES.items():
        assert set(table) == set(data.FAMILIES[family])
        for value, tiers in table.items():
            assert set(tiers) == set(data.TIERS) and len(tiers["given"]) >= 1
            assert len(tiers["known"]) >= (8 if value in data.PROTECTED else 3), value
            assert len(tiers["unseen"]) >= 3, value
            if value in data.PROTECTED:
                disjoint = [k for k in tiers["known"] if shares_no_word(k, tiers["given"])]
                assert 2 * len(disjoint) >= len(tiers["known"]), (value, disjoint)
    assert len(data.TEMPLATES["train"]) >= 6 and len(data.TEMPLATES["unseen"]) >= 2


def test_tiers_are_disjoint_and_each_phrase_names_one_value():
    every = _tiers("given") + _tiers("known") + _tiers("unseen")
    assert len(every) == len(set(every))
    decoys = [n for nouns in data.DECOY_NOUNS.values() for n in nouns]
    assert not set(decoys) & set(every)


def test_no_known_or_unseen_word_reaches_a_builtin_concept():
    hidden = _tiers("known") + _tiers("unseen")
    for family, values in data.FAMILIES.items():
        for value in values:
            concept = get_concept(value)
            assert set(concept.target) == set(data.PHRASES[family][value]["given"])
            prompts = concept.erase_prompts() + list(concept.preserve) + concept.guide_prompts()
            for phrase in hidden:
                assert not any(_phrase_in(phrase, p) for p in prompts), (value, phrase)


def test_unseen_words_and_templates_never_reach_training():
    train = [c for a in data.training_combinations() for c in data.training_captions(a, 12)]
    for phrase in _tiers("unseen"):
        assert not any(_phrase_in(phrase, c) for c in train), phrase
    for template in data.TEMPLATES["unseen"]:
        prefix = template.split("{obj}")[0].strip()
        assert not any(c.startswith(prefix) for c in train), template
    # and every known phrasing of the protected concepts is trained
    for value in data.PROTECTED:
        family = data.family_of(value)
        for phrase in data.PHRASES[family][value]["known"]:
            assert any(_phrase_in(phrase, c) for c in train), phrase


def test_exclude_leaves_no_excluded_word_or_image_in_a_training_batch():
    from erasekit.testbed.train import TrainConfig, caption_index, training_plan

    cfg = TrainConfig(batch_size=64, exclude=("skull", "logo", "neon"), captions_per_combo=8)
    captions, index = caption_index(cfg.captions_per_combo, cfg.exclude)
    banned = data.excluded_phrases(cfg.exclude)
    assert not any(_phrase_in(b, c) for b in banned for c in captions)
    assert {"none"} < {a.shape for a in index}
    for step in range(20):
        attrs, seeds, ids = training_plan(step, cfg, index, len(captions) - 1)
        assert not any({"skull", "logo", "neon"} & set(a.values()) for a in attrs)
        assert not any(_phrase_in(b, captions[i]) for b in banned for i in ids)
    full, _ = caption_index(8, ())
    assert any(_phrase_in("skull", c) for c in full) and any(_phrase_in("in neon style", c) for c in full)


def test_decoys_reuse_the_concept_words_in_another_meaning():
    rng = np.random.default_rng(0)
    for value in data.PROTECTED:
        family = data.family_of(value)
        prompts = data.decoys(value, rng, 24)
        assert len({t for _, t in prompts}) >= 12
        for a, text in prompts:
            assert getattr(a, family) != value
            assert not any(_phrase_in(p, text) for p in data.excluded_phrases([value])), text


def test_training_draws_exclude_heldout_pairs():
    _, _, attrs = data.make_batch(400, seed=0)
    assert not any(a.heldout_pair for a in attrs)
    assert len(data.HELDOUT_PAIRS) == 8
    assert {s for s, _ in data.HELDOUT_PAIRS} == set(data.SHAPES)
    assert {c for _, c in data.HELDOUT_PAIRS} == set(data.COLOURS)


def test_tier_captions_use_that_tiers_words():
    rng = np.random.default_rng(0)
    a = data.Attributes("skull", "red", "grid")
    for tier in ("known", "unseen"):
        cap = data.caption(a, rng, tier, only="shape")
        assert any(_phrase_in(p, cap) for p in data.SHAPE_PHRASES["skull"][tier]), cap
    assert "skull" not in data.caption(a, rng, "unseen", only="shape")


def test_none_images_show_no_shape_and_render_every_kind():
    a = data.Attributes("none", "red", "plain")
    empty = data.render(a, 3, none_kind="empty").astype(int)
    assert np.abs(empty - empty.mean(axis=(0, 1))).max() < 40  # a plain canvas: no red shape
    for kind in data.NONE_KINDS:
        img = data.render(a, 3, none_kind=kind)
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    blob = data.render(a, 3, none_kind="blob").astype(int)
    assert (blob[..., 0] - blob[..., 1] > 100).sum() > 30  # a red blob is drawn
    with pytest.raises(ValueError, match="unknown none kind"):
        data.render(a, 3, none_kind="ghost")


def test_unknown_values_suggest_the_closest():
    with pytest.raises(ValueError, match="did you mean 'skull'"):
        data.Attributes("skul", "red", "plain")
    with pytest.raises(ValueError, match="unknown colour 'mauve'"):
        data.check_value("colour", "mauve")
