"""Co-Erasing: the text-guided refinement, the text stage is ESD, and the image stage is taught by
the text-erased UNet (the student starts there too)."""

from __future__ import annotations

import math

import torch

from erasekit.concepts import Concept
from erasekit.erasure import get_method, make_config
from erasekit.methods.coerasing import refine

CONCEPT = Concept(name="skull", target=("skull",), templates=("a red {} on a plain background", "a {}"),
                  preserve=("a blue star on polka dots",))


def test_refinement_is_attention_over_the_concepts_text_tokens():
    gen = torch.Generator().manual_seed(0)
    image, text = torch.randn(3, 8, generator=gen), torch.randn(5, 8, generator=gen)
    out = refine(image, text)
    for i in range(3):  # softmax(q_i . c_j / sqrt(d)) weighting the text states, written out
        w = torch.tensor([math.exp(float(image[i] @ text[j]) / math.sqrt(8)) for j in range(5)])
        torch.testing.assert_close(out[i], (w / w.sum()) @ text)
    # a query far along one text state's direction comes back as that state: the keys are the values
    torch.testing.assert_close(refine(100 * text[2:3], text)[0], text[2], atol=1e-4, rtol=0)


def _fit(pipe, **overrides):
    cfg = {**get_method("co_erasing").test_config, **overrides}
    return get_method("co_erasing").fit(pipe, CONCEPT, make_config("co_erasing", cfg), progress=False)


def test_text_stage_is_esd_and_the_image_stage_moves_on_from_it(tiny_sd):
    config = get_method("co_erasing").test_config
    esd = get_method("esd").fit(tiny_sd, CONCEPT, make_config("esd", {"iterations": config["text_iterations"],
                                                                       "ddim_steps": config["ddim_steps"]}),
                                progress=False)
    text_only, both = _fit(tiny_sd, image_iterations=0), _fit(tiny_sd)
    assert set(text_only.tensors) == set(esd.tensors) == set(both.tensors)
    for k in esd.tensors:
        torch.testing.assert_close(text_only.tensors[k], esd.tensors[k], rtol=0, atol=0)
    assert any(not torch.equal(both.tensors[k], esd.tensors[k]) for k in esd.tensors)


def test_image_stage_teacher_is_the_text_erased_unet(tiny_sd):
    """At the first image step the student is the stage-1 UNet; if the teacher is too, the ESD loss
    is ``(1 + image_eta)^2 |e1(x, [c; I]) - e1(x, 0)|^2``, so image_eta 1 gives exactly 4 times
    image_eta 0 (same stage 1, images, x_t). With the original UNet as teacher it would not."""
    first = {eta: _fit(tiny_sd, image_iterations=1, image_eta=eta).extra["image_loss_first"] for eta in (0.0, 1.0, 2.0)}
    assert first[0.0] > 0
    assert math.isclose(first[1.0], 4 * first[0.0], rel_tol=1e-4)
    assert math.isclose(first[2.0], 9 * first[0.0], rel_tol=1e-4)
