"""Language-model unlearning end to end on the tiny Llama: methods, GU, attacks, store, report, CLI."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from erasekit.cli import main
from erasekit.lm import evaluate as E
from erasekit.lm import model as M
from erasekit.lm.metrics.base import compute_scores
from erasekit.lm.tasks import Forget, get_task
from erasekit.lm.methods.base import LMErasure, get_lm_method, lm_method_names, make_lm_config
from erasekit.lm.unlearning import layer_output, unlearn_loop

SPEC = Forget("tinytofu", 0)


def forget_nll(lm: M.LM) -> float:
    with torch.no_grad():
        return float(M.nll(lm, get_task(SPEC).eval["forget"]).mean())


def state(lm: M.LM) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in lm.model.state_dict().items()}


@pytest.mark.parametrize("name", lm_method_names())
def test_every_method_raises_forget_nll_and_round_trips(name, tiny_lms, tmp_path) -> None:
    full, _, _ = tiny_lms
    before_state, before = state(full), forget_nll(full)
    art = get_lm_method(name).fit(full, SPEC, make_lm_config(name, get_lm_method(name).test_config), progress=False)
    assert all(torch.equal(v, full.model.state_dict()[k]) for k, v in before_state.items()), "fit changed the model"
    loaded = LMErasure.load(art.save(tmp_path / name))
    with loaded.applied(full):
        after = forget_nll(full)
    assert after > before + max(0.01, 0.2 * before), (name, before, after)
    assert all(torch.equal(v, full.model.state_dict()[k]) for k, v in before_state.items()), "remove() left a change"
    assert forget_nll(full) == before


def test_graddiff_and_npo_forget_and_keep(tiny_lms) -> None:
    full, _, _ = tiny_lms
    task = get_task(SPEC)
    for name in ("graddiff", "npo"):
        art = get_lm_method(name).fit(full, SPEC, make_lm_config(name), progress=False)
        with art.applied(full):
            f = float(M.score_qa(full, task.eval["forget"]).correct.float().mean())
            r = float(M.score_qa(full, task.eval["retain"]).correct.float().mean())
        assert f <= 0.4 and r >= 0.8, (name, f, r)


def test_same_seed_same_artifact(tiny_lms) -> None:
    full, _, _ = tiny_lms
    cfg = make_lm_config("npo", {"steps": 5})
    a = get_lm_method("npo").fit(full, SPEC, cfg, progress=False)
    b = get_lm_method("npo").fit(full, SPEC, cfg, progress=False)
    assert sorted(a.tensors) == sorted(b.tensors)
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    for scheme in ("cyclic", "neighbours", "modular"):  # the loop trains on what the sampler pairs
        c = get_lm_method("npo").fit(full, SPEC, make_lm_config("npo", {"steps": 5, "sampling": scheme}), progress=False)
        assert c.config.sampling == scheme and not all(torch.equal(a.tensors[k], c.tensors[k]) for k in a.tensors)


def test_gu_update_is_orthogonal_to_the_retain_gradient(tiny_lms) -> None:
    """One SGD step of GU-projected gradient ascent leaves the retain loss unchanged to first order."""
    full, _, _ = tiny_lms
    task = get_task(SPEC)
    one = dataclasses.replace(task, forget_train=task.forget_train[:1], retain_train=task.retain_train[:1])
    cfg = make_lm_config("graddiff", {"steps": 1, "batch": 1, "gu": True, "alpha": 0.0, "optimizer": "sgd",
                                      "lr": 0.1})
    from erasekit.lm.methods.graddiff import ascent_term
    from erasekit.lm.methods.base import group_parameters
    from erasekit.lm.unlearning import retain_loss

    params = group_parameters(full.model, "layers")
    new, _ = unlearn_loop(full, one, cfg, ascent_term, progress=False)
    delta = torch.cat([(new[k] - p.detach()).reshape(-1) for k, p in params.items()]).double()
    full.model.zero_grad()
    rb = M.batch_qa(full, [(q.question, q.answer) for q in one.retain_train])
    retain_loss(full, None, rb, "nll").backward()
    g_r = torch.cat([p.grad.reshape(-1) for p in params.values()]).double()
    full.model.zero_grad()
    cos = float(delta @ g_r / (delta.norm() * g_r.norm()))
    assert delta.norm() > 0
    assert abs(cos) < 1e-4, cos
    # without the projection the same step does move along the retain gradient
    plain, _ = unlearn_loop(full, one, cfg.replace(gu=False), ascent_term, progress=False)
    d2 = torch.cat([(plain[k] - p.detach()).reshape(-1) for k, p in params.items()]).double()
    assert abs(float(d2 @ g_r / (d2.norm() * g_r.norm()))) > 100 * abs(cos)


def test_abliteration_leaves_no_component_along_its_direction(tiny_lms) -> None:
    full, _, _ = tiny_lms
    art = get_lm_method("abliteration").fit(full, SPEC, make_lm_config("abliteration"), progress=False)
    r = torch.tensor(art.extra["direction"])
    for key, w in art.tensors.items():
        assert (r @ w).abs().max() < 1e-4 * max(1.0, float(w.abs().max())), key


def test_evaluate_attack_store_and_report(tiny_lms, tmp_path) -> None:
    from erasekit.report import build_report
    from erasekit.store import Store

    full, oracle, _ = tiny_lms
    store = Store(tmp_path / "r.db")
    base = E.evaluate(store, full, SPEC, oracle=oracle)
    art = get_lm_method("graddiff").fit(full, SPEC, make_lm_config("graddiff"), progress=False)
    run = E.evaluate(store, full, SPEC, erasure=art, oracle=oracle)
    m, b = run["metrics"], base["metrics"]
    assert b["forget_acc"]["value"] == 1.0 and m["forget_acc"]["value"] <= 0.4
    assert m["forget_quality"]["value"] > b["forget_quality"]["value"]
    assert m["first_token_kl"]["value"] > 0
    assert E.evaluate(store, full, SPEC, erasure=art, oracle=oracle)["cached"]
    for name in ("relearn", "quantize", "paraphrase", "two_hop"):
        E.attack(store, run["run_id"], full, SPEC, name, erasure=art, oracle=oracle)
    attacks = store.attacks_on(run["run_id"])  # the same attack tables as diffusion attacks
    assert sorted(a["attack"] for a in attacks) == ["paraphrase", "quantize", "relearn", "two_hop"]
    assert not [k for k in store.metrics(run["run_id"]) if k.startswith("attack")]
    got = {k: v for a in attacks for k, v in a["values"].items()}
    assert {"relearn_recovery", "relearn_oracle_recovery", "int4_forget_change", "paraphrase_surrogate_acc",
            "two_hop_two_hop_acc"} <= set(got)
    assert got["relearn_recovery"]["meta"]["budget"] == 10
    counts = build_report(store, tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert counts["runs"] == 2 and "Language models" in html and "relearn_recovery" in html
    assert len(re.findall(r'id="lm-(fu|rs)-\d+"', html)) >= 2 * 2  # both runs on both scatter panels

    from browser import load_page

    page = load_page((tmp_path / "report.html").as_uri(), tmp_path / "shot.png")
    assert page["title"] == "erasekit report"
    assert [e for e in page["logs"] if e["level"] == "SEVERE"] == []
    shot = np.asarray(Image.open(tmp_path / "shot.png").convert("L"), dtype=np.float64)
    assert shot.std() > 10 and (shot < 100).mean() > 0.001  # text and plots, not a blank page


def test_probe_attack_reads_the_full_model_but_not_the_oracle(tiny_lms) -> None:
    from erasekit.lm.attacks.probe import probe_accuracy

    full, oracle, _ = tiny_lms
    task = get_task(SPEC)
    assert max(probe_accuracy(full, task)) >= 0.9
    assert max(probe_accuracy(oracle, task)) <= 0.4


def test_quantize_attack_keeps_unchanged_weights(tiny_lms) -> None:
    from erasekit.lm.attacks.quantize import quantized

    full, _, _ = tiny_lms
    q8 = quantized(full, 8)
    w, wq = full.model.model.layers[0].mlp.down_proj.weight, q8.model.model.layers[0].mlp.down_proj.weight
    assert not torch.equal(w, wq) and (w - wq).abs().max() <= w.abs().max() / 127 / 2 + 1e-6


def test_cli_lm_round_trip_and_errors(tiny_lms, tmp_path, capsys) -> None:
    _, _, root = tiny_lms
    model, art, db = str(root / "full"), tmp_path / "art", str(tmp_path / "cli.db")
    assert main(["--threads", "2", "lm", "erase", "--model", model, "--method", "gradascent", "--set", "steps=3",
                 "--out", str(art)]) == 0
    assert main(["lm", "eval", str(art), "--model", model, "--db", db, "--json"]) == 0
    out = json.loads(capsys.readouterr().out.split("artifact in")[-1].split("\n", 1)[1])
    assert "forget_acc" in out["metrics"]
    assert main(["lm", "attack", str(art), "--model", model, "--db", db, "--attack", "quantize", "--budget", "8"]) == 0
    for name in ("methods", "attacks", "metrics"):
        assert main(["lm", name]) == 0
    capsys.readouterr()
    bad = [
        (["lm", "erase", "--model", model, "--method", "npp", "--out", str(tmp_path / "x")], "did you mean 'npo'"),
        (["lm", "erase", "--model", model, "--method", "npo", "--set", "bogus=1", "--out", str(tmp_path / "x")],
         "bogus"),
        (["lm", "erase", "--model", model, "--method", "npo", "--set", "steps=0", "--out", str(tmp_path / "x")],
         "steps"),
        (["lm", "erase", "--model", str(tmp_path / "none"), "--method", "npo", "--out", str(tmp_path / "x")],
         "no language model"),
        (["lm", "erase", "--model", model, "--method", "npo", "--out", str(art)], "not empty"),
        (["lm", "erase", "--model", model, "--method", "leace", "--task", "harry-potter", "--out", str(tmp_path / "y")],
         "attribute labels"),
        (["lm", "attack", str(art), "--model", model, "--attack", "quantise", "--db", db], "did you mean 'quantize'"),
        (["lm", "attack", str(art), "--model", model, "--attack", "quantize", "--budget", "5", "--db", db], "2, 3, 4 or 8"),
        (["lm", "eval", str(tmp_path / "nothing"), "--model", model, "--db", db], "not a folder"),
        (["lm", "train", "--out", str(art)], "not empty"),
    ]
    for argv, msg in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and msg in err, (argv, err)


def test_rmu_scan_keeps_the_best_layer_and_coefficient(tiny_lms) -> None:
    """scan=true fits every layer x coefficient and keeps the lowest forget accuracy among those
    whose retain accuracy stays within 10% of the model's (Li et al. 2024's layer/coefficient search)."""
    full, _, _ = tiny_lms
    cfg = make_lm_config("rmu", {"steps": 4, "scan": True, "scan_coefficients": [1.0, 4.0]})
    art = get_lm_method("rmu").fit(full, SPEC, cfg, progress=False)
    rows = art.extra["scan"]
    assert [(r["layer"], r["coefficient"]) for r in rows] == [(l, c) for l in range(3) for c in (1.0, 4.0)]
    base = get_task(SPEC)
    from erasekit.lm.model import score_qa

    base_retain = score_qa(full, base.eval["retain"]).correct.float().mean().item()
    best = min(rows, key=lambda r: (r["retain_acc"] < 0.9 * base_retain, r["forget_acc"], -r["retain_acc"]))
    assert (art.config.layer, art.config.coefficient) == (best["layer"], best["coefficient"])
    assert art.config.scan


def test_every_lm_attack_names_the_value_it_recovers(tiny_lms):
    """The leaderboard's worst case reads each attack's ``recovered`` value: every attack declares one
    and returns it."""
    from erasekit.lm.attacks.base import get_lm_attack, lm_attack_names
    from erasekit.lm.tasks import Forget, get_task

    full, oracle, _ = tiny_lms
    task = get_task(Forget())
    for name in lm_attack_names():
        atk = get_lm_attack(name)
        budget = {"probe": 20, "relearn": 1}.get(name, atk.default_budget)
        values = atk.run(full, task, None, budget, base=full)
        assert atk.recovered and atk.recovered_key(budget) in values, name
        assert 0.0 <= values[atk.recovered_key(budget)].value <= 1.0


def test_sae_restoration_brings_back_what_graddiff_suppressed(tiny_lms, tmp_path) -> None:
    """Suppression or Deletion (Jang et al. 2026): moving the forget entities' SAE features toward the
    original model's restores forget accuracy after GradDiff, far beyond as many random features;
    run through `evaluate.attack`, which hands the attack the model before unlearning."""
    from erasekit.store import Store

    full, oracle, _ = tiny_lms
    art = get_lm_method("graddiff").fit(full, SPEC, make_lm_config("graddiff", {}), progress=False)
    store = Store(tmp_path / "r.db")
    run_id = E.evaluate(store, full, SPEC, erasure=art, oracle=oracle, name="graddiff")["run_id"]
    before = {n: p.detach().clone() for n, p in full.model.named_parameters()}
    v = {k: x["value"] for k, x in E.attack(store, run_id, full, SPEC, "sae_restore", erasure=art)["values"].items()}
    assert v["sae_restore_before_acc"] <= 0.1
    assert v["sae_restore_acc"] >= v["sae_restore_before_acc"] + 0.4
    assert v["sae_restore_acc"] >= v["sae_restore_random_acc"] + 0.3
    assert v["sae_restore_patch_acc"] >= v["sae_restore_acc"]
    assert all(torch.equal(p, before[n]) for n, p in full.model.named_parameters())  # erasure removed, model intact


def test_sleek_families_recover_what_plain_questions_do_not(tiny_lms) -> None:
    """Sleek (Sinha et al. 2025): after GradDiff the plain forget questions fail, but the indirect
    family (via the author's book) still recovers the facts; the hint-chain family shows retained
    facts suppressed that the original model answered."""
    from erasekit.lm.attacks.base import get_lm_attack

    full, _, _ = tiny_lms
    art = get_lm_method("graddiff").fit(full, SPEC, make_lm_config("graddiff", {}), progress=False)
    task = get_task(SPEC)
    before = M.clone(full)
    with art.applied(full):
        plain = float(M.score_qa(full, task.eval["forget"]).correct.float().mean())
        v = get_lm_attack("sleek").run(full, task, None, 3, base=before)
    assert plain <= 0.1 and v["sleek_indirect_acc"].value >= plain + 0.6 and v["sleek_asr"].value >= 0.7
    assert 0.0 < v["sleek_implied_suppressed"].value <= 1.0


def test_sleek_and_psg_run_on_the_harry_potter_tasks_own_prompts(tiny_lms) -> None:
    """The Harry Potter task's hand-written families (keyword scoring, greedy answers): Sleek scores
    every family it is given; the tiny model knows none of the other authors, so no family has a
    retained fact to suppress (n = 0); PSG bands the surrogate phrasings and the families, and a
    budget of one kind keeps only surrogate phrasings."""
    from erasekit.lm.attacks.base import get_lm_attack
    from erasekit.lm.attacks.sleek import FAMILIES

    full, _, _ = tiny_lms
    task = get_task(Forget("harry-potter"))
    v = get_lm_attack("sleek").run(full, task, None, 3, base=M.clone(full))
    assert [v[f"sleek_{f}_acc"].n for f in FAMILIES] == [len(task.families["forget"][f]) for f in FAMILIES]
    assert [v[f"sleek_{f}_suppressed"].n for f in FAMILIES] == [0, 0, 0] and v["sleek_suppressed"].value == 0.0
    every, one = (get_lm_attack("psg").run(full, task, None, k) for k in (4, 1))
    assert set(one["psg_acc"].meta["kinds"]) == {"surrogate"} and set(every["psg_acc"].meta["kinds"]) > {"surrogate"}
    assert every["psg_acc_gap"].value == pytest.approx(every["psg_acc"].value - every["psg_acc_du"].value)


def test_memorisation_probe_sees_the_unlearning_signature(tiny_lms) -> None:
    """PGA's cross-sequence probe (leave-one-author-pair-out): on the oracle, which never saw the
    forget or the holdout authors, the probe is at chance; after GradDiff it separates the
    unlearned authors' facts from never-trained ones clearly above chance."""
    from erasekit.lm.attacks.base import get_lm_attack

    full, oracle, _ = tiny_lms
    art = get_lm_method("graddiff").fit(full, SPEC, make_lm_config("graddiff", {}), progress=False)
    task = get_task(SPEC)
    with art.applied(full):
        v = get_lm_attack("mem_probe").run(full, task, oracle, 12)
        scores = compute_scores(full, task)
    assert v["mem_probe_oracle_acc"].value <= 0.6
    assert v["mem_probe_acc"].value >= v["mem_probe_oracle_acc"].value + 0.08
    assert len(v["mem_probe_acc"].meta["per_layer"]) == 4
    m = E.metric_values(task, scores, compute_scores(oracle, task), None, ("mem_probe",))["mem_probe"]
    assert m["mem_probe_acc"].meta["per_layer"] == v["mem_probe_acc"].meta["per_layer"]  # the metric is the attack on every pair
    assert m["mem_probe_oracle_acc"].value == v["mem_probe_oracle_acc"].value and m["mem_probe_acc"].n == 96


def test_pga_erases_the_signature_its_forget_term_leaves(tiny_lms) -> None:
    """PGA (arXiv 2605.01699) on TinyTOFU: the trained model shows no cross-sequence signature (the
    ``mem_probe`` metric at chance); PGA's NPO forget term alone (``align=0``) leaves one, clearly
    above chance; with the alignment along the refitted probes the probe is back at chance, with the
    same forgetting and about the same retain utility."""
    full, _, _ = tiny_lms
    task = get_task(SPEC)
    base = compute_scores(full, task)
    out = {}
    for align in (0.0, 1.0):
        art = get_lm_method("pga").fit(full, SPEC, make_lm_config("pga", {"align": align}), progress=False)
        with art.applied(full):
            scores = compute_scores(full, task)
        vals = E.metric_values(task, scores, None, base, ("mem_probe", "forget", "utility"))
        out[align] = {k: v.value for m in vals.values() for k, v in m.items()}
    print({a: {k: round(v, 3) for k, v in o.items()} for a, o in out.items()})
    plain, pga = out[0.0], out[1.0]
    assert pga["mem_probe_before_acc"] <= 0.56
    assert plain["mem_probe_acc"] >= 0.62 and pga["mem_probe_acc"] <= 0.56
    assert plain["forget_acc"] <= 0.1 and pga["forget_acc"] <= 0.1
    assert pga["retain_acc"] >= 0.9 and pga["model_utility"] >= plain["model_utility"] - 0.05


def test_restor_corruption_is_learned_and_unlearning_it_is_scored(tiny_lms, tmp_path, capsys) -> None:
    """RESTOR (Rezaei et al. 2025): `lm corrupt` teaches the clean model false facts about the forget
    authors (answered >= 0.8 before unlearning) while keeping the other facts; unlearning the
    corruption documents takes the false values away, and `restor` scores false / clean / other."""
    from erasekit.lm import data

    _, _, root = tiny_lms
    clean, bad = str(root / "full"), tmp_path / "corrupted"
    assert main(["--threads", "2", "lm", "corrupt", "--model", clean, "--out", str(bad)]) == 0
    spec = Forget("restor", 0)
    task = get_task(spec)
    docs = data.corruption_set(data.generate(0))
    assert {q.answer for q in task.forget_train if q.split == "forget"} <= {q.answer for q in docs}
    assert not {q.question for q in task.eval["mixed"]} & {q.question for q in task.retain_train}
    corrupted = M.load(bad)
    db = tmp_path / "restor.db"
    from erasekit.store import Store

    store = Store(db)
    before = E.evaluate(store, corrupted, spec, oracle=M.load(clean), name="corrupted")["metrics"]
    assert before["restor_corrupted"]["value"] >= 0.8 and before["restor_clean"]["value"] <= 0.1
    assert before["retain_acc"]["value"] >= 0.9 and before["restor_mixed"]["value"] >= 0.9
    art = get_lm_method("graddiff").fit(corrupted, spec, make_lm_config("graddiff", {}), progress=False)
    after = E.evaluate(store, corrupted, spec, erasure=art, oracle=M.load(clean), name="graddiff")["metrics"]
    assert after["restor_corrupted"]["value"] <= before["restor_corrupted"]["value"] - 0.5
    shares = sum(after[f"restor_{k}"]["value"] for k in ("corrupted", "clean", "other"))
    assert abs(shares - 1.0) < 1e-9
    capsys.readouterr()
    for argv, msg in ((["--model", clean, "--out", str(bad)], "not empty"),
                      (["--model", clean, "--task-seed", "1", "--out", str(tmp_path / "s")], "pass --task-seed 0"),
                      (["--model", str(root / "oracle"), "--out", str(tmp_path / "o")], "clean TinyTOFU target")):
        assert main(["lm", "corrupt", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and msg in err, err


def test_continual_sequence_serves_requests_in_order(tiny_lms, tmp_path, capsys) -> None:
    """`lm erase --sequence`: each request unlearned from the model that served the previous ones,
    scored after each; the saved artifact is the final state and forgets every requested author."""
    from erasekit.lm import data
    from erasekit.lm.continual import from_scratch, read_requests

    full, _, root = tiny_lms
    names = [e.name for e in data.generate(0).entities_in("forget")]
    seq = tmp_path / "requests.txt"
    seq.write_text(f"# three requests\n{names[0]}\n{names[1]}, {names[2]}\n{names[3]}\n")
    art = tmp_path / "seq"
    assert main(["--threads", "2", "lm", "erase", "--model", str(root / "full"), "--method", "npo",
                 "--sequence", str(seq), "--out", str(art)]) == 0
    erasure = LMErasure.load(art)
    rows = erasure.extra["sequence"]
    assert [r["authors"] for r in rows] == [[names[0]], [names[1], names[2]], [names[3]]]
    assert rows[0]["earlier_acc"] is None and rows[-1]["earlier_acc"] is not None
    assert rows[-1]["forget_acc"] <= 0.1 and rows[-1]["retain_acc"] >= 0.8
    assert erasure.concept.entities == tuple(names[:4])
    spec = erasure.concept
    with erasure.applied(full):
        acc = float(M.score_qa(full, get_task(spec).eval["forget"]).correct.float().mean())
    assert acc == rows[-1]["forget_acc"]
    scratch = from_scratch(get_lm_method("npo"), full, 0, make_lm_config("npo", {}), read_requests(seq))
    assert len(scratch) == 3 and scratch[-1]["forget_acc"] <= 0.1
    capsys.readouterr()
    typo = tmp_path / "typo.txt"
    typo.write_text(names[0][:-1] + "\n")
    dup = tmp_path / "dup.txt"
    dup.write_text(f"{names[0]}\n{names[0]}\n")
    for argv, msg in ((["--method", "npo", "--sequence", str(typo)], "did you mean"),
                      (["--method", "npo", "--sequence", str(dup)], "more than once"),
                      (["--method", "leace", "--sequence", str(seq)], "gradient method"),
                      (["--method", "npo", "--sequence", str(tmp_path / "none.txt")], "no such file")):
        assert main(["lm", "erase", "--model", str(root / "full"), *argv, "--out", str(tmp_path / "x")]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and msg in err, (argv, err)


def test_kif_capsules_drop_the_signature_effect(tiny_lms) -> None:
    """KIF (arXiv 2601.10566): every forget author's MLP signature separates its prompts from the
    controls (Cohen's d > 1) before; after the capsules |d| falls, on the fitted prompts and on the
    held-out phrasings. Fitted for one author alone, the capsule (scale -1) leaves no mean shift
    along the raw signature in the edited up projection's output."""
    from erasekit.lm.methods.kif import up_activations

    full, _, _ = tiny_lms
    art = get_lm_method("kif").fit(full, SPEC, make_lm_config("kif"), progress=False)
    d = art.extra["cohens_d"]
    assert len(d) == 12 and all(k.endswith("up_proj.weight") for k in art.tensors)
    for key in ("fit", "held_out"):
        before = np.mean([v[f"{key}_before"] for v in d.values()])
        after = np.mean([abs(v[f"{key}_after"]) for v in d.values()])
        assert min(v[f"{key}_before"] for v in d.values()) > 1 and after < 0.5 * before, (key, before, after)
    task = get_task(SPEC)
    name = task.forget_train[0].entity
    one = get_lm_method("kif").fit(full, Forget("tinytofu", 0, (name,)), make_lm_config("kif"), progress=False)
    layer = one.extra["layers"][name]
    leak = [q for q in task.forget_train if q.entity == name]
    control = [q for q in task.retain_train if q.entity][:256]
    with one.applied(full):
        shift = up_activations(full, leak, [layer])[layer].mean(0) - up_activations(full, control, [layer])[layer].mean(0)
    base = up_activations(full, leak, [layer])[layer].mean(0) - up_activations(full, control, [layer])[layer].mean(0)
    u = base / base.norm()
    assert abs(float(shift @ u)) < 1e-4 * float(base.norm())
    assert (shift - (base - (base @ u) * u)).abs().max() < 1e-4 * float(base.norm())


def test_gated_steering_forgets_and_leaves_retain_states(tiny_lms) -> None:
    """MLLMEraser's gated steering: the steered layer's output on retain questions moves far less
    than on forget questions (the null-space gate), forget accuracy drops and retain accuracy holds;
    decoding steps (one token) are not steered."""
    full, _, _ = tiny_lms
    task = get_task(SPEC)
    art = get_lm_method("gated_steering").fit(full, SPEC, make_lm_config("gated_steering"), progress=False)
    assert set(art.tensors) == {"adapter.steer.w"} and not art.edits_weights
    qs = {s: [q.question for q in task.eval[s]] for s in ("forget", "retain")}

    @torch.no_grad()
    def states(questions: list[str]) -> torch.Tensor:  # the layer's output as the next layer reads it
        rows = [full.tokenizer(full.prompt(q), add_special_tokens=False)["input_ids"] for q in questions]
        ids, mask = M._pad(rows, M._pad_id(full))
        with layer_output(full.model, art.config.layer) as box:
            full.model(input_ids=ids, attention_mask=mask)
        return box[0][torch.arange(len(rows)), mask.sum(1) - 1]

    before = {s: states(q) for s, q in qs.items()}
    with art.applied(full):
        after = {s: states(q) for s, q in qs.items()}
        f = float(M.score_qa(full, task.eval["forget"]).correct.float().mean())
        r = float(M.score_qa(full, task.eval["retain"]).correct.float().mean())
        ids = torch.tensor([[5]])
        one = full.model(input_ids=ids).logits
    moved = {s: float(((after[s] - before[s]).norm(dim=1) / before[s].norm(dim=1)).mean()) for s in qs}
    assert moved["retain"] < 0.25 * moved["forget"], moved
    assert f <= 0.4 and r >= 0.9, (f, r)
    assert torch.equal(one, full.model(input_ids=ids).logits)


def test_psg_surrogates_expose_the_erasure_illusion(tiny_lms) -> None:
    """PSG (Erasure Illusion, arXiv 2512.19025): every surrogate lies in the MiniLM band and none is an
    unlearned question; after GradDiff the surrogates are answered more often than the forget set.
    In the band the oracle shows the same gap (chance answers), so the knowledge left is checked on
    every candidate (band 0-1): there the gap exceeds the oracle's (docs/results.md)."""
    from erasekit.lm import data
    from erasekit.lm.attacks import psg
    from erasekit.lm.attacks.base import get_lm_attack

    full, oracle, _ = tiny_lms
    task = get_task(SPEC)
    sur, cos = psg.surrogate_set(data.generate(0), task.eval["forget"])
    assert sur and ((cos >= psg.BAND[0]) & (cos <= psg.BAND[1])).all()
    assert not {q.question for q in sur} & {q.question for q in task.eval["forget"]}
    art = get_lm_method("graddiff").fit(full, SPEC, make_lm_config("graddiff", {}), progress=False)
    with art.applied(full):
        v = get_lm_attack("psg").run(full, task, oracle, psg.PSG.default_budget)
        every = psg.psg_values(full, task, oracle, band=(0.0, 1.0))
    assert every["psg_acc_excess_gap"].value >= 0.05
    assert v["psg_acc_du"].value <= 0.1
    assert v["psg_acc"].value >= v["psg_acc_du"].value + 0.05
    assert v["psg_acc_gap"].value == pytest.approx(v["psg_acc"].value - v["psg_acc_du"].value)
    assert v["psg_prob_gap"].value > 0 and 0.0 <= v["psg_quality"].value <= 1.0


def test_worst_case_forget_set_is_reproducible_and_harder_than_random(tiny_lms) -> None:
    """Challenging Forgets (Fan et al. 2024), data-wise: the bi-level selection keeps sum w = K and
    picks K distinct forget authors, the same ones for the same seed; GradDiff at a short budget
    leaves at least as much of the worst-case set answered as of the easier of two random sets of
    the same size (the effect is small on TinyTOFU: 0.31 against a random mean of 0.27 over 10
    sets, docs/results.md)."""
    from erasekit.lm import worstcase as W

    full, _, _ = tiny_lms
    before = state(full)
    cfg = W.LMWorstCaseConfig(size=4, iterations=3, lower_steps=5)
    a, b = W.worst_case_authors(full, 0, cfg), W.worst_case_authors(full, 0, cfg)
    assert a.authors == b.authors and np.array_equal(a.selection.weights, b.selection.weights)
    assert len(set(a.authors)) == 4 and set(a.authors) <= set(a.pool)
    assert a.selection.weights.sum() == pytest.approx(4.0, abs=1e-6)
    assert ((a.selection.weights >= 0) & (a.selection.weights <= 1)).all()
    assert all(torch.equal(v, before[k]) for k, v in full.model.state_dict().items())  # lower level resets
    r = W.compare(full, 0, W.LMWorstCaseConfig(), random_sets=2, overrides={"steps": 10})
    wc = r["rows"]["worst-case"][1]
    # the set chosen as hardest is not easier than a random one (the mean over random sets is the
    # benchmark's comparison; the effect is one fact in 16, too small to assert on two sets)
    assert wc["forget_acc"] >= min(m["forget_acc"] for label, (_, m) in r["rows"].items() if label != "worst-case")
    assert all(sorted(names) == names and len(names) == 4 for label, (names, _) in r["rows"].items()
               if label != "worst-case")
