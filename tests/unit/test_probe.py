"""Concept probes (erasekit.probe): the unedited testbed decodes skull, the oracle does not at the mid
block, the hooks remove themselves, the statistics and the verdict rule on known cases."""

import numpy as np
import pytest
import torch

from erasekit.concepts import get_concept
from erasekit.errors import UserError
from erasekit.probe import ProbeConfig, ProbeSet, SiteResult, auc, mid_block_output, probe_prompts, verdict


@pytest.fixture(scope="module")
def skull_probes(shipped_testbed):
    return ProbeSet.fit(shipped_testbed, get_concept("skull"), ProbeConfig(n_prompts=8, seeds=(0,)))


def test_the_unedited_model_decodes_skull(skull_probes, shipped_testbed):
    """The acceptance check: on held-out prompts and seeds of the unedited model, both probes are
    at least 0.95 accurate (chance is 0.5)."""
    result = skull_probes.score(shipped_testbed)
    assert set(result) == {"text", "mid"}
    for site, r in result.items():
        assert r.accuracy >= 0.95 and r.auc >= 0.95, (site, r.accuracy, r.auc)
    assert len(skull_probes.test_prompts) == 2 * int(skull_probes.test_labels.sum())  # balanced


def test_the_oracle_is_not_decodable_at_the_mid_block(skull_probes):
    """The oracle never learned skull: the unedited mid-block probe does not decode it there, while
    the shared frozen text encoder still does."""
    from erasekit.domain import get_domain

    oracle = get_domain("testbed").load_oracle()
    result = skull_probes.score(oracle)
    assert result["mid"].accuracy < 0.8, result["mid"]
    assert result["text"].accuracy >= 0.95


def test_probe_prompts_are_balanced_and_held_out():
    texts, labels = probe_prompts(get_concept("skull"), 8, 0)
    other, _ = probe_prompts(get_concept("skull"), 8, 1)
    assert labels.sum() * 2 == len(labels) and len(texts) == len(labels)
    assert not any("skull" in t.lower() for t, y in zip(texts, labels) if y == 0)
    assert any("skull" in t.lower() for t, y in zip(texts, labels) if y == 1) and texts != other


def test_mid_block_hook_records_and_removes_itself(random_testbed):
    unet = random_testbed.unet
    before = (len(unet._forward_hooks), len(unet.mid_block._forward_hooks))
    states = torch.zeros(1, 4, unet.config.cross_attention_dim)
    x = torch.zeros(1, unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    with mid_block_output(unet) as mids:
        unet(x, 10, encoder_hidden_states=states)
    assert len(mids) == 1 and mids[0].shape[:2] == (1, unet.config.block_out_channels[-1])
    with pytest.raises(RuntimeError), mid_block_output(unet):
        raise RuntimeError("boom")
    assert (len(unet._forward_hooks), len(unet.mid_block._forward_hooks)) == before


def test_auc_on_known_cases():
    y = np.array([1, 1, 0, 0])
    assert auc(np.array([3.0, 2.0, 1.0, 0.0]), y) == 1.0
    assert auc(np.array([0.0, 1.0, 2.0, 3.0]), y) == 0.0
    assert auc(np.array([1.0, 1.0, 1.0, 1.0]), y) == 0.5
    assert auc(np.array([3.0, 0.0, 1.0, 2.0]), y) == 0.5


def test_verdict_rule():
    oracle = SiteResult(0.5, (0.4, 0.6), 0.55, (0.45, 0.65), 10)
    assert verdict(SiteResult(0.58, (0.5, 0.7), 0.6, (0.5, 0.7), 10), oracle) == "deleted"
    assert verdict(SiteResult(0.58, (0.5, 0.7), 0.9, (0.8, 1.0), 10), oracle) == "suppressed"  # ranks still separate
    assert verdict(SiteResult(0.9, (0.8, 1.0), 0.6, (0.5, 0.7), 10), oracle) == "suppressed"
    decodable = SiteResult(1.0, (1.0, 1.0), 1.0, (1.0, 1.0), 10)
    assert verdict(SiteResult(0.5, (0.4, 0.6), 0.5, (0.4, 0.6), 10), decodable) == "uninformative"


@pytest.mark.parametrize("change", [{"n_prompts": 2}, {"seeds": ()}, {"test_seeds": (0,)}, {"timesteps": (1.5,)},
                                    {"test_prompt_seed": 0}])
def test_probe_config_is_validated(change):
    with pytest.raises(UserError):
        ProbeConfig(**change)


def test_concept_probe_metric_through_an_evaluation(shipped_testbed, shipped_judge, tmp_path, monkeypatch):
    """``erasekit eval --metrics concept_probe`` on UCE-erased skull: the baseline run holds the
    probe's own check and the oracle's figures, the erasure run the erased model's with a verdict
    per site; UCE leaves the text encoder alone, so the text probe is unchanged; the pipeline is
    unedited afterwards."""
    from erasekit.erasure import get_method, make_config
    from erasekit.evaluation import EvalConfig, evaluate
    from erasekit.metrics.probe import ConceptProbe
    from erasekit.store import Store

    monkeypatch.setattr(ConceptProbe, "config", ProbeConfig(n_prompts=8, seeds=(0,)))
    skull = get_concept("skull")
    erasure = get_method("uce").fit(shipped_testbed, skull, make_config("uce"), progress=False)
    erasure.save(tmp_path / "uce")
    before = {k: v.clone() for k, v in shipped_testbed.unet.state_dict().items()}
    store = Store(tmp_path / "db.sqlite")
    run = evaluate(store, shipped_testbed, shipped_judge, skull, EvalConfig(n_prompts=1, seeds=(0,)), erasure,
                   tmp_path / "uce", metrics=("concept_probe",), progress=False)
    base = next(r for r in store.runs() if r["kind"] == "baseline")
    base_m = store.metrics(base["run_id"])
    assert base_m["probe_mid"]["value"] >= 0.95 and "verdict" not in base_m["probe_mid"].get("meta", {})
    assert base_m["probe_mid_oracle"]["value"] < base_m["probe_mid"]["value"]
    m = run["metrics"]
    assert m["probe_text"]["value"] == base_m["probe_text"]["value"]
    assert m["probe_mid"]["meta"]["verdict"] in {"deleted", "suppressed"}
    assert m["probe_text"]["meta"]["verdict"] == "uninformative"  # the oracle's encoder is the same frozen one
    assert all(torch.equal(v, before[k]) for k, v in shipped_testbed.unet.state_dict().items())
    from browser import load_page  # the probe's columns in the report's summary table, in headless Chromium
    from erasekit.report import build_report

    build_report(store, tmp_path / "r.html")
    page = load_page((tmp_path / "r.html").as_uri(), tmp_path / "shot.png", script="""
        const t = document.querySelector('table');
        return Array.from(t.rows).map(r => Array.from(r.cells).map(c => c.innerText.replace(/\\s+/g, ' ')));""")
    heads, *rows = page["script"]
    col = heads.index("probe acc. mid block")
    shown = {r[0]: r[col] for r in rows}
    assert any(v.startswith(f"{m['probe_mid']['value']:.3f}") for v in shown.values()), shown
    assert [e for e in page["logs"] if e["level"] == "SEVERE"] == []
