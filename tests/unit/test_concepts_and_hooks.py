import numpy as np
import pytest
import torch

from erasekit.concepts import Concept, get_concept
from erasekit.erasure import get_method, make_config
from erasekit.pipelines import encode
from erasekit.registry import Registry


def test_builtin_concepts_cover_every_attribute():
    from erasekit.testbed import data

    for family, values in data.FAMILIES.items():
        for v in values:
            c = get_concept(v)
            assert c.family == family and c.erase_prompts() and c.preserve
            assert len(c.erase_prompts()) == len(c.guide_prompts())
    skull = get_concept("skull")
    assert "a red skull on a plain background" in skull.erase_prompts()
    assert not any("skull" in p for p in skull.preserve)


def test_concept_validation():
    with pytest.raises(ValueError, match="target"):
        Concept(name="x", target=())
    with pytest.raises(ValueError, match="target"):
        Concept(name="x", target=("  ",))
    with pytest.raises(ValueError, match="exactly one"):
        Concept(name="x", target=("cat",), templates=("a photo",))
    with pytest.raises(ValueError, match="unknown concept key"):
        Concept.from_dict({"name": "x", "target": ["cat"], "colour": "red"})
    with pytest.raises(ValueError, match="did you mean 'skull'"):
        get_concept("skul")


def test_concept_from_yaml_and_json(tmp_path):
    (tmp_path / "c.yaml").write_text("name: cat\ntarget: [cat, kitten]\ntemplates: ['a photo of a {}']\nguide: dog\n")
    c = get_concept(str(tmp_path / "c.yaml"))
    assert c.erase_prompts() == ["a photo of a cat", "a photo of a kitten"]
    assert c.guide_prompts() == ["a photo of a dog", "a photo of a dog"]
    (tmp_path / "c.json").write_text('{"name": "cat", "target": "cat"}')
    assert get_concept(str(tmp_path / "c.json")).target == ("cat",)


def test_registry_errors():
    reg: Registry[object] = Registry("thing")

    @reg.register("alpha")
    class Alpha:
        pass

    with pytest.raises(ValueError, match="twice"):
        reg.register("alpha")(Alpha)
    with pytest.raises(ValueError, match="did you mean 'alpha'"):
        reg.get("alpah")


def test_negative_prompt_hook_equals_pipeline_negative_prompt(random_testbed):
    concept = Concept(name="skull", target=("skull",))
    erasure = get_method("negative_prompt").fit(random_testbed, concept, make_config("negative_prompt"),
                                                progress=False)
    prompts = ["a red skull on a plain background", "a blue star on polka dots"]

    def run(**kw):
        gens = [torch.Generator().manual_seed(i) for i in range(2)]
        return random_testbed(prompts, num_inference_steps=3, generator=gens, output_type="np", **kw).images

    expected = run(negative_prompt="skull")
    with erasure.applied(random_testbed):
        got = run()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_sld_hook_matches_the_sld_update(random_testbed):
    concept = Concept(name="skull", target=("skull",))
    cfg = make_config("sld", {"preset": "strong", "warmup_steps": 0})
    erasure = get_method("sld").fit(random_testbed, concept, cfg, progress=False)
    unet = random_testbed.unet
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 32, 32, generator=g)
    t = torch.tensor(500)
    cond = encode(random_testbed, ["a red skull on a plain background"]).states
    uncond = encode(random_testbed, [""]).states
    safety = encode(random_testbed, ["skull"]).states
    with torch.no_grad():
        e_0 = unet(x, t, encoder_hidden_states=uncond).sample
        e_p = unet(x, t, encoder_hidden_states=cond).sample
        e_s = unet(x, t, encoder_hidden_states=safety).sample
        p = erasure.extra
        scale = torch.clamp((e_p - e_s).abs() * p["sld_guidance_scale"], max=1.0)
        scale = torch.where((e_p - e_s) >= p["threshold"], torch.zeros_like(scale), scale)
        expected = e_p - scale * (e_s - e_0)  # momentum starts at 0
        with erasure.applied(random_testbed):
            out = unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
    torch.testing.assert_close(out[:1], e_0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1:], expected, atol=1e-4, rtol=1e-3)  # batched vs single UNet calls
    assert (out[1:] - e_p).abs().max() > 1e-4


def _three_predictions(pipe, prompt: str, negative: str):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 32, 32, generator=g)
    t = torch.tensor(500)
    states = [encode(pipe, [p]).states for p in ("", prompt, negative)]
    with torch.no_grad():
        e_0, e_c, e_n = (pipe.unet(x, t, encoder_hidden_states=s).sample for s in states)
    return x, t, states, (e_0, e_c, e_n)


def test_negate_mode_is_composable_diffusion_not(random_testbed):
    """negate: the conditional half becomes e_c - scale (e_neg - e_0), so CFG gives
    e_0 + g ((e_c - e_0) - scale (e_neg - e_0)) (Liu et al. 2022)."""
    concept = Concept(name="skull", target=("skull",))
    cfg = make_config("negative_prompt", {"mode": "negate", "scale": 1.5})
    erasure = get_method("negative_prompt").fit(random_testbed, concept, cfg, progress=False)
    x, t, (uncond, cond, _), (e_0, e_c, e_n) = _three_predictions(random_testbed, "a red skull on a plain background", "skull")
    with erasure.applied(random_testbed), torch.no_grad():
        out = random_testbed.unet(torch.cat([x, x]), t, encoder_hidden_states=torch.cat([uncond, cond])).sample
    torch.testing.assert_close(out[:1], e_0, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1:], e_c - 1.5 * (e_n - e_0), atol=1e-4, rtol=1e-3)


def test_guards_leave_batches_of_different_samples_alone(random_testbed):
    """Attacks and fine-tuning pass even batches of different images: not CFG batches."""
    concept = Concept(name="skull", target=("skull",))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=g)
    t = torch.tensor([100, 700])
    states = torch.cat([encode(random_testbed, [""]).states, encode(random_testbed, ["a red skull"]).states])
    with torch.no_grad():
        plain = random_testbed.unet(x, t, encoder_hidden_states=states).sample
        for overrides in ({}, {"mode": "negate"}):
            erasure = get_method("negative_prompt").fit(random_testbed, concept, make_config("negative_prompt", overrides),
                                                        progress=False)
            with erasure.applied(random_testbed):
                torch.testing.assert_close(random_testbed.unet(x, t, encoder_hidden_states=states).sample, plain)


def test_guided_denoising_loss_sees_the_guard(random_testbed):
    """With guidance, the loss is taken on e_0 + g (e_c - e_0) from one CFG batch, so a guard acts."""
    from erasekit.losses import denoising_loss

    pipe = random_testbed
    x0 = torch.rand(1, 3, 32, 32) * 2 - 1
    cond, uncond = encode(pipe, ["a red skull on a plain background"]).states, encode(pipe, [""]).states

    def loss(**kw):
        with torch.no_grad():
            return float(denoising_loss(pipe.unet, pipe.scheduler, x0, cond, torch.Generator().manual_seed(3), **kw))

    g1 = loss(guidance=1.0, uncond=uncond)
    assert g1 == pytest.approx(loss(), rel=1e-4)  # guidance 1 is the conditional prediction
    g2 = loss(guidance=2.0, uncond=uncond)
    assert g2 != pytest.approx(g1, rel=1e-3)
    erasure = get_method("negative_prompt").fit(pipe, Concept(name="skull", target=("skull",)),
                                                make_config("negative_prompt", {"mode": "negate"}), progress=False)
    with erasure.applied(pipe):
        assert loss() == pytest.approx(g1, rel=1e-4)  # one sample: not a CFG batch, the guard is off
        assert loss(guidance=2.0, uncond=uncond) != pytest.approx(g2, rel=1e-3)
    with pytest.raises(ValueError, match="uncond"):
        loss(guidance=2.0)

    from erasekit.attacks import AttackContext

    for guided in (True, False):
        ctx = AttackContext(pipe, erasure, erasure.concept, None, guided_loss=guided)
        assert ctx.guard
        with erasure.applied(pipe), torch.no_grad():
            got = float(ctx.loss(pipe.unet, x0, cond, torch.Generator().manual_seed(3)))
            want = loss(guidance=ctx.guidance, uncond=uncond) if guided else loss()
        assert got == pytest.approx(want, rel=1e-4)


def test_negative_prompt_config_errors():
    with pytest.raises(ValueError, match="mode"):
        make_config("negative_prompt", {"mode": "subtract"})
    with pytest.raises(ValueError, match="scale"):
        make_config("negative_prompt", {"scale": 0})


def test_restoration_runs_under_a_guard_that_calls_the_unet_again(random_testbed):
    """The restore attack's mid-block hook met negate's extra half-batch UNet pass (a crash at
    guidance 4 on the shipped testbed): that pass is left alone, and restoring toward an identical
    copy at alpha 1 over every channel changes nothing, so the image is the guarded one."""
    import copy

    from erasekit.attacks.restore import restoring

    pipe = random_testbed
    erasure = get_method("negative_prompt").fit(pipe, Concept(name="skull", target=("skull",)),
                                                make_config("negative_prompt", {"mode": "negate"}), progress=False)

    def image():
        return pipe("a red skull on a plain background", num_inference_steps=2,
                    generator=torch.Generator().manual_seed(0), output_type="pt").images

    with erasure.applied(pipe):
        guarded = image()
        with restoring(pipe, copy.deepcopy(pipe.unet).eval(), None, 1.0) as box:
            restored = image()
    assert box["evals"] == 2 * 2  # the CFG batch of 2 at each of the 2 steps; not the guard's pass
    torch.testing.assert_close(restored, guarded, atol=1e-5, rtol=1e-5)
