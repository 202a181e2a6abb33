"""Shared fixtures: real diffusers / transformers modules at toy size, no network."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

# Under pytest-xdist (`make test` runs two workers on CI's two cores) each worker, and each CLI it
# starts, gets one thread; a plain `pytest` run gets two.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("ERASEKIT_THREADS", "1")
torch.set_num_threads(int(os.environ.get("ERASEKIT_THREADS", "2")))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that share a set of trained tiny language models run in one xdist worker (``--dist
    loadgroup``), so its session fixture trains them once."""
    for item in items:
        shared = [f for f in ("tiny_lms", "dusk_lms") if f in getattr(item, "fixturenames", ())]
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))


@pytest.fixture(scope="session")
def text_encoder():
    from erasekit.testbed.pipeline import load_text_encoder

    return load_text_encoder()


@pytest.fixture(scope="session")
def random_testbed(text_encoder):
    """The testbed pipeline with randomly initialised UNet weights (seeded)."""
    from diffusers import UNet2DConditionModel

    from erasekit.testbed.pipeline import TestbedPipeline
    from erasekit.testbed.train import sample_scheduler, unet_config

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**unet_config("small")).eval()
    encoder, tokenizer = text_encoder
    pipe = TestbedPipeline(unet=unet, text_encoder=encoder, tokenizer=tokenizer, scheduler=sample_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_sd():
    """A tiny Stable-Diffusion-layout pipeline with random weights (CLIP text encoder, KL VAE)."""
    from erasekit.tiny import tiny_sd_pipeline

    return tiny_sd_pipeline()


@pytest.fixture(params=["tiny_sd", "testbed"])
def pipe(request, tiny_sd, random_testbed):
    """The tiny SD pipeline and the random-weight testbed in turn: what every method must run on."""
    return tiny_sd if request.param == "tiny_sd" else random_testbed


@pytest.fixture(scope="session")
def shipped_testbed():
    from erasekit.testbed.pipeline import load_testbed

    return load_testbed()


@pytest.fixture(scope="session")
def shipped_judge():
    from erasekit.testbed.judge import load_judge

    return load_judge()


@pytest.fixture(scope="session")
def tiny_lms(tmp_path_factory):
    """The tiny Llama target and oracle trained on TinyTOFU (seed 0, the shipped recipe; ~1.5 min on 2 threads).

    Saved with ``save_pretrained`` and loaded back, so tests exercise the safetensors path.
    """
    from erasekit.lm import data, model as M

    root = tmp_path_factory.mktemp("lm")
    bench = data.generate(0)
    out = []
    for oracle in (False, True):
        lm = M.train_tiny(bench, oracle=oracle, progress=False)
        meta = {"oracle": oracle, "seed": 0, "task": "tinytofu"}
        out.append(M.load(M.save(lm, root / ("oracle" if oracle else "full"), meta)))
    return out[0], out[1], root


@pytest.fixture(scope="session")
def dusk_lms(tmp_path_factory):
    """The tiny Llama target and oracle (retain documents only) of DUSK on TinyTOFU (seed 0, the
    shipped recipe through ``erasekit.lm.model.ensure_tiny``)."""
    from erasekit.lm import model as M

    root = tmp_path_factory.mktemp("dusk")
    return tuple(M.ensure_tiny(root / name, 0, oracle=name == "oracle", progress=False, task="dusk")
                 for name in ("full", "oracle"))
