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
