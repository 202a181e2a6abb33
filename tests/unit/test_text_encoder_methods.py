"""The text-encoder methods' parts (AdvUnlearn, few-shot erasing) on the tiny SD layout (CLIP) and
the testbed (BERT): the prefix encoder path, the trained layers, the inner attack."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from erasekit.attacks.discrete import embed_with_prefix
from erasekit.methods.advunlearn import adversarial_prefix, text_encoder_layers
from erasekit.methods.fewshot import mlp_final_attn
from erasekit.methods.esd import latent_shape
from erasekit.pipelines import encode, encoder_layer_parameters, frozen

PROMPTS = ["a red skull on a plain background", "a blue star"]


def test_an_empty_prefix_gives_the_pipelines_own_states(pipe):
    empty = pipe.text_encoder.get_input_embeddings().weight[:0]
    with torch.no_grad():
        states = embed_with_prefix(pipe, empty, PROMPTS)
    torch.testing.assert_close(states, encode(pipe, PROMPTS).states, rtol=0, atol=0)


def test_a_prefix_carries_gradients(pipe):
    words = pipe.text_encoder.get_input_embeddings().weight.detach()
    prefix = words[1000:1002].clone().requires_grad_(True)
    states = embed_with_prefix(pipe, prefix, PROMPTS)
    assert states.shape == encode(pipe, PROMPTS).states.shape
    (grad,) = torch.autograd.grad(states.sum(), [prefix])
    assert grad.abs().sum() > 0


def test_trained_layers(pipe):
    layers = encoder_layer_parameters(pipe)
    n_layers = 1 + max(i for i, _ in layers.values())
    assert n_layers == pipe.text_encoder.config.num_hidden_layers
    full, first = text_encoder_layers(pipe, "all"), text_encoder_layers(pipe, "first")
    assert set(first) < set(full)
    assert {layers[k][0] for k in first} == {0}
    assert {layers[k][0] for k in full if k in layers} == set(range(n_layers))
    assert not any("embeddings" in k for k in full)  # the fingerprinted token embeddings stay untouched
    chosen = mlp_final_attn(pipe)
    attention = {layers[k][0] for k in chosen if layers[k][1].startswith(("self_attn.", "attention."))}
    assert attention == {n_layers - 1}
    assert {layers[k][0] for k in chosen} == set(range(n_layers))  # every layer's MLP


def test_the_inner_attack_lowers_its_objective(tiny_sd):
    """AdvUnlearn's attacker: with a changed text encoder, the prefix it finds brings the prediction
    for the concept closer to the unedited model's than the prefix it starts from."""
    pipe = tiny_sd
    gen = torch.Generator().manual_seed(0)
    x_t = torch.randn(latent_shape(pipe), generator=gen)
    t = torch.tensor(500)
    prompt = PROMPTS[0]
    with torch.no_grad():
        target = pipe.unet(x_t, t, encoder_hidden_states=encode(pipe, [prompt]).states).sample
    params = text_encoder_layers(pipe, "first")
    saved = {k: p.detach().clone() for k, p in params.items()}
    try:
        with torch.no_grad():
            for p in params.values():
                p.grad = None
                p.add_(0.5 * torch.randn(p.shape, generator=gen))
        init = pipe.text_encoder.get_input_embeddings().weight[1000:1001].detach().clone()

        def objective(prefix: torch.Tensor) -> float:
            with torch.no_grad():
                pred = pipe.unet(x_t, t, encoder_hidden_states=embed_with_prefix(pipe, prefix, prompt)).sample
            return F.mse_loss(pred, target).item()

        with frozen(pipe.unet):  # the encoder's weights keep requires_grad, as during the fit
            found = adversarial_prefix(pipe, prompt, x_t, t, target, init, steps=20, lr=0.05)
        assert objective(found) < objective(init)
        assert all(p.requires_grad and p.grad is None for p in params.values())  # no weight gradients
    finally:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(saved[k])
