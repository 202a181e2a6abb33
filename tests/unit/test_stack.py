"""Stacks of erasures (``erasekit.erasure.Stack``): applied in order, removed exactly, recorded by
their parts' folders, and rejected when two parts would write the same parameter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from erasekit.concepts import Concept
from erasekit.erasure import Erasure, Stack, get_method, make_config
from erasekit.errors import UserError
from erasekit.evaluation import artifact_info

CONCEPT = Concept(name="heart", target=("heart",), templates=("a {}", "a blue {} on stripes"),
                  preserve=("a blue star on stripes",))
PROMPTS = ["a blue heart on stripes", "a red circle on a plain background"]


@pytest.fixture(scope="module")
def fits(tiny_sd):
    return {name: get_method(name).fit(tiny_sd, CONCEPT, make_config(name, over), progress=False)
            for name, over in (("uce", {}), ("irece", {}), ("sld", {}))}


def _images(pipe) -> np.ndarray:
    gens = [torch.Generator().manual_seed(i) for i in range(len(PROMPTS))]
    return pipe(PROMPTS, num_inference_steps=4, guidance_scale=3.0, generator=gens, output_type="np").images


def _state(pipe) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in pipe.unet.state_dict().items()}


def test_a_stack_applies_in_order_and_comes_off_exactly(tiny_sd, fits):
    base, state = _images(tiny_sd), _state(tiny_sd)
    with fits["uce"].applied(tiny_sd):
        uce_only = _images(tiny_sd)
        with fits["irece"].applied(tiny_sd):
            expected = _images(tiny_sd)
    stack = Stack([fits["uce"], fits["irece"]])
    assert stack.method == "uce+irece" and stack.edits_weights and set(stack.weights) == set(fits["uce"].weights)
    with stack.applied(tiny_sd):
        both = _images(tiny_sd)
    np.testing.assert_array_equal(both, expected)  # the same as applying one after the other
    assert np.abs(both - uce_only).max() > 0
    np.testing.assert_array_equal(_images(tiny_sd), base)
    for k, v in _state(tiny_sd).items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)


def test_a_stack_that_fails_half_way_leaves_the_model_as_it_was(tiny_sd, fits):
    state = _state(tiny_sd)
    fits["sld"].apply(tiny_sd, force=True)  # already applied: the stack's second part cannot go on
    try:
        with pytest.raises(RuntimeError, match="already applied"):
            Stack([fits["uce"], fits["sld"]]).apply(tiny_sd, force=True)
    finally:
        fits["sld"].remove(tiny_sd)
    for k, v in _state(tiny_sd).items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)  # UCE came off again


def test_two_edits_of_the_same_weights_do_not_stack(fits):
    with pytest.raises(UserError, match="both edit"):
        Stack([fits["uce"], fits["uce"]])
    with pytest.raises(UserError, match="at least two"):
        Stack([fits["uce"]])


def test_a_stack_is_recorded_by_its_parts(tmp_path, tiny_sd, fits):
    folders = [fits["uce"].save(tmp_path / "uce"), fits["irece"].save(tmp_path / "irece")]
    stack = Stack.load(folders)
    assert isinstance(stack, Stack) and [type(p) for p in stack.parts] == [Erasure, Erasure]
    assert isinstance(Stack.load(folders[:1]), Erasure)  # one folder: the artifact itself
    info = artifact_info(tmp_path, stack)
    parts = [artifact_info(f, p) for f, p in zip(folders, stack.parts)]
    assert info["method"] == "uce+irece" and info["folder"] == f"{folders[0]} + {folders[1]}"
    assert info["artifact_bytes"] == sum(p["artifact_bytes"] for p in parts)
    assert info["digest"] not in {p["digest"] for p in parts}
    other = get_method("uce").fit(tiny_sd, CONCEPT, make_config("uce", {"lamb": 0.1}), progress=False)
    flipped = artifact_info(tmp_path, Stack.load([other.save(tmp_path / "uce2"), folders[1]]))
    assert flipped["digest"] != info["digest"]  # another lower part: another record
    with pytest.raises(ValueError, match="folders"):
        artifact_info(tmp_path, Stack(stack.parts))
