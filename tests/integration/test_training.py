"""A training run from scratch through the CLI, and resume equals an uninterrupted run."""

import json
import shutil

import pytest
import torch

from erasekit.cli import main
from erasekit.testbed.train import TrainConfig, train
from erasekit.files import load_tensors


@pytest.fixture(scope="module")
def three_step_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    assert main(["testbed", "train", "--out", str(out), "--steps", "3", "--batch-size", "8",
                 "--captions-per-combo", "2"]) == 0
    return out


def test_three_step_training_from_scratch(three_step_run):
    out = three_step_run
    meta = json.loads((out / "training.json").read_text())
    assert meta["steps"] == 3 and meta["seed"] == 0 and meta["commit"]
    assert meta["versions"]["torch"].startswith("2.13.0")
    assert (out / "unet" / "diffusion_pytorch_model.safetensors").exists()
    assert (out / "scheduler" / "scheduler_config.json").exists()
    from erasekit.testbed.pipeline import load_testbed

    pipe = load_testbed(out)
    img = pipe("a red skull on a plain background", num_inference_steps=2, output_type="np").images
    assert img.shape == (1, 32, 32, 3)


def test_resume_matches_uninterrupted_run(three_step_run, tmp_path):
    cfg = TrainConfig(steps=3, batch_size=8, checkpoint_every=1, captions_per_combo=2)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for f in ("captions.safetensors", "captions.json"):  # skip re-encoding the captions
            shutil.copy(three_step_run / f, tmp_path / name / f)
    train(tmp_path / "a", cfg, progress=False)
    train(tmp_path / "b", cfg, progress=False, stop_after=2)
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["step"] == 2
    train(tmp_path / "b", cfg, resume=True, progress=False)
    a = load_tensors(tmp_path / "a" / "checkpoint" / "unet_raw.safetensors")
    b = load_tensors(tmp_path / "b" / "checkpoint" / "unet_raw.safetensors")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)


def test_exclude_trains_an_oracle_without_the_concepts(tmp_path, capsys):
    out = tmp_path / "oracle"
    assert main(["testbed", "train", "--out", str(out), "--steps", "1", "--batch-size", "4",
                 "--captions-per-combo", "1", "--exclude", "neon,skull"]) == 0
    meta = json.loads((out / "training.json").read_text())
    assert meta["config"]["exclude"] == ["skull", "neon"]
    captions = json.loads((out / "captions.json").read_text())["captions"]
    assert not any("skull" in c or "neon style" in c or "Mira Voss" in c for c in captions)
    assert any("Zentrix logo" in c for c in captions)
    assert main(["testbed", "train", "--out", str(tmp_path / "x"), "--exclude", "skul"]) == 2
    assert "did you mean 'skull'" in capsys.readouterr().err
