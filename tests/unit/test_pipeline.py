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


def _clipping_ddim(clip: bool):
    from erasekit.testbed.train import sample_scheduler

    sched = sample_scheduler()
    if not clip:
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config(sched.config, clip_sample=False)
    sched.set_timesteps(10)
    return sched


def test_guided_step_steps_with_the_clipped_x0():
    """A DDIM step whose x0 estimate is clipped lands on a point consistent with the clipped x0:
    x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps(x0), eps recomputed from the clipped x0."""
    from erasekit.sampling import guided_step

    sched = _clipping_ddim(clip=True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 8, 8, generator=g)
    v_u, v_c = torch.randn(2, 2, 3, 8, 8, generator=g) * 3  # large guided v: x0 leaves [-1, 1]
    t, t_prev = sched.timesteps[3], sched.timesteps[4]
    a, a_prev = sched.alphas_cumprod[t], sched.alphas_cumprod[t_prev]
    v = v_u + 5.0 * (v_c - v_u)
    x0_raw = a.sqrt() * x - (1 - a).sqrt() * v
    assert x0_raw.abs().max() > 1.5
    x0 = x0_raw.clamp(-1, 1)
    eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
    expected = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    out = guided_step(sched, v_u, v_c, 5.0, t, x)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)
    # diffusers' default step (raw noise) is not that point
    assert not torch.allclose(sched.step(v, t, x).prev_sample, expected, atol=1e-2)


def test_guided_step_is_plain_cfg_without_clipping():
    from erasekit.sampling import guided_step

    sched = _clipping_ddim(clip=False)
    g = torch.Generator().manual_seed(1)
    x, v_u, v_c = torch.randn(3, 1, 3, 8, 8, generator=g)
    t = sched.timesteps[2]
    torch.testing.assert_close(guided_step(sched, v_u, v_c, 3.0, t, x),
                               sched.step(v_u + 3.0 * (v_c - v_u), t, x).prev_sample)
