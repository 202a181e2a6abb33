"""Property-based checks of the error contract (Hypothesis, bounded and derandomised so CI is
reproducible): whatever configs, concept files, prompts, seeds or artifact corruptions come in,
the result is exit 0 with a complete result, or exit 2 with one line and nothing written; the
library raises only :class:`erasekit.errors.UserError` for them, never another exception."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from erasekit.cli import main
from erasekit.concepts import Concept, get_concept
from erasekit.erasure import METHODS, Erasure, get_method, make_config
from erasekit.errors import UserError

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70))
JSONISH = st.recursive(st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12)),
                       lambda inner: st.one_of(st.lists(inner, max_size=3),
                                               st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                       max_leaves=6)


def _contract(argv: list[str], capsys, written: list[Path]) -> int:
    """Run the CLI: 0 and every output written, or 2 with one error line and no output."""
    code = main(argv)
    event(f"exit {code}")
    lines = capsys.readouterr().err.strip("\n").splitlines()
    if code == 0:
        assert all(p.exists() for p in written), argv
    else:
        errors = [line for line in lines if line.startswith("erasekit: error: ")]
        assert code == 2 and len(errors) == 1 and errors[0] == lines[-1], (argv, lines)
        assert not any(p.exists() for p in written), argv
    return code


# -- configs -----------------------------------------------------------------------------------
def _plausible(default):
    """Values of the default's type near its scale (so valid configs are drawn too)."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.integers(-2, 3 * max(1, default))
    if isinstance(default, float):
        return st.floats(-1.0, 3 * max(1.0, default))
    if isinstance(default, str):
        return st.sampled_from([default, default.upper(), ""])
    return None


@pytest.mark.parametrize("method", METHODS.names())
@settings(max_examples=100, **SETTINGS)
@given(data=st.data())
def test_any_config_is_valid_or_a_user_error(method, data):
    defaults = get_method(method).config_class().to_dict()
    keys = st.one_of(st.sampled_from(sorted(defaults)), st.text(min_size=1, max_size=8))
    overrides = {}
    for key in data.draw(st.lists(keys, max_size=3, unique=True)):
        plausible = _plausible(defaults.get(key))
        overrides[key] = data.draw(JSONISH if plausible is None else st.one_of(plausible, plausible, JSONISH))
    try:
        cfg = make_config(method, overrides)
    except UserError:
        event("user error")
        return
    event("a config")
    assert type(cfg).from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # a valid config round-trips


# -- concept files -------------------------------------------------------------------------------
WORDS = st.text(st.characters(codec="utf-8"), min_size=0, max_size=12)
CONCEPTS = st.fixed_dictionaries(
    {"name": WORDS, "target": st.one_of(WORDS, st.lists(WORDS, max_size=3))},
    optional={"templates": st.lists(st.sampled_from(["{}", "a {} on dots", "{} and {}", "no slot", ""]), max_size=3),
              "guide": WORDS, "preserve": st.lists(WORDS, max_size=2), "family": st.sampled_from([None, "shape", "x"]),
              "other": JSONISH})


@settings(max_examples=150, **SETTINGS)
@given(raw=st.one_of(st.text(max_size=80), st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                     st.dictionaries(st.sampled_from(["name", "target", "templates", "guide", "preserve", "family",
                                                      "other"]), JSONISH, max_size=5).map(json.dumps),
                     CONCEPTS.map(json.dumps), CONCEPTS.map(json.dumps)),
       suffix=st.sampled_from([".yaml", ".json"]))
def test_any_concept_file_is_a_concept_or_a_user_error(raw, suffix, tmp_path_factory):
    path = tmp_path_factory.mktemp("concept") / f"c{suffix}"
    path.write_bytes(raw.encode("utf-8", errors="replace"))
    try:
        concept = get_concept(str(path))
    except UserError:
        event("user error")
        return
    event("a concept")
    assert isinstance(concept, Concept) and concept.erase_prompts()
    assert Concept.from_dict(concept.to_dict()) == concept


# -- the CLI with generated values -------------------------------------------------------------------
@settings(max_examples=16, **SETTINGS)
@given(concept=st.one_of(st.sampled_from(["heart", "star", "red", "hart", ""]), st.text(max_size=10)),
       sets=st.lists(st.tuples(st.sampled_from(["lamb", "erase_scale", "preserve_scale", "edit_keys", "bogus"]),
                               st.one_of(st.sampled_from(["Infinity", "NaN", "-1", "0", "1e308", "true", "[]"]),
                                         NUMBERS.map(str), st.floats(0.01, 5).map(str))), max_size=2))
def test_erase_with_generated_settings(concept, sets, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("erase") / "art"
    argv = ["erase", "--concept", concept, "--method", "uce", "--out", str(out)]
    for key, value in sets:
        argv += ["--set", f"{key}={value}"]
    if _contract(argv, capsys, [out / "config.json", out / "weights.safetensors"]) == 0:
        Erasure.load(out)  # what was written loads back


@settings(max_examples=10, **SETTINGS)
@given(prompt=st.text(max_size=300), seed=st.one_of(st.integers(-5, 2**40), st.just(2**31 - 1)),
       guidance=st.sampled_from(["0", "1", "2.5", "7.5", "999", "1e9", "inf", "nan", "-0.0"]))
def test_generate_with_generated_prompts_and_seeds(prompt, seed, guidance, tmp_path_factory, capsys):
    out = tmp_path_factory.mktemp("gen") / "g.png"
    argv = ["generate", prompt, "-n", "1", "--steps", "1", "--seed", str(seed), "--guidance", guidance,
            "-o", str(out)]
    _contract(argv, capsys, [out])


# -- artifact corruptions ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifact(tmp_path_factory, shipped_testbed):
    folder = tmp_path_factory.mktemp("art") / "heart-uce"
    get_method("uce").fit(shipped_testbed, get_concept("heart"), make_config("uce"), progress=False).save(folder)
    return folder


@settings(max_examples=40, **SETTINGS)
@given(key=st.sampled_from(["method", "config", "concept", "base_fingerprint", "tensors", "extra", "new"]),
       action=st.sampled_from(["drop", "replace"]), value=JSONISH, cut=st.one_of(st.none(), st.integers(0, 4000)))
def test_corrupted_artifacts_load_or_are_a_user_error(key, action, value, cut, artifact, shipped_testbed,
                                                      tmp_path_factory):
    folder = tmp_path_factory.mktemp("corrupt") / "a"
    shutil.copytree(artifact, folder)
    raw = json.loads((folder / "config.json").read_text())
    if action == "drop":
        raw.pop(key, None)
    else:
        raw[key] = value
    (folder / "config.json").write_text(json.dumps(raw))
    if cut is not None:
        blob = (folder / "weights.safetensors").read_bytes()
        (folder / "weights.safetensors").write_bytes(blob[:cut])
    try:
        erasure = Erasure.load(folder)
        erasure.check(shipped_testbed)
    except UserError:
        event("user error")
        return
    event("loaded and checked")
    with erasure.applied(shipped_testbed):  # what loads and checks also applies and removes cleanly
        pass
