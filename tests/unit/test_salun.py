"""SalUn updates only its salient entries; the rest of each stored tensor keeps its base values."""

from __future__ import annotations

from erasekit.concepts import Concept
from erasekit.erasure import get_method, make_config
from erasekit.pipelines import group_parameters

CONCEPT = Concept(name="skull", target=("skull",), templates=("a red {} on a plain background",),
                  preserve=("a blue star on polka dots",))


def test_salun_moves_only_the_salient_fraction(tiny_sd):
    base = {k: p.detach().clone() for k, p in group_parameters(tiny_sd, "unet").items()}
    config = make_config("salun", {**get_method("salun").test_config, "threshold": 0.2})
    erasure = get_method("salun").fit(tiny_sd, CONCEPT, config, progress=False)
    changed = sum(int((erasure.tensors[k] != base[k]).sum()) for k in erasure.tensors)
    total = sum(v.numel() for v in base.values())
    assert 0 < changed <= round(0.2 * total)
    assert erasure.extra["salient_entries"] == round(0.2 * total)
