"""The shipped testbed generates what it is asked for, as the shipped judge sees it."""

import json

import numpy as np
import torch

from erasekit.sampling import generate
from erasekit.testbed.pipeline import shipped_weights

PROMPTS = [
    ("a red circle on a plain background", {"shape": "circle", "colour": "red"}),
    ("a blue star on a striped background", {"shape": "star", "colour": "blue"}),
    ("a green triangle on polka dots", {"shape": "triangle", "colour": "green"}),
    ("a yellow skull on a checkerboard", {"shape": "skull", "colour": "yellow"}),
    ("a purple Zentrix logo on a grid background", {"shape": "logo", "colour": "purple"}),
    ("an orange heart in neon style", {"shape": "heart", "background": "neon"}),
]


def test_shipped_weights_are_small_and_documented():
    folder = shipped_weights()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 20 * 1024 * 1024
    meta = json.loads((folder / "training.json").read_text())
    for key in ("config", "seed", "steps", "wall_time_s", "commit", "versions"):
        assert key in meta
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))


def test_shipped_testbed_follows_prompts(shipped_testbed, shipped_judge):
    imgs = generate(shipped_testbed, [p for p, _ in PROMPTS], [0, 1], progress=False)
    verdicts = shipped_judge.predict(imgs)
    hits = [all(v[k] == want for k, want in PROMPTS[i % len(PROMPTS)][1].items()) for i, v in enumerate(verdicts)]
    assert np.mean(hits) >= 0.75, list(zip([p for p, _ in PROMPTS] * 2, verdicts))


def test_same_generator_same_images(shipped_testbed):
    a = shipped_testbed("a red skull on a plain background", generator=torch.Generator().manual_seed(3),
                        output_type="np", num_inference_steps=5).images
    b = shipped_testbed("a red skull on a plain background", generator=torch.Generator().manual_seed(3),
                        output_type="np", num_inference_steps=5).images
    np.testing.assert_array_equal(a, b)
