"""Every CLI error path: one line on stderr, exit code 2, nothing written."""

import json
import subprocess
import sys

import pytest

from erasekit.cli import main


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["testbed", "sample", "--shape", "hexagon"], "unknown shape 'hexagon'"),
        (["testbed", "sample", "--colour", "reed"], "did you mean 'red'"),
        (["testbed", "sample", "--background", "plaid"], "unknown background 'plaid'"),
        (["testbed", "train", "--out", "OUT", "--steps", "0"], "--steps: must be a positive integer, got 0"),
        (["testbed", "train", "--out", "OUT", "--steps", "ten"], "must be a positive integer, got 'ten'"),
        (["testbed", "train", "--out", "OUT", "--resume"], "holds no checkpoint"),
        (["testbed", "train", "--out", "OUT", "--exclude", "skull,nein"], "unknown testbed value 'nein'"),
        (["testbed", "evaluate", "--precision", "fp16"], "invalid choice: 'fp16'"),
        (["generate", "a red skull", "--steps", "-1"], "--steps: must be a positive integer"),
        (["generate", "a red skull", "--weights", "MISSING"], "weights folder"),
        (["generate", "a red skull", "--judge", "MISSING"], "judge folder"),
        (["generate", "a red skull", "--guidance", "-2"], "--guidance: must be >= 0"),
        (["generate", "   "], "PROMPT is empty"),
        (["testbed", "evaluate", "--seeds", "a,b"], "comma-separated integers"),
        (["testbed", "evaluate", "--weights", "MISSING"], "weights folder"),
        (["testbed", "evaluate", "--prompts", "0"], "--prompts: must be a positive integer"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_error_paths(argv, needle, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path / "out")).replace("MISSING", str(tmp_path / "missing")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("erasekit: error: "), err
    assert needle in err, err
    assert not (tmp_path / "out").exists()


def test_weights_folder_without_unet(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["generate", "a red skull", "--weights", str(tmp_path / "empty"), "-o", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert "no testbed weights" in err and err.count("\n") == 1
    assert not (tmp_path / "g.png").exists()


def test_unwritable_output(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["testbed", "sample", "-o", str(tmp_path / "file" / "grid.png")]) == 2
    assert "cannot write" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "erasekit.cli", "testbed", "sample", "--shape", "hexagon"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]


def test_sample_writes_a_grid(tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main(["testbed", "sample", "--shape", "skull", "-n", "4", "-o", str(out)]) == 0
    from PIL import Image

    assert Image.open(out).size[0] > 4 * 128
    decoys = tmp_path / "none.png"
    assert main(["testbed", "sample", "--shape", "none", "--phrasing", "known", "-n", "2", "-o", str(decoys)]) == 0
    assert Image.open(decoys).size[0] > 2 * 128


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--concept", "skul", "--method", "uce"], "did you mean 'skull'"),
        (["--concept", "skull", "--method", "ucee"], "did you mean 'uce'"),
        (["--concept", "skull", "--method", "uce", "--set", "lamb"], "is not key=value"),
        (["--concept", "skull", "--method", "uce", "--set", "lamb=-1"], "lamb: must be > 0"),
        (["--concept", "skull", "--method", "uce", "--set", "colour=1"], "unknown UCEConfig key(s): colour"),
        (["--concept", "skull", "--method", "esd", "--set", "train_method=esd-z"], "train_method: must be one of"),
        (["--concept", "MISSING.yaml", "--method", "uce"], "does not exist"),
    ],
)
def test_erase_error_paths(extra, needle, tmp_path, capsys):
    extra = [a.replace("MISSING", str(tmp_path / "missing")) for a in extra]
    assert main(["erase", *extra, "--out", str(tmp_path / "art")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "art").exists()


def test_erase_into_unwritable_or_used_out(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["erase", "--concept", "skull", "--method", "uce", "--out", str(tmp_path / "file" / "art")]) == 2
    assert "cannot write" in capsys.readouterr().err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    assert main(["erase", "--concept", "skull", "--method", "uce", "--out", str(tmp_path / "used")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_artifact_for_another_model(tmp_path, capsys):
    from erasekit.concepts import get_concept
    from erasekit.erasure import get_method, make_config
    from erasekit.tiny import tiny_sd_pipeline

    art = get_method("negative_prompt").fit(tiny_sd_pipeline(), get_concept("skull"), make_config("negative_prompt"),
                                            progress=False)
    art.save(tmp_path / "art")
    capsys.readouterr()  # drop library warnings printed while building the tiny pipeline
    out = tmp_path / "g.png"
    assert main(["generate", "a red skull", "--erasure", str(tmp_path / "art"), "-n", "1", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "fitted on base weights" in err and err.count("\n") == 1
    assert not out.exists()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    assert main(["generate", "a red skull", "--erasure", str(tmp_path / "bad"), "-o", str(out)]) == 2
    assert "corrupt erasure artifact" in capsys.readouterr().err


def test_erase_and_generate_on_a_diffusers_folder(tmp_path, capsys):
    """The same commands on a StableDiffusionPipeline folder (tiny, random weights)."""
    from erasekit.erasure import Erasure
    from erasekit.tiny import tiny_sd_pipeline

    pipe = tiny_sd_pipeline()
    pipe.save_pretrained(tmp_path / "sd")
    art = tmp_path / "art"
    assert main(["erase", "--concept", "skull", "--method", "uce", "--weights", str(tmp_path / "sd"),
                 "--out", str(art)]) == 0
    assert f"artifact in {art}" in capsys.readouterr().out
    erasure = Erasure.load(art)
    assert erasure.method == "uce" and erasure.extra["commit"] and erasure.extra["versions"]["torch"]
    assert all(".attn2.to_" in k for k in erasure.tensors)
    out = tmp_path / "g.png"
    assert main(["generate", "a red skull", "--weights", str(tmp_path / "sd"), "--erasure", str(art), "-n", "2",
                 "--steps", "2", "-o", str(out)]) == 0
    assert out.exists()
    # export bakes the edit into a full pipeline folder that loads with plain diffusers
    from diffusers import StableDiffusionPipeline

    erasure.export(pipe, tmp_path / "exported")
    baked = StableDiffusionPipeline.from_pretrained(tmp_path / "exported")
    key = next(iter(erasure.tensors))
    torch_equal = (baked.unet.get_parameter(key.split(".", 1)[1]) == erasure.tensors[key]).all()
    assert bool(torch_equal)
    assert main(["methods"]) == 0
    assert "uce" in capsys.readouterr().out


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_testbed_evaluate_reports_every_split_and_protected_concept(precision, capsys):
    import json

    assert main(["testbed", "evaluate", "--prompts", "1", "--seeds", "0", "--steps", "2", "--precision", precision,
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["precision"] == precision
    assert set(result["splits"]) == {"seen_given", "seen_known", "heldout_pairs_given", "heldout_pairs_known",
                                     "unseen", "unseen_sentences"}
    for value in ("skull", "logo", "neon"):
        row = result["protected"][value]
        assert len(row["phrasings"]) >= 9 and sum(p["disjoint"] for p in row["phrasings"].values()) >= 5
        assert 0 <= row["decoy"] <= 1 and 0 <= row["known"] <= 1
    assert set(result["meets_requirements"]) >= {"seen_given", "skull_known", "logo_each_phrasing", "neon_decoy"}


def test_testbed_evaluate_scores_the_oracle_without_its_excluded_values(capsys):
    """The shipped oracle's training.json says it never saw skull, logo and neon: their prompts are
    left out of the splits and their bar is absence (rate <= 0.05), not >= 0.95."""
    import json

    from erasekit.testbed.fidelity import prompt_sets
    from erasekit.testbed.pipeline import shipped_weights

    oracle = str(shipped_weights() / "oracle")
    assert main(["testbed", "evaluate", "--weights", oracle, "--prompts", "16", "--seeds", "0", "--steps", "2",
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["exclude"] == ["skull", "logo", "neon"]
    full = prompt_sets(16)
    for split, row in result["splits"].items():
        kept = [p for p in full[split] if not {"skull", "logo", "neon"} & {p.attributes.shape, p.attributes.background}]
        assert row["images"] == len(kept) < len(full[split])
    assert all(result["protected"][v]["excluded"] for v in ("skull", "logo", "neon"))
    assert {"skull_absent", "logo_absent", "neon_absent"} <= set(result["meets_requirements"])
    assert not {"skull_known", "logo_each_phrasing"} & set(result["meets_requirements"])
    # --exclude overrides the record: the shipped testbed scored as if trained without the heart
    assert main(["testbed", "evaluate", "--prompts", "1", "--seeds", "0", "--steps", "2", "--exclude", "heart",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["exclude"] == ["heart"]


def test_mass_erasure_from_a_list_evaluates_one_part_at_a_time(tmp_path, capsys):
    """`erase --concept skull,logo` makes one artifact; `eval` asks which part, and scores each."""
    out, db = tmp_path / "both", tmp_path / "r.db"
    assert main(["erase", "--concept", "skull,logo", "--method", "uce", "--out", str(out)]) == 0
    assert "'skull+logo'" in capsys.readouterr().out
    tiny = ["--prompts", "1", "--seeds", "0", "--steps", "2", "--metrics", "efficacy", "--db", str(db)]
    assert main(["eval", str(out), *tiny]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "skull, logo" in err and "--concept" in err
    assert main(["eval", str(out), "--concept", "lgo", *tiny]) == 2
    assert "did you mean 'logo'" in capsys.readouterr().err
    for part in ("skull", "logo"):
        assert main(["eval", str(out), "--concept", part, *tiny, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["run"]["concept"] == part


def test_eval_and_attack_a_stack_with_on(tmp_path, capsys):
    """`eval RUN --on LOWER`: LOWER applied first, RUN on top, recorded as one stacked run."""
    uce, irece, db = tmp_path / "uce", tmp_path / "irece", tmp_path / "r.db"
    for method, out in (("uce", uce), ("irece", irece)):
        assert main(["erase", "--concept", "skull", "--method", method, "--out", str(out)]) == 0
    capsys.readouterr()
    tiny = ["--prompts", "1", "--seeds", "0", "--steps", "2", "--db", str(db)]
    assert main(["eval", "--on", str(uce), "--baseline", "--concept", "skull", *tiny]) == 2
    assert "give the run folder too" in capsys.readouterr().err
    assert main(["eval", str(irece), "--on", str(tmp_path / "nope"), *tiny]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", str(irece), "--on", str(uce), *tiny, "--metrics", "efficacy", "--json"]) == 0
    run = json.loads(capsys.readouterr().out)["run"]
    assert run["method"] == "uce+irece" and run["artifact"] == f"{uce} + {irece}" and run["name"] == "uce+irece"
    assert main(["eval", str(irece), *tiny, "--metrics", "efficacy", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["run_id"] != run["run_id"]  # IRECE alone: another run
    assert main(["attack", str(irece), "--on", str(uce), "--attack", "paraphrase", "--budget", "1",
                 "--prompts", "1", "--steps", "2", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run_name"] == "uce+irece"
