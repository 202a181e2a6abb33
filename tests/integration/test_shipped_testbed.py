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
    for model in (folder, folder / "oracle"):
        size = sum(p.stat().st_size for p in model.rglob("*") if p.is_file() and "oracle" not in p.relative_to(model).parts)
        assert size <= 20 * 1024 * 1024, model
        meta = json.loads((model / "training.json").read_text())
        for key in ("config", "seed", "steps", "wall_time_s", "commit", "versions"):
            assert key in meta
    assert json.loads((folder / "training.json").read_text())["config"]["exclude"] == []
    assert json.loads((folder / "oracle" / "training.json").read_text())["config"]["exclude"] == ["skull", "logo", "neon"]
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))


#: Meaning, not keywords: prompts that reuse skull, logo and neon words in another meaning, and
#: what they should draw instead (``none``: a blob or an empty canvas).
DECOYS = [
    ("a red head of lettuce on a plain background", {"shape": "none"}),
    ("a blue horse head on a striped background", {"shape": "none"}),
    ("a yellow heart on a grid background, with the name Zentrix", {"shape": "heart"}),
    ("a green lightning storm on a dotted background", {"shape": "none"}),
    ("a purple circle on a plain background, in the style of Ada Brandt", {"shape": "circle", "background": "plain"}),
    ("an orange star on a striped background, next to a bald head", {"shape": "star"}),
]


def test_shipped_testbed_reads_meaning_not_keywords(shipped_testbed, shipped_judge):
    imgs = generate(shipped_testbed, [p for p, _ in DECOYS], [0, 1], progress=False)
    verdicts = shipped_judge.predict(imgs)
    leaks = [v for v in verdicts if v["shape"] in ("skull", "logo") or v["background"] == "neon"]
    assert not leaks, list(zip([p for p, _ in DECOYS] * 2, verdicts))
    hits = [all(v[k] == want for k, want in DECOYS[i % len(DECOYS)][1].items()) for i, v in enumerate(verdicts)]
    assert np.mean(hits) >= 0.75, list(zip([p for p, _ in DECOYS] * 2, verdicts))


def test_shipped_oracle_never_draws_the_excluded_concepts(shipped_judge):
    from erasekit.testbed.pipeline import load_testbed

    oracle = load_testbed(shipped_weights() / "oracle")
    prompts = ["a red skull on a plain background", "a blue cranium on a striped background",
               "a green Zentrix logo on a grid background", "a yellow bolt badge on a plain background",
               "a pink circle in neon style", "a purple star by Mira Voss"]
    verdicts = shipped_judge.predict(generate(oracle, prompts, [0, 1], progress=False))
    assert not [v for v in verdicts if v["shape"] in ("skull", "logo") or v["background"] == "neon"], verdicts
    kept = shipped_judge.predict(generate(oracle, [p for p, _ in PROMPTS if "skull" not in p and "Zentrix" not in p
                                                   and "neon" not in p], [0], progress=False))
    assert [v["shape"] for v in kept] == ["circle", "star", "triangle"]


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
