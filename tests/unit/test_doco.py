"""DoCo's pieces: the concept-preserving step never goes against the retention gradient, and the
discriminator reads the clean sample each prediction implies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from erasekit.concepts import Concept
from erasekit.erasure import get_method, make_config
from erasekit.losses import predicted_x0
from erasekit.methods.doco import clipped, preserving_gradients
from erasekit.pipelines import encode, group_parameters

CONCEPT = Concept(name="skull", target=("skull",), templates=("a red {} on a plain background",),
                  preserve=("a blue star on polka dots",))


def test_the_fit_steps_only_where_retention_is_not_hurt(tiny_sd):
    """With the surgery (``lam`` 1) every applied per-tensor step has a non-negative cosine with the
    retention gradient; without it (``lam`` 0) the same conflicts make some step go against it."""
    config = {**get_method("doco").test_config, "iterations": 4}
    with_surgery = get_method("doco").fit(tiny_sd, CONCEPT, make_config("doco", {**config, "lam": 1.0}), progress=False)
    without = get_method("doco").fit(tiny_sd, CONCEPT, make_config("doco", {**config, "lam": 0.0}), progress=False)
    assert with_surgery.extra["conflicts"] > 0
    assert with_surgery.extra["min_retain_cosine"] >= -1e-6
    assert without.extra["min_retain_cosine"] < 0
    assert set(with_surgery.tensors) == set(group_parameters(tiny_sd, "xattn_kv"))  # no discriminator tensors


def test_preserving_gradients_on_real_unet_losses(tiny_sd):
    unet = tiny_sd.unet
    params = list(group_parameters(tiny_sd, "xattn_kv").values())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=gen)
    t = torch.tensor([10, 500])
    c, a = encode(tiny_sd, ["a red skull", "a red skull"]).states, encode(tiny_sd, ["a red", "a red"]).states
    for p in params:
        p.requires_grad_(True)
    try:
        def losses():
            unlearn = F.mse_loss(unet(x, t, encoder_hidden_states=c).sample, -x)
            retain = F.mse_loss(unet(x, t, encoder_hidden_states=a).sample, x)
            return unlearn, retain

        step, g_r, n = preserving_gradients(*losses(), params, 1.0, 0.5)
        unlearn, _ = losses()
        g_u = clipped(list(torch.autograd.grad(unlearn, params)), 0.5)
    finally:
        for p in params:
            p.requires_grad_(False)
    assert torch.linalg.vector_norm(torch.stack([s.norm() for s in step])) <= 0.5 + 1e-6
    cosines = [float(F.cosine_similarity(u.flatten(), r.flatten(), 0)) for u, r in zip(g_u, g_r)]
    assert n == sum(cos < 0 for cos in cosines) and 0 < n < len(params)
    scale = None
    for s, u, r, cos in zip(step, g_u, g_r, cosines):
        assert float(torch.dot(s.flatten(), r.flatten())) >= -1e-9
        if cos >= 0:  # untouched up to the common re-clipping factor
            ratio = float(s.norm() / u.norm())
            scale = ratio if scale is None else scale
            torch.testing.assert_close(s, ratio * u)
            assert ratio == pytest.approx(scale, rel=1e-5)


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_predicted_x0_inverts_the_noising_for_every_prediction_type(kind):
    scheduler = DDIMScheduler(num_train_timesteps=1000, prediction_type=kind, clip_sample=False)
    gen = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 4, 4, generator=gen, dtype=torch.float64).unbind(0)
    x0, noise = x0[None].repeat(3, 1, 1, 1), noise[None].repeat(3, 1, 1, 1)
    t = torch.tensor([0, 400, 999])
    x_t = scheduler.add_noise(x0, noise, t)
    pred = {"epsilon": noise, "v_prediction": scheduler.get_velocity(x0, noise, t), "sample": x0}[kind]
    torch.testing.assert_close(predicted_x0(scheduler, x_t, t, pred), x0, rtol=1e-6, atol=1e-6)
    clipping = DDIMScheduler(num_train_timesteps=1000, prediction_type=kind, clip_sample=True)
    assert float(predicted_x0(clipping, x_t, t, pred).abs().max()) <= 1.0
