"""HiRM moves only the first text-encoder layer and points the last layer's concept states at its direction."""

from __future__ import annotations

import torch

from erasekit.concepts import Concept
from erasekit.erasure import get_method, make_config
from erasekit.methods.hirm import last_states

CONCEPT = Concept(name="skull", target=("skull",), templates=("a red {} on a plain background", "a {}"),
                  preserve=("a blue star on polka dots",))


def test_hirm_trains_the_first_layer_toward_its_direction(tiny_sd):
    prompts = CONCEPT.erase_prompts()
    config = make_config("hirm", {"iterations": 20, "batch": 2, "lr": 1e-2, "retain": 0.0})  # the misdirection alone
    erasure = get_method("hirm").fit(tiny_sd, CONCEPT, config, progress=False)
    assert erasure.tensors and all(k.startswith("text_encoder.") and ".layers.0." in k for k in erasure.tensors)
    assert not any("norm" in k for k in erasure.tensors)
    with torch.no_grad():
        before = last_states(tiny_sd, prompts)
        with erasure.applied(tiny_sd):
            after = last_states(tiny_sd, prompts)
    # the concept's last position (padding after it) now agrees across prompts: one shared direction
    assert _spread(after[:, -1]) < 0.5 * _spread(before[:, -1])


def _spread(h: torch.Tensor) -> float:
    """Mean distance between rows, relative to their mean norm."""
    return float(torch.nn.functional.pdist(h).mean() / h.norm(dim=-1).mean())
