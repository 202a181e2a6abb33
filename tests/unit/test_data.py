import re

import numpy as np
import pytest

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
    return re.search(rf"\b{re.escape(phrase)}\b", text) is not None


def test_heldout_phrasings_never_appear_in_training_captions():
    train = [c for a in data.all_combinations(heldout_pairs=False) for c in data.training_captions(a)]
    heldout = [p for table in (data.SHAPE_PHRASES, data.COLOUR_PHRASES, data.BACKGROUND_PHRASES)
               for v in table.values() for p in v["heldout"]]
    for phrase in heldout:
        assert not any(_phrase_in(phrase, c) for c in train), phrase
    for template in data.TEMPLATES["heldout"]:
        prefix = template.split("{obj}")[0].strip()
        assert not any(c.startswith(prefix) for c in train), template


def test_training_draws_exclude_heldout_pairs():
    _, _, attrs = data.make_batch(400, seed=0)
    assert not any(a.heldout_pair for a in attrs)
    assert len(data.HELDOUT_PAIRS) == 8
    assert {s for s, _ in data.HELDOUT_PAIRS} == set(data.SHAPES)
    assert {c for _, c in data.HELDOUT_PAIRS} == set(data.COLOURS)


def test_heldout_phrasing_captions_use_heldout_words():
    rng = np.random.default_rng(0)
    a = data.Attributes("skull", "red", "grid")
    cap = data.caption(a, rng, "heldout")
    assert any(p in cap for p in data.SHAPE_PHRASES["skull"]["heldout"])
    assert "skull" not in cap


def test_unknown_values_suggest_the_closest():
    with pytest.raises(ValueError, match="did you mean 'skull'"):
        data.Attributes("skul", "red", "plain")
    with pytest.raises(ValueError, match="unknown colour 'mauve'"):
        data.check_value("colour", "mauve")
