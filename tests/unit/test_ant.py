"""ANT's defining pieces: the two regimes' targets, which denoising steps each regime takes, and the
intersected saliency mask that confines the update."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler

from erasekit.concepts import Concept
from erasekit.erasure import get_method, make_config
from erasekit.losses import guided_regime_loss
from erasekit.methods.ant import ant_loss, regime_stops
from erasekit.methods.esd import latent_shape
from erasekit.pipelines import encode, group_parameters

CONCEPT = Concept(name="skull", target=("skull", "death's head"), templates=("a {}", "a red {} on a plain background"),
                  preserve=("a blue star on polka dots",))


def test_kept_regime_targets_the_frozen_guidance_and_erased_regime_its_reversal():
    gen = torch.Generator().manual_seed(0)
    e_c, e_u = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 4, 8, 8, generator=gen)
    # an unedited student: the kept regime (-eta) has nothing to learn, the erased one (+eta) is pulled
    # from e0(c) to e0(0) - (e0(c) - e0(0)), i.e. twice the guidance direction away
    assert guided_regime_loss(e_c, e_u, e_c, e_u, -1.0, 0.5).item() < 1e-12
    torch.testing.assert_close(guided_regime_loss(e_c, e_u, e_c, e_u, 1.0, 0.5), 4 * (e_c - e_u).pow(2).mean())
    # the unconditional term holds e(x_t) to e0(x_t) with weight alpha2
    drift = torch.randn(2, 4, 8, 8, generator=gen)
    torch.testing.assert_close(guided_regime_loss(e_c, e_u + drift, e_c, e_u, -1.0, 0.5), 0.5 * drift.pow(2).mean())


def test_unedited_model_is_only_pulled_on_the_erased_steps(tiny_sd):
    """At the base weights the kept regime's loss is zero, so the loss does not depend on alpha1."""
    cond, uncond = encode(tiny_sd, ["a red skull"]).states, encode(tiny_sd, [""]).states
    sampler = DDIMScheduler.from_config(tiny_sd.scheduler.config)
    sampler.set_timesteps(4)
    losses = []
    for alpha1 in (0.0, 1.0, 10.0):
        config = make_config("ant", {"ddim_steps": 4, "before_step": 2, "alpha1": alpha1})
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            losses.append(ant_loss(tiny_sd.unet, tiny_sd.unet, sampler, cond, uncond, config, latent_shape(tiny_sd), gen))
    assert losses[0] > 0
    torch.testing.assert_close(losses[1], losses[0])
    torch.testing.assert_close(losses[2], losses[0])


def test_early_keeps_the_first_steps_from_noise():
    sampler = DDIMScheduler(num_train_timesteps=1000)
    sampler.set_timesteps(25)
    kept, erased = regime_stops(25, 4, "early")
    assert sorted([*kept, *erased]) == list(range(25)) and len(kept) == 4
    assert min(sampler.timesteps[list(kept)]) > max(sampler.timesteps[list(erased)])  # the high-noise end
    kept, erased = regime_stops(25, 4, "late")  # Single/'s convention: the nearly denoised end
    assert sorted([*kept, *erased]) == list(range(25)) and len(kept) == 4
    assert max(sampler.timesteps[list(kept)]) < min(sampler.timesteps[list(erased)])


def test_ant_moves_only_the_intersection_of_its_saliency_maps(tiny_sd):
    base = {k: p.detach().clone() for k, p in group_parameters(tiny_sd, "unet").items()}
    total = sum(v.numel() for v in base.values())
    salient = {}
    for views in (1, 2):
        config = make_config("ant", {**get_method("ant").test_config, "threshold": 0.2, "mask_views": views})
        erasure = get_method("ant").fit(tiny_sd, CONCEPT, config, progress=False)
        changed = sum(int((erasure.tensors[k] != base[k]).sum()) for k in erasure.tensors)
        salient[views] = erasure.extra["salient_entries"]
        assert 0 < changed <= salient[views]
    assert salient[1] == round(0.2 * total)
    assert 0 < salient[2] < salient[1]  # two views (prompts, noise) agree on only part of the top 20%
