"""Erasing `skull` on the shipped testbed: UCE, RECE and ESD-x make skull prompts stop showing
skulls (judge rate <= 0.2, from >= 0.9) while the other shapes stay right (>= 0.85). RECE and
ESD-x miss the retention bar with defaults tuned on testbed v1 (strict xfails until retuned, marked
`slow` to keep the suite under 25 minutes: the ESD fit takes 200 s, RECE's check 70 s; run them with
`pytest -m slow`)."""

import pytest
import torch

from erasekit.concepts import get_concept
from erasekit.erasure import get_method, make_config
from erasekit.testbed.fidelity import shape_effect

# smaller prompt sets than benchmarks/erasure_effect.py, to keep the suite quick; 4 seeds as specified
SIZES = {"n_target": 8, "n_other": 2, "seeds": (0, 1, 2, 3)}


@pytest.fixture(scope="module")
def baseline(shipped_testbed, shipped_judge):
    return shape_effect(shipped_testbed, shipped_judge, "skull", **SIZES)


def test_unedited_testbed_draws_skulls(baseline):
    assert baseline["target_rate"] >= 0.9, baseline
    assert baseline["other_shapes_accuracy"] >= 0.85, baseline


@pytest.mark.parametrize("method", ["uce", pytest.param("rece", marks=[pytest.mark.slow, pytest.mark.xfail(
    strict=True, reason="RECE's defaults were tuned on testbed v1: on v2 skull rate 0.19 but other shapes 0.79 "
    "(circle, star, logo 0.5); retune on heart or star (issue 13)")]), pytest.param("esd", marks=[pytest.mark.slow, pytest.mark.xfail(
    strict=True, reason="ESD's defaults (lr 5e-4) were tuned on testbed v1's skull; on v2 with the clipped-x0 sampler "
    "skull rate 0.06 but other shapes 0.82 (star 0.38): ESD's known retention loss (UnlearnCanvas object IRA 55.8); "
    "retune on heart or star (issue 13)")])])
def test_erasing_skull(method, shipped_testbed, shipped_judge, baseline):
    torch.manual_seed(0)
    erasure = get_method(method).fit(shipped_testbed, get_concept("skull"), make_config(method), progress=False)
    with erasure.applied(shipped_testbed):
        after = shape_effect(shipped_testbed, shipped_judge, "skull", **SIZES)
    assert after["target_rate"] <= 0.2, after
    assert after["other_shapes_accuracy"] >= 0.85, after
