"""Oracle gap: how far an erased model's images are from those of a model retrained without the
concept (the oracle: what a perfect erasure would look like; the text-to-image counterpart of
TOFU's retain model, Maini et al. 2024). Frechet distance and KID in the judge's feature space
between the model's images and the oracle's for the same prompts and seeds, on target prompts
(``oracle_fd_target``) and on other prompts (``oracle_fd_other``), next to the oracle's own
seed-to-seed noise floor (its images for the same prompts with other seeds: ``*_floor``). A
perfect erasure sits at the floor. Prompts naming another value the oracle was trained without
(a logo or neon prompt when skull is measured) are left out."""

from __future__ import annotations

import numpy as np
import torch

from erasekit.concepts import OTHER, TARGET_SPLITS
from erasekit.metrics.base import METRICS, Answers, Metric, Value
from erasekit.metrics.quality import frechet_distance, kernel_distance


def _subset(answers: Answers, keep) -> np.ndarray:
    return np.array([j for _, _, p, j in answers.rows() if keep(p)], dtype=int)


@METRICS.register("oracle_gap")
class OracleGap(Metric):
    """Oracle gap: FD and KID (judge features) to the oracle's images, on target and other prompts,
    beside the oracle's seed-to-seed floor (lower is better; a perfect erasure is at the floor)."""

    higher_is_better = False
    needs = ("judge", "oracle")
    order = 55
    report = {"oracle_fd_target": "oracle gap<br>FD target", "oracle_fd_target_floor": "oracle floor<br>FD target",
              "oracle_fd_other": "oracle gap<br>FD other"}

    def compute(self, answers: Answers) -> dict[str, Value]:
        assert answers.oracle_images is not None and answers.oracle_floor_images is not None
        features = answers.judge.image_features
        gen, oracle, floor = (torch.as_tensor(features(x)) for x in
                              (answers.images, answers.oracle_images, answers.oracle_floor_images))
        # the oracle never saw any of its excluded values: prompts naming another one of them are
        # left out (a perfect skull erasure still draws logos and neon, the oracle cannot)
        others = set(getattr(answers.domain, "oracle_excludes", ())) - {answers.concept.name}

        def clean(p) -> bool:
            return not others & set((p.attributes or {}).values())

        out: dict[str, Value] = {}
        for name, keep in (("target", lambda p: p.split in TARGET_SPLITS and clean(p)),
                           ("other", lambda p: p.split == OTHER and clean(p))):
            idx = torch.as_tensor(_subset(answers, keep))
            if len(idx) < 3:
                continue
            meta = {"features": f"judge penultimate ({gen.shape[1]}-d)", "images": int(len(idx))}
            for stat, fn in (("fd", frechet_distance), ("kid", kernel_distance)):
                gap = fn(oracle[idx], gen[idx])
                noise = fn(oracle[idx], floor[idx])
                out[f"oracle_{stat}_{name}"] = Value(gap, None, None, False, len(idx), meta=meta)
                out[f"oracle_{stat}_{name}_floor"] = Value(noise, None, None, False, len(idx), meta=meta)
        return out
