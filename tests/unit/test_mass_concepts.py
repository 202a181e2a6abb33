"""Several concepts as one (mass erasure): combining, listing them on the command line, and
evaluating one part of a combined erasure."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from erasekit.concepts import Concept, get_concept, phrase_mentioned
from erasekit.errors import UserError

SHAPES = ["circle", "square", "triangle", "star", "heart", "skull", "cross"]


def test_combined_prompts_are_the_parts_and_preserve_names_none_of_them():
    skull, logo = get_concept("skull"), get_concept("logo")
    both = get_concept("skull,logo")
    assert both.name == "skull+logo" and both.family == "shape" and [p.name for p in both.parts] == ["skull", "logo"]
    assert both.erase_prompts() == skull.erase_prompts() + logo.erase_prompts()
    assert both.guide_prompts() == skull.guide_prompts() + logo.guide_prompts()
    assert both.preserve and not any(phrase_mentioned(t, p) for t in both.target for p in both.preserve)
    assert set(both.preserve) <= set(skull.preserve) | set(logo.preserve)
    assert both.part("logo") == logo and skull.part("skull") == skull
    with pytest.raises(UserError, match="did you mean 'skull'"):
        both.part("skul")


def test_round_trip_and_single_concepts_keep_their_format():
    both = get_concept("skull,logo")
    assert Concept.from_dict(json.loads(json.dumps(both.to_dict()))) == both
    assert "parts" not in get_concept("skull").to_dict()  # the content ids of existing runs do not move


def test_a_txt_list_with_comments_and_files(tmp_path):
    (tmp_path / "mine.yaml").write_text("name: teapot\ntarget: [teapot]\n")
    listed = tmp_path / "list.txt"
    listed.write_text("# what to erase\nskull\n\nmine.yaml  # a user concept beside the list\n")
    c = get_concept(str(listed))
    assert [p.name for p in c.parts] == ["skull", "teapot"] and c.family is None


@pytest.mark.parametrize("spec, needle", [
    ("skull,skull", "listed twice"),
    ("skull,,logo", "empty entry"),
    ("skull,skul", "did you mean 'skull'"),
])
def test_bad_lists_are_one_line(spec, needle, tmp_path):
    with pytest.raises(UserError) as exc:
        get_concept(spec)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(UserError, match="does not exist"):
        get_concept(str(tmp_path / "none.txt"))
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(UserError, match="names no concept"):
        get_concept(str(tmp_path / "empty.txt"))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(SHAPES), min_size=2, max_size=5, unique=True))
def test_any_combination_of_shapes(names):
    c = get_concept(",".join(names))
    parts = [get_concept(n) for n in names]
    assert len(c.erase_prompts()) == sum(len(p.erase_prompts()) for p in parts) == len(c.guide_prompts())
    assert not any(phrase_mentioned(t, p) for t in c.target for p in c.preserve)


def test_phrase_mentioned_is_whole_words():
    assert phrase_mentioned("star", "a red star on dots") and not phrase_mentioned("star", "a red starfish")
    assert phrase_mentioned("death's head", "A Death's Head here") and not phrase_mentioned("head", "headland")
