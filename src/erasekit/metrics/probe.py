"""Concept probe: is the erased concept still linearly decodable inside the model (suppressed) or no
more than in a model that never learned it (deleted)? The representation-level test of
"Suppression or Deletion" (Jang et al., WWW 2026) for text-to-image models; protocol, sites and
caveats in :mod:`erasekit.probe`.

A metric, not an attack: it measures the evaluated model (like efficacy, it has one value per
model and no budget), and an evaluation run is where the unedited model, the erasure and the
oracle meet. It is the one metric that looks inside the model (``needs`` "model"), so it is not
computed by default (``erasekit eval --metrics concept_probe``; with the default
:class:`~erasekit.probe.ProbeConfig` it runs the UNet on 336 inputs to fit, 168 per model scored). The probes are fitted on the unedited model and scored on held-out prompts of the
evaluated model (the unedited one itself on a baseline run: the probe's own check) and of the
oracle when the concept has one.
"""

from __future__ import annotations

from erasekit.metrics.base import METRICS, Answers, Metric, Value
from erasekit.probe import SITES, ProbeConfig, ProbeSet, SiteResult, verdict


def _value(r: SiteResult, stat: str, meta: dict) -> Value:
    if stat == "accuracy":
        return Value(r.accuracy, *r.accuracy_ci, False, r.n, r.samples, meta)
    return Value(r.auc, *r.auc_ci, False, r.n, meta=meta)


@METRICS.register("concept_probe")
class ConceptProbe(Metric):
    """Concept probe: still linearly decodable in the text states and UNet mid block (suppressed) or not (deleted)?

    Held-out accuracy and AUC of linear probes fitted on the unedited model, scored on this model
    and the oracle (lower: less decodable); per site, a verdict against the oracle: deleted,
    suppressed or uninformative."""

    higher_is_better = False
    needs = ("domain", "model")
    default = False
    order = 57
    report = {"probe_mid": "probe acc.<br>mid block", "probe_mid_oracle": "probe acc.<br>oracle, mid block",
              "probe_text": "probe acc.<br>text"}
    config = ProbeConfig()

    def compute(self, answers: Answers) -> dict[str, Value]:
        pipe, erasure = answers.pipe, answers.erasure
        probes = ProbeSet.fit(pipe, answers.concept, self.config)  # the pipeline is unedited while metrics run
        if erasure is not None:
            with erasure.applied(pipe):
                model = probes.score(pipe)
        else:
            model = probes.score(pipe)
        oracle = probes.score(answers.oracle_pipe) if answers.oracle_pipe is not None else None
        protocol = {"fit": "unedited model", "positives": "given and known prompts", "chance": 0.5,
                    "timesteps": list(self.config.timesteps), "test_prompts": len(probes.test_prompts)}
        out: dict[str, Value] = {}
        for site in SITES:
            meta = dict(protocol)
            if oracle is not None and erasure is not None:
                meta["verdict"] = verdict(model[site], oracle[site])
            out[f"probe_{site}"] = _value(model[site], "accuracy", meta)
            out[f"probe_{site}_auc"] = _value(model[site], "auc", meta)
            if oracle is not None:
                out[f"probe_{site}_oracle"] = _value(oracle[site], "accuracy", protocol)
                out[f"probe_{site}_oracle_auc"] = _value(oracle[site], "auc", protocol)
        return out
