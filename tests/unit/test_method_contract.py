"""The contract every registered erasure method passes, on a tiny SD pipeline and on the testbed.

No per-method branches: a method declares its own ``test_config`` (smaller budgets so the suite stays quick).
"""

from __future__ import annotations

import dataclasses
import json
import pkgutil

import numpy as np
import pytest
import torch

from erasekit.artifact import ADAPTER_PREFIX
from erasekit.concepts import Concept
from erasekit.erasure import METHODS, Erasure, get_method, make_config
from erasekit.pipelines import group_parameters

import erasekit.methods  # noqa: F401

CONCEPT = Concept(
    name="skull",
    target=("skull", "death's head"),
    templates=("a {}", "a red {} on a plain background"),
    preserve=("a red circle on a plain background", "a blue star on polka dots"),
)
PROMPTS = ["a red skull on a plain background", "a blue star on polka dots"]


def _images(pipe) -> np.ndarray:
    gens = [torch.Generator().manual_seed(i) for i in range(len(PROMPTS))]
    return pipe(PROMPTS, num_inference_steps=3, guidance_scale=3.0, generator=gens, output_type="np").images


def _state(pipe) -> dict[str, torch.Tensor]:
    out = {f"unet.{k}": v.clone() for k, v in pipe.unet.state_dict().items()}
    out.update({f"text_encoder.{k}": v.clone() for k, v in pipe.text_encoder.state_dict().items()})
    return out


def test_every_method_module_is_registered():
    """Every module of the methods package registers a method (the registry imports them all)."""
    modules = {m.name for m in pkgutil.iter_modules(erasekit.methods.__path__) if not m.name.startswith("_")}
    registered = {METHODS.get(n).__module__.rsplit(".", 1)[1] for n in METHODS.names()}
    assert registered == modules


@pytest.mark.parametrize("name", METHODS.names())
def test_method_contract(name, pipe, tmp_path):
    method = get_method(name)
    config = make_config(name, get_method(name).test_config)
    before_state = _state(pipe)
    base = _images(pipe)

    erasure = method.fit(pipe, CONCEPT, config, progress=False)

    # fitting leaves the pipeline untouched
    after_fit = _state(pipe)
    for k, v in before_state.items():
        torch.testing.assert_close(after_fit[k], v, rtol=0, atol=0)

    # only tensors of the declared group are in the artifact; an inference-time method's (group None)
    # may carry only its hook's own tensors, named adapter.*, which are never written into the model
    group = method.declared_group(config)
    if group is None:
        assert all(k.startswith(ADAPTER_PREFIX) for k in erasure.tensors) and erasure.weights == {}
    else:
        assert erasure.tensors and set(erasure.tensors) <= set(group_parameters(pipe, group))

    # apply changes the output; remove restores it exactly
    with erasure.applied(pipe):
        edited = _images(pipe)
        applied_state = _state(pipe)
    assert np.abs(edited - base).max() > 0
    np.testing.assert_array_equal(_images(pipe), base)
    if group is None:  # a hook's tensors never reach the model's weights
        for k, v in applied_state.items():
            torch.testing.assert_close(v, before_state[k], rtol=0, atol=0)

    # save -> load -> apply gives identical images
    erasure.save(tmp_path / "art")
    assert sorted(p.name for p in (tmp_path / "art").iterdir()) == ["config.json", "weights.safetensors"]
    loaded = Erasure.load(tmp_path / "art")
    with loaded.applied(pipe):
        np.testing.assert_array_equal(_images(pipe), edited)
    np.testing.assert_array_equal(_images(pipe), base)

    # the config round-trips through JSON
    cls = method.config_class
    assert cls.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize("name", METHODS.names())
def test_invalid_config_values_name_the_field(name):
    cls = get_method(name).config_class
    for field in dataclasses.fields(cls):
        with pytest.raises(ValueError, match=field.name):
            cls.from_dict({field.name: [1]})
    with pytest.raises(ValueError, match="unknown"):
        cls.from_dict({"no_such_key": 1})


def test_fingerprint_mismatch_is_an_error(tiny_sd, random_testbed):
    erasure = get_method("negative_prompt").fit(tiny_sd, CONCEPT, make_config("negative_prompt"), progress=False)
    with pytest.raises(ValueError, match="fitted on base weights"):
        erasure.apply(random_testbed)
    erasure.apply(random_testbed, force=True)
    erasure.remove(random_testbed)


def test_esd_is_deterministic_in_its_seed(tiny_sd):
    fit = lambda seed: get_method("esd").fit(  # noqa: E731
        tiny_sd, CONCEPT, make_config("esd", {**get_method("esd").test_config, "seed": seed}), progress=False
    ).tensors
    a, b, c = fit(0), fit(0), fit(1)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_a_hook_artifact_never_writes_tensors_into_the_model(tiny_sd):
    """An inference-time artifact's ``adapter.*`` tensors travel with it; any other tensor is refused."""
    erasure = get_method("negative_prompt").fit(tiny_sd, CONCEPT, make_config("negative_prompt"), progress=False)
    key = next(iter(group_parameters(tiny_sd, "xattn_kv")))
    erasure.tensors = {f"{ADAPTER_PREFIX}extra": torch.ones(2)}
    with erasure.applied(tiny_sd):
        pass
    erasure.tensors[key] = torch.zeros_like(group_parameters(tiny_sd, "xattn_kv")[key])
    with pytest.raises(ValueError, match="holds weight tensors"):
        erasure.apply(tiny_sd)
