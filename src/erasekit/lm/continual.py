"""Continual unlearning: a stream of forget requests served one after another on the same model
(the protocol of FIT, Xu et al., arXiv 2601.21682, scaled to TinyTOFU).

Each request names some of TinyTOFU's forget authors. Request ``i`` is unlearned from the model
that already served requests ``1..i-1``; after it, the model is scored on every author forgotten
so far (does an earlier request come back?), on the retain authors and on the general facts (does
utility erode as requests pile up?). :func:`from_scratch` is the reference FIT compares with:
for each ``i``, the union of requests ``1..i`` unlearned at once from the original model. Any
method that edits weights (the gradient methods) can run as a sequence.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from erasekit.config import Config
from erasekit.errors import UserError
from erasekit.lm import data, model as M
from erasekit.lm.methods.base import LMErasure, LMMethod
from erasekit.lm.model import LM, fingerprint
from erasekit.lm.tasks import Forget


def read_requests(path: str | Path, seed: int = 0) -> list[tuple[str, ...]]:
    """A request file: one request per line, its authors separated by commas (``#`` starts a
    comment), or a JSON list of lists of author names. Authors must be forget authors of TinyTOFU
    ``seed`` and each may be requested once."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--sequence {path}: no such file; write one request per line, authors separated by commas")
    text = path.read_text()
    if text.lstrip().startswith("["):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"--sequence {path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(raw, list) or not all(isinstance(r, list) for r in raw):
            raise UserError(f"--sequence {path}: the JSON must be a list of lists of author names")
        requests = [tuple(str(a).strip() for a in r) for r in raw]
    else:
        lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
        requests = [tuple(a.strip() for a in ln.split(",") if a.strip()) for ln in lines if ln]
    return check_requests(requests, seed, str(path))


def check_requests(requests: Sequence[tuple[str, ...]], seed: int, where: str = "sequence") -> list[tuple[str, ...]]:
    if not requests or any(not r for r in requests):
        raise UserError(f"{where}: every request needs at least one author, and there must be a request")
    seen: list[str] = [a for r in requests for a in r]
    dup = sorted({a for a in seen if seen.count(a) > 1})
    if dup:
        raise UserError(f"{where}: {dup[0]!r} is requested more than once; each author is forgotten once")
    for r in requests:
        Forget("tinytofu", seed, r)  # names the first author that is not a forget author
    return [tuple(r) for r in requests]


def default_requests(seed: int = 0, n: int = 12) -> list[tuple[str, ...]]:
    """The forget split's authors in order, one per request, up to ``n`` requests (at most 12)."""
    names = [e.name for e in data.generate(seed).entities_in("forget")]
    if not 1 <= n <= len(names):
        raise UserError(f"requests: between 1 and {len(names)}, got {n}")
    return [(a,) for a in names[:n]]


@torch.no_grad()
def scores(lm: LM, seed: int, forgotten: Sequence[str], latest: Sequence[str]) -> dict[str, float]:
    """Accuracy on every author forgotten so far, on the latest request's, on the earlier ones',
    on the retain authors and on the general facts (teacher-forced exact match, phrasing ``t0``)."""
    b = data.generate(seed)
    forget = b.questions("forget", ("t0",))

    def acc(items: list) -> float | None:
        return float(M.score_qa(lm, items).correct.float().mean()) if items else None

    earlier = set(forgotten) - set(latest)
    return {
        "forget_acc": acc([q for q in forget if q.entity in set(forgotten)]),
        "latest_acc": acc([q for q in forget if q.entity in set(latest)]),
        "earlier_acc": acc([q for q in forget if q.entity in earlier]),
        "retain_acc": acc(b.questions("retain", ("t0",))),
        "general_acc": acc(list(b.general)),
    }


def _check_weights(art: LMErasure, method: LMMethod) -> None:
    if not art.edits_weights:
        raise UserError(f"method {method.name!r} installs a hook instead of editing weights; continual "
                        "unlearning needs a gradient method (gradascent, graddiff, npo, simnpo, rmu)")


def run_sequence(method: LMMethod, lm: LM, seed: int, config: Config, requests: Sequence[tuple[str, ...]],
                 progress: bool = True) -> tuple[LMErasure, list[dict[str, Any]]]:
    """Serve ``requests`` in order on a copy of ``lm`` with one instance of ``method`` (a method that
    remembers, such as FIT, sees the earlier requests); returns the artifact of the final state (every
    tensor any request touched, against ``lm``) and one row of :func:`scores` per request."""
    requests = check_requests(requests, seed)
    work = M.clone(lm)
    base = fingerprint(lm.model)
    touched: set[str] = set()
    rows: list[dict[str, Any]] = []
    forgotten: list[str] = []
    for i, req in enumerate(requests, 1):
        start = time.perf_counter()
        art = method.fit(work, Forget("tinytofu", seed, req), config, progress=False)
        seconds = round(time.perf_counter() - start, 2)
        _check_weights(art, method)
        art.apply(work)  # kept: the next request starts from here
        touched |= set(art.tensors)
        forgotten += list(req)
        rows.append({"request": i, "authors": list(req), "fit_seconds": seconds,
                     **scores(work, seed, forgotten, req)})
        if progress:
            r = rows[-1]
            print(f"request {i}/{len(requests)} ({', '.join(req)}): forgotten so far {r['forget_acc']:.2f}, "
                  f"retain {r['retain_acc']:.2f}", flush=True)
    tensors = {k: work.model.get_parameter(k).detach().clone() for k in sorted(touched)}
    final = LMErasure(method.name, config, Forget("tinytofu", seed, tuple(forgotten)), base, tensors,
                      {"sequence": rows})
    return final, rows


def from_scratch(method: LMMethod, lm: LM, seed: int, config: Config,
                 requests: Sequence[tuple[str, ...]]) -> list[dict[str, Any]]:
    """For each ``i``: requests ``1..i`` unlearned together from ``lm`` itself, by a fresh instance of
    the method (no memory of earlier fits), scored like :func:`run_sequence`."""
    requests = check_requests(requests, seed)
    rows = []
    forgotten: list[str] = []
    for i, req in enumerate(requests, 1):
        forgotten += list(req)
        art = type(method)().fit(lm, Forget("tinytofu", seed, tuple(forgotten)), config, progress=False)
        _check_weights(art, method)
        with art.applied(lm):
            rows.append({"request": i, "authors": list(req), **scores(lm, seed, forgotten, req)})
    return rows


class SequenceFitter:
    """``method`` served request by request, as a fitter (``fit(lm, forget, config)``) for
    :func:`erasekit.artifact.fit_recorded`; ``forget`` must name every requested author."""

    def __init__(self, method: LMMethod, requests: Sequence[tuple[str, ...]]) -> None:
        self.method, self.requests, self.name = method, list(requests), method.name

    def fit(self, lm: LM, forget: Forget, config: Config, progress: bool = True) -> LMErasure:
        return run_sequence(self.method, lm, forget.seed, config, self.requests, progress)[0]
