"""Benchmark specs: every shipped spec loads, and each kind of mistake is one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from erasekit.bench.cells import eval_config, plan
from erasekit.bench.lm_cells import plan_lm
from erasekit.bench.leaderboard import over_seeds, wilson
from erasekit.bench.spec import BenchSpec, load_spec
from erasekit.cli import main
from erasekit.errors import UserError

SPECS = sorted((Path(__file__).resolve().parents[2] / "benchmarks" / "specs").glob("*.yaml"))
BASE = {"name": "t", "methods": ["uce"], "concepts": ["skull"], "attacks": ["paraphrase"]}


def test_shipped_specs_load():
    assert {p.stem for p in SPECS} >= {"smoke", "testbed", "lm"}
    for path in SPECS:
        spec = load_spec(path)
        baselines, methods = plan(spec)
        assert len(methods) == len(spec.methods) * len(spec.concepts) * len(spec.seeds)
        assert len(baselines) == len(spec.concepts) * len(spec.seeds)
        lm_baselines, lm_methods = plan_lm(spec)
        lm = spec.lm
        assert len(lm_methods) == (0 if lm is None else len(lm.methods) * len(lm.tasks) * len(spec.seeds))
        assert len(lm_baselines) == (0 if lm is None else len(lm.tasks))


def test_lm_spec_covers_every_lm_method_and_attack():
    from erasekit.lm.attacks.base import lm_attack_names
    from erasekit.lm.methods.base import lm_method_names

    spec = load_spec(SPECS[[p.stem for p in SPECS].index("lm")])
    assert spec.lm is not None and not spec.methods and not spec.concepts
    assert {m.method for m in spec.lm.methods} == set(lm_method_names())
    assert {a.attack for a in spec.lm.attacks} == set(lm_attack_names())
    assert [t.task for t in spec.lm.tasks] == ["tinytofu"]


def test_testbed_spec_covers_every_method_and_attack_with_32_targets():
    from erasekit.attacks import ladder
    from erasekit.erasure import METHODS

    spec = load_spec(SPECS[[p.stem for p in SPECS].index("testbed")])
    assert {m.method for m in spec.methods} == set(METHODS.names())
    # the attacks added while the testbed pass was running (issue 18) join testbed.yaml in its next pass
    later = {"ringabell", "p4d", "restore"}
    assert [a.attack for a in spec.attacks] == [name for name in ladder() if name not in later]
    assert set(spec.concepts) == {"skull", "logo", "neon"} and len(spec.seeds) == 3
    assert spec.attack_targets.n_prompts * len(spec.attack_targets.seeds) >= 32  # per cell and attack


@pytest.mark.parametrize("change, needle", [
    ({"methods": ["ucee"]}, "did you mean 'uce'"),
    ({"methods": [{"method": "uce", "set": {"lamb": -1}}]}, "lamb"),
    ({"methods": [{"method": "uce", "set": {"nope": 1}}]}, "unknown UCEConfig key(s): nope"),
    ({"methods": [{"set": {}}]}, "lacks 'method'"),
    ({"methods": ["uce", "uce"]}, "labels must be unique"),
    ({"methods": []}, "at least one method"),
    ({"attacks": ["embeding"]}, "did you mean 'embedding'"),
    ({"attacks": [{"attack": "embedding", "budget": 0}]}, "budget"),
    ({"concepts": ["skul"]}, "skull"),
    ({"seeds": [0, 0]}, "must not repeat"),
    ({"eval": {"n_prompts": 0}}, "n_prompts"),
    ({"eval": {"stepz": 4}}, "unknown EvalConfig key(s): stepz"),
    ({"attack_targets": {"seeds": []}}, "seeds"),
    ({"surprise": 1}, "unknown BenchSpec key(s): surprise"),
    ({"name": "a b"}, "name"),
    ({"lm": {"methods": ["npoo"], "tasks": ["tinytofu"]}}, "did you mean 'npo'"),
    ({"lm": {"methods": [{"method": "npo", "set": {"stepz": 1}}], "tasks": ["tinytofu"]}}, "stepz"),
    ({"lm": {"methods": ["npo"], "tasks": ["tinytofoo"]}}, "did you mean 'tinytofu'"),
    ({"lm": {"methods": ["npo"], "tasks": []}}, "lm.tasks"),
    ({"lm": {"methods": ["npo"], "tasks": ["tinytofu"], "attacks": ["relern"]}}, "did you mean 'relearn'"),
    ({"lm": {"methods": ["npo"], "tasks": ["tinytofu"], "attacks": [{"attack": "quantize", "budget": 5}]}}, "bits"),
    ({"lm": {"methods": ["npo"], "tasks": ["harry-potter"]}}, "needs a model folder"),
    ({"lm": {"methods": ["npo"], "tasks": ["tinytofu"], "modle": "tiny"}}, "unknown LMSection key(s): modle"),
    ({"lm": ["npo"]}, "lm: must be a mapping"),
    ({"methods": [{"method": "irece", "stack_on": ["ucee"]}]}, "did you mean 'uce'"),
    ({"methods": [{"method": "irece", "stack_on": "uce"}]}, "stack_on: must be a list"),
    ({"methods": [{"method": "irece", "stack_on": [{"method": "sld", "stack_on": ["uce"]}]}]}, "cannot have its own 'stack_on'"),
    ({"lm": {"methods": [{"method": "npo", "stack_on": ["npo"]}], "tasks": ["tinytofu"]}}, "do not stack"),
])
def test_bad_specs_fail_with_one_line(change, needle):
    with pytest.raises(UserError) as exc:
        BenchSpec.from_mapping({**BASE, **change})
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_cli_rejects_a_bad_spec_with_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nmethods: [ucee]\nconcepts: [skull]\n")
    assert main(["bench", str(bad), "--db", str(tmp_path / "x.db")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'uce'" in err[0] and str(bad) in err[0]
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    assert main(["bench", str(tmp_path / "broken.yaml")]) == 2
    assert "not valid YAML" in capsys.readouterr().err
    assert main(["bench", str(tmp_path / "missing.yaml")]) == 2
    assert not (tmp_path / "x.db").exists()
    (tmp_path / "on.yaml").write_text("name: t\nmethods: [{method: irece, on: [uce]}]\nconcepts: [skull]\n")
    assert main(["bench", str(tmp_path / "on.yaml")]) == 2  # YAML reads `on` as true
    assert "stack_on" in capsys.readouterr().err


def test_replicates_get_their_own_prompts_and_noise():
    spec = BenchSpec.from_mapping({**BASE, "seeds": [0, 1], "eval": {"seeds": [0, 1]}})
    a, b = eval_config(spec, 0), eval_config(spec, 1)
    assert a.prompt_seed != b.prompt_seed and not set(a.seeds) & set(b.seeds)
    cells = plan(spec)[1]
    assert len({c.cell_id for c in cells}) == 2 and len({c.fit_id for c in cells}) == 2


def test_a_spec_may_hold_only_language_models():
    spec = BenchSpec.from_mapping({"name": "t", "seeds": [0, 1], "lm": {"methods": ["npo"], "tasks": ["tinytofu"]}})
    assert plan(spec) == ([], [])
    baselines, methods = plan_lm(spec)
    assert len(baselines) == 1 and [c.seed for c in methods] == [0, 1]
    assert [c.config["seed"] for c in methods] == [0, 1]  # each replicate fits with its own seed
    assert len({c.cell_id for c in methods}) == 2
    with pytest.raises(UserError, match="at least one method"):
        BenchSpec.from_mapping({"name": "t"})


def test_intervals():
    lo, hi = wilson(16, 32)
    assert lo < 0.5 < hi and hi - lo < 0.36
    assert wilson(0, 32)[0] == 0.0 and wilson(32, 32)[1] == 1.0
    one = over_seeds([0.5], [0.4, 0.6])
    assert one["ci95"] == [0.4, 0.6]
    three = over_seeds([0.5, 0.6, 0.7], None)
    assert three["value"] == pytest.approx(0.6) and three["ci95"][0] < 0.6 < three["ci95"][1]


def test_demo_spec_attacks_each_erasure_white_box():
    from erasekit.attacks import get_attack
    from erasekit.cli.demo import DEMO_SPEC

    spec = BenchSpec.from_mapping(DEMO_SPEC)
    assert [m.method for m in spec.methods] == ["uce", "esd"] and spec.concepts == ("skull",)
    assert spec.attacks and all(get_attack(a.attack).threat_model.startswith("white-box") for a in spec.attacks)


def test_threads_share_the_thread_budget_among_busy_workers():
    import torch

    from erasekit.bench.runner import threads_per_worker

    before = torch.get_num_threads()
    try:
        for cores in (1, 2, 4):  # the budget `erasekit --threads N` (or $ERASEKIT_THREADS) gives torch
            torch.set_num_threads(cores)
            assert threads_per_worker(1) == cores and threads_per_worker(2 * cores) == 1
            assert threads_per_worker(cores, cells=1) == cores  # one cell left: it gets every core
            assert threads_per_worker(2, cells=2) == threads_per_worker(2) == max(1, cores // 2)
    finally:
        torch.set_num_threads(before)


def test_a_stack_is_its_own_cell_and_plain_cells_keep_their_ids():
    """``{method: irece, stack_on: [uce]}``: label ``uce+irece``, UCE's resolved config in the cell's
    inputs (so its id differs from IRECE alone), and UCE's part shares the plain UCE cell's fit."""
    from erasekit.bench.cells import Cell
    from erasekit.provenance import content_id

    spec = BenchSpec.from_mapping({**BASE, "methods": ["uce", "irece", {"method": "irece", "stack_on": ["uce"]},
                                                       {"method": "irece", "label": "uce-l+irece",
                                                        "stack_on": [{"method": "uce", "set": {"lamb": 0.1}}]}]})
    _, cells = plan(spec)
    uce, irece, stack, stack2 = cells
    assert stack.label == "uce+irece" and stack.method == "irece" and stack.under == (("uce", uce.config),)
    assert len({c.cell_id for c in cells}) == 4
    assert stack.fit_id == irece.fit_id and stack.fit_of("uce", uce.config) == uce.fit_id
    assert stack2.under[0][1]["lamb"] == 0.1 and stack2.fit_of(*stack2.under[0]) != uce.fit_id
    plain = {k: v for k, v in uce.key.items()}
    assert "under" not in plain and uce.cell_id == content_id(plain)  # ids of plain cells never change
    assert isinstance(uce, Cell) and uce.under == ()


def test_only_selects_cells_with_their_baselines(tmp_path, capsys):
    from erasekit.bench.runner import spec_cells

    spec = BenchSpec.from_mapping({**BASE, "methods": ["uce", "sld"], "concepts": ["skull", "logo"], "seeds": [0, 1],
                                   "lm": {"methods": ["npo"], "tasks": ["tinytofu"]}})
    base, meth = spec_cells(spec)
    assert len(base) == 5 and len(meth) == 10  # 4 diffusion baselines + 1 LM; 8 + 2
    base, meth = spec_cells(spec, ("sld/skull/s1", "uce/logo/*"))
    assert [c.name for c in meth] == ["uce/logo/s0", "sld/skull/s1", "uce/logo/s1"]  # seed-major, the spec's order
    assert sorted(c.name for c in base) == ["baseline/logo/s0", "baseline/logo/s1", "baseline/skull/s1"]
    base, meth = spec_cells(spec, ("npo/*",))
    assert [c.name for c in meth] == ["npo/tinytofu/s0", "npo/tinytofu/s1"] and len(base) == 1
    with pytest.raises(UserError, match="matches no cell"):
        spec_cells(spec, ("esd/*",))
    path = tmp_path / "s.yaml"
    path.write_text("name: t\nmethods: [uce]\nconcepts: [skull]\n")
    assert main(["bench", str(path), "--db", str(tmp_path / "x.db"), "--only", "uce/logo/s0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "uce/skull/s0" in err and not (tmp_path / "x.db").exists()
