"""The hook-installed LoRA shared by MACE, RealEra and PGA (:mod:`erasekit.lora`)."""

from __future__ import annotations

import pytest
import torch

from erasekit.lora import LoRA, uniform_down


@pytest.mark.parametrize("init", ["uniform", "normal"])
def test_lora_merges_into_the_weight_it_adapts(init: str) -> None:
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(8, 6)
    x = torch.randn(3, 8, generator=g)
    before = lin(x).detach()
    lora = LoRA({"w": lin}, g, rank=2, scale=2.0, init=init)
    with lora.installed():
        torch.testing.assert_close(lin(x), before, rtol=0, atol=0)  # B starts at zero: no change
    with torch.no_grad():
        lora.b["w"].normal_(generator=g)
    with lora.installed():
        hooked = lin(x).detach()
    assert not torch.allclose(hooked, before) and torch.equal(lin(x).detach(), before)  # the hook came off
    merged = torch.nn.functional.linear(x, lora.merged()["w"], lin.bias)
    torch.testing.assert_close(merged, hooked)
    torch.testing.assert_close(lora.delta("w"), 2.0 * lora.b["w"].detach() @ lora.a["w"].detach())
    assert {p.shape for p in lora.parameters()} == {torch.Size([2, 8]), torch.Size([6, 2])}


def test_lora_gradients_reach_only_the_factors() -> None:
    g = torch.Generator().manual_seed(1)
    lin = torch.nn.Linear(4, 4)
    lin.requires_grad_(False)
    lora = LoRA({"w": lin}, g)
    with lora.installed():
        lin(torch.randn(2, 4, generator=g)).sum().backward()
    assert lin.weight.grad is None and lora.a["w"].grad is not None and lora.b["w"].grad is not None


def test_lora_inits_and_bad_arguments() -> None:
    a = uniform_down(3, 100, torch.Generator().manual_seed(0))
    assert a.shape == (3, 100) and float(a.abs().max()) <= 0.1
    with pytest.raises(ValueError, match="rank"):
        LoRA({"w": torch.nn.Linear(2, 2)}, torch.Generator(), rank=0)
    with pytest.raises(ValueError, match="init"):
        LoRA({"w": torch.nn.Linear(2, 2)}, torch.Generator(), init="zeros")  # type: ignore[arg-type]
