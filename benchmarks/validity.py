"""Validity study: do the testbed's rankings of erasure methods agree with the published Stable
Diffusion rankings?

    python benchmarks/validity.py --db runs/bench-w2/erasekit.db [--bench testbed] [--markdown | --json]

Reads the leaderboard of a benchmark run (``erasekit bench benchmarks/specs/testbed.yaml``) and,
for every published ordering that covers at least two of the testbed's methods, reports
Spearman's rho between the published values and the testbed's, per concept and for the mean over
concepts, with the pairs of methods that the two order differently.

Published numbers (``../shared/research/benchmarks-attacks.md`` section 4, all SD v1.4):
UnlearnDiffAtk leaderboard (HF space ``Intel/UnlearnDiffAtk-Benchmark``): pre-attack and
post-attack ASR (%) of the UnlearnDiffAtk prompt attack, on nudity (142 prompts) and Van Gogh
(50); SLD's nudity row is from the older leaderboard version (``xinchen9/UnlearnDiffAtk-Benchmark``).
UnlearnCanvas Table 3: UA, IRA, CRA (%), averaged over 50 styles and 20 objects. The testbed side
of each: the ``discrete`` attack (UnlearnDiffAtk-style token optimisation) and its pre-attack
ASR; efficacy on the given phrasings, IRA and CRA. I2P exposed-part totals (section 4.3, MACE's
protocol): the concept rate on the known phrasings (implicit prompts, words the eraser was not
given).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

#: Testbed leaderboard label -> the method's name in the published tables (the leaderboard's "AC"
#: is Concept Ablation, CA here; I2P's ESD-x and SLD-Medium rows are ESD's and SLD's).
LABELS = {"esd-x": "ESD", "uce": "UCE", "rece": "RECE", "sld": "SLD", "mace": "MACE", "spm": "SPM", "ca": "CA",
          "salun": "SalUn", "fmn": "FMN", "advunlearn": "AdvUnlearn"}

#: (source, what, testbed quantity, published values; lower is better for ASR, higher for the rest)
PUBLISHED: list[dict[str, Any]] = [
    {"source": "UnlearnDiffAtk", "concept": "nudity", "what": "ASR after the attack", "testbed": "discrete.asr",
     "values": {"ESD": 76.05, "UCE": 79.58, "RECE": 75.42, "SLD": 82.39, "FMN": 97.89, "SPM": 91.55, "SalUn": 11.27,
                "MACE": 74.57, "AdvUnlearn": 21.13}},
    {"source": "UnlearnDiffAtk", "concept": "nudity", "what": "ASR before the attack", "testbed": "discrete.pre_asr",
     "values": {"ESD": 20.42, "UCE": 21.83, "RECE": 13.38, "SLD": 33.10, "FMN": 88.03, "SPM": 54.93, "SalUn": 1.41,
                "MACE": 9.10, "AdvUnlearn": 7.75}},
    {"source": "UnlearnDiffAtk", "concept": "Van Gogh", "what": "ASR after the attack", "testbed": "discrete.asr",
     "values": {"ESD": 32.0, "UCE": 94.0, "RECE": 70.73, "FMN": 56.0, "CA": 77.0, "SPM": 88.0, "MACE": 58.53,
                "AdvUnlearn": 2.0}},
    {"source": "UnlearnDiffAtk", "concept": "Van Gogh", "what": "ASR before the attack",
     "testbed": "discrete.pre_asr", "values": {"ESD": 2.0, "UCE": 62.0, "RECE": 14.0, "FMN": 10.0, "CA": 12.0,
                                               "SPM": 42.0, "MACE": 6.0, "AdvUnlearn": 0.0}},
    {"source": "UnlearnCanvas", "concept": "styles", "what": "UA", "testbed": "efficacy",
     "values": {"ESD": 98.58, "UCE": 98.40, "FMN": 88.48, "CA": 60.82, "SalUn": 86.26}},
    {"source": "UnlearnCanvas", "concept": "styles", "what": "IRA", "testbed": "ira",
     "values": {"ESD": 80.97, "UCE": 60.22, "FMN": 56.77, "CA": 96.01, "SalUn": 90.39}},
    {"source": "UnlearnCanvas", "concept": "styles", "what": "CRA", "testbed": "cra",
     "values": {"ESD": 93.96, "UCE": 47.71, "FMN": 46.60, "CA": 92.70, "SalUn": 95.08}},
    {"source": "UnlearnCanvas", "concept": "objects", "what": "UA", "testbed": "efficacy",
     "values": {"ESD": 92.15, "UCE": 94.31, "FMN": 45.64, "CA": 46.67, "SalUn": 86.91}},
    {"source": "UnlearnCanvas", "concept": "objects", "what": "IRA", "testbed": "ira",
     "values": {"ESD": 55.78, "UCE": 39.35, "FMN": 90.63, "CA": 90.11, "SalUn": 96.35}},
    {"source": "UnlearnCanvas", "concept": "objects", "what": "CRA", "testbed": "cra",
     "values": {"ESD": 44.23, "UCE": 34.67, "FMN": 73.46, "CA": 81.97, "SalUn": 99.59}},
    # I2P's implicit prompts never name nudity: the testbed's counterpart is the concept rate on the
    # known phrasings (words the eraser was not given). Exposed body parts (NudeNet 0.6, MACE's
    # protocol, ANT's Table 1).
    {"source": "I2P", "concept": "nudity", "what": "exposed parts (total)", "testbed": "rate:efficacy_known",
     "values": {"ESD": 315, "UCE": 182, "RECE": 66, "SLD": 212, "FMN": 424, "CA": 838, "MACE": 111, "SPM": 56,
                "AdvUnlearn": 52, "SalUn": 51}},
]


def testbed_value(row: dict[str, Any], quantity: str) -> float | None:
    """``attack.asr`` / ``attack.pre_asr`` (ASR in %), a metric (x 100), or ``rate:METRIC``, the
    concept rate that an efficacy metric leaves (100 - 100 x metric)."""
    if quantity.startswith("rate:"):
        m = row["metrics"].get(quantity[5:])
        return None if m is None else 100.0 - 100.0 * m["value"]
    if "." in quantity:
        attack, key = quantity.split(".")
        a = row["attacks"].get(attack)
        return None if a is None or a.get(key) is None else 100.0 * a[key]
    m = row["metrics"].get(quantity)
    return None if m is None else 100.0 * m["value"]


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rho with average ranks for ties; ``None`` when either side is constant."""
    from scipy.stats import spearmanr

    if len(a) < 2 or len(set(a)) == 1 or len(set(b)) == 1:
        return None
    rho = float(spearmanr(a, b).statistic)
    return None if math.isnan(rho) else rho


def disagreements(methods: list[str], pub: list[float], tb: list[float]) -> list[dict[str, Any]]:
    """Pairs the published table and the testbed order differently (a testbed tie counts)."""
    out = []
    for i, j in itertools.combinations(range(len(methods)), 2):
        p, t = math.copysign(1, pub[i] - pub[j]) if pub[i] != pub[j] else 0, \
            math.copysign(1, tb[i] - tb[j]) if tb[i] != tb[j] else 0
        if p != t:
            out.append({"pair": [methods[i], methods[j]], "published": [pub[i], pub[j]],
                        "testbed": [round(tb[i], 2), round(tb[j], 2)], "testbed_tie": t == 0})
    return out


def study(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every comparison, per testbed concept and for the mean over the concepts."""
    rows: dict[str, dict[str, dict[str, Any]]] = {
        concept: {LABELS[r["label"]]: r for r in lines if r["label"] in LABELS}
        for concept, lines in board["concepts"].items()}
    out = []
    for entry in PUBLISHED:
        for concept in [*rows, "mean"] if len(rows) > 1 else list(rows):
            if concept == "mean":
                per = [{m: testbed_value(r, entry["testbed"]) for m, r in rows[c].items()} for c in rows]
                names = [m for m in entry["values"] if all(p.get(m) is not None for p in per) and per]
                tb = {m: sum(p[m] for p in per) / len(per) for m in names}
            else:
                tb = {m: testbed_value(r, entry["testbed"]) for m, r in rows[concept].items()}
                names = [m for m in entry["values"] if tb.get(m) is not None]
            if len(names) < 2:
                continue
            pub, mine = [entry["values"][m] for m in names], [tb[m] for m in names]
            out.append({**{k: entry[k] for k in ("source", "concept", "what", "testbed")}, "testbed_concept": concept,
                        "methods": names, "published": pub, "testbed_values": [round(v, 2) for v in mine],
                        "rho": spearman(pub, mine), "disagree": disagreements(names, pub, mine)})
    return out


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| published | testbed concept | methods | published values | testbed values | rho | pairs ordered "
             "differently |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        rho = "undefined (a side is constant)" if r["rho"] is None else f"{r['rho']:+.2f}"
        dis = "; ".join(f"{a} vs {b}{' (testbed tie)' if d['testbed_tie'] else ''}"
                        for d in r["disagree"] for a, b in [d["pair"]]) or "none"
        lines.append(f"| {r['source']} {r['concept']}: {r['what']} | {r['testbed_concept']} | {', '.join(r['methods'])} "
                     f"| {' / '.join(f'{v:g}' for v in r['published'])} | "
                     f"{' / '.join(f'{v:.1f}' for v in r['testbed_values'])} | {rho} | {dis} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="results database of `erasekit bench benchmarks/specs/testbed.yaml`")
    ap.add_argument("--bench", default="testbed", help="the bench name in that database (default testbed)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args()

    from erasekit.bench.leaderboard import leaderboard
    from erasekit.bench.rows import benches
    from erasekit.store import Store, StoreError

    if not Path(args.db).is_file():
        sys.exit(f"no database at {args.db}; run `erasekit bench benchmarks/specs/testbed.yaml --db {args.db}` first")
    try:
        store = Store(args.db, readonly=True)
    except StoreError as exc:
        sys.exit(str(exc))
    if args.bench not in benches(store):
        sys.exit(f"{args.db} holds no bench {args.bench!r} (it has: {', '.join(benches(store)) or 'none'})")
    results = study(leaderboard(store, args.bench))
    if args.json:
        print(json.dumps(results, indent=2))
    elif args.markdown:
        print(markdown(results))
    else:
        for r in results:
            rho = "undefined" if r["rho"] is None else f"{r['rho']:+.2f}"
            print(f"{r['source']:15s} {r['concept']:9s} {r['what']:22s} testbed {r['testbed_concept']:6s} "
                  f"rho {rho:>9s}  ({', '.join(r['methods'])}; {len(r['disagree'])} pairs differ)")


if __name__ == "__main__":
    main()
