import numpy as np
import pytest
import torch

from erasekit.testbed.pipeline import TestbedPipeline

PROMPTS = ["a red circle on a plain background", "a blue skull in neon style"]


def _gens(n, seed=0):
    return [torch.Generator().manual_seed(seed + i) for i in range(n)]


def test_uses_sd_cross_attention_names(random_testbed):
    names = [n for n, _ in random_testbed.unet.named_modules() if "attn2" in n and n.endswith(("to_k", "to_v"))]
    assert len(names) == 14
    assert "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k" in names
    k = random_testbed.unet.get_submodule(names[0])
    assert k.in_features == 384


def test_save_load_gives_identical_images(random_testbed, tmp_path):
    before = random_testbed(PROMPTS, generator=_gens(2), output_type="np", num_inference_steps=4).images
    random_testbed.save_pretrained(tmp_path)
    loaded = TestbedPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded) is TestbedPipeline
    after = loaded(PROMPTS, generator=_gens(2), output_type="np", num_inference_steps=4).images
    np.testing.assert_array_equal(before, after)


def test_batched_equals_one_at_a_time(random_testbed):
    batched = random_testbed(PROMPTS, generator=_gens(2), output_type="pt", num_inference_steps=3).images
    single = torch.cat(
        [random_testbed(p, generator=_gens(1, i), output_type="pt", num_inference_steps=3).images
         for i, p in enumerate(PROMPTS)]
    )
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)


def test_prompt_embeds_match_prompts(random_testbed):
    cond = random_testbed.encode_text(PROMPTS)
    uncond = random_testbed.encode_text(["", ""])
    a = random_testbed(PROMPTS, generator=_gens(2), output_type="np", num_inference_steps=3).images
    b = random_testbed(prompt_embeds=cond, negative_prompt_embeds=uncond, generator=_gens(2), output_type="np",
                       num_inference_steps=3).images
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_negative_prompt_changes_output(random_testbed):
    a = random_testbed(PROMPTS, generator=_gens(2), output_type="np", num_inference_steps=3).images
    b = random_testbed(PROMPTS, negative_prompt="a skull", generator=_gens(2), output_type="np",
                       num_inference_steps=3).images
    assert np.abs(a - b).max() > 1e-4


def test_num_images_per_prompt_and_output_types(random_testbed):
    out = random_testbed(PROMPTS, num_images_per_prompt=3, generator=torch.Generator().manual_seed(0),
                         num_inference_steps=2).images
    assert len(out) == 6 and out[0].size == (32, 32)
    pt = random_testbed(PROMPTS[0], guidance_scale=1.0, num_inference_steps=2, output_type="pt").images
    assert pt.shape == (1, 3, 32, 32) and 0 <= pt.min() and pt.max() <= 1


def test_bad_arguments_raise(random_testbed):
    with pytest.raises(ValueError, match="num_inference_steps"):
        random_testbed(PROMPTS, num_inference_steps=0)
    with pytest.raises(ValueError, match="negative_prompt has 1 entries"):
        random_testbed(PROMPTS, negative_prompt=["x"], num_inference_steps=1)
    with pytest.raises(ValueError, match="output_type"):
        random_testbed(PROMPTS, output_type="latent", num_inference_steps=1)
