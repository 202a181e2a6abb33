"""How much the frozen MiniLM encoder tells about ``unseen`` phrasings, read out by a classifier
trained on the trained (``given`` and ``known``) phrasings only: the ceiling a text-conditioned
model faces.

Usage: ``python benchmarks/phrasing_probe.py [--threads 2] [--every 3]``.

For each attribute family, captions of seen combinations (every ``--every``-th) name the family's
value with each trained phrase, the other families with their given phrase. A logistic
regression on the encoder states the testbed's UNet sees (``encode_text``), pooled over the family
phrase's tokens and over the whole caption, learns value from the trained phrasings and is scored
on the same captions with each unseen phrase instead, as are nearest neighbours (cosine). Prints
per family the accuracy and the unseen phrases it gets wrong: the ceiling beside which the
``unseen`` figures of ``erasekit testbed evaluate`` are reported.
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--every", type=int, default=3, help="use every k-th seen combination")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from sklearn.linear_model import LogisticRegression

    from erasekit.testbed import data
    from erasekit.testbed.pipeline import TestbedPipeline, load_text_encoder

    encoder, tokenizer = load_text_encoder()
    pipe = TestbedPipeline(unet=None, text_encoder=encoder, tokenizer=tokenizer, scheduler=None)  # type: ignore[arg-type]

    def features(captions: list[str], phrases: list[str]) -> dict[str, np.ndarray]:
        states = pipe.encode_text(captions).float()
        ids = tokenizer(captions, padding="max_length", truncation=True, max_length=states.shape[1]).input_ids
        phrase_vecs, caption_vecs = [], []
        for row, phrase, st in zip(ids, phrases, states):
            want = tokenizer(phrase, add_special_tokens=False).input_ids
            start = next(i for i in range(len(row)) if row[i : i + len(want)] == want)
            phrase_vecs.append(st[start : start + len(want)].mean(0))
            caption_vecs.append(st[: sum(1 for i in row if i != tokenizer.pad_token_id)].mean(0))
        norm = lambda v: torch.nn.functional.normalize(torch.stack(v), dim=-1).numpy()  # noqa: E731
        return {"phrase tokens": norm(phrase_vecs), "whole caption": norm(caption_vecs)}

    combos = data.all_combinations(heldout_pairs=False)[:: args.every]
    print(f"{len(combos)} seen combinations; encoder states as the UNet sees them; chance 1/{len(data.FAMILIES['shape'])}"
          f" (shape, colour), 1/{len(data.FAMILIES['background'])} (background)")
    for family, table in data.PHRASES.items():
        sets: dict[str, tuple[list[str], list[str], list[str]]] = {"train": ([], [], []), "heldout": ([], [], [])}
        tiers = {"train": ("given", "known"), "heldout": ("unseen",)}
        for a in combos:
            value = getattr(a, family)
            for split, (caps, phrases, labels) in sets.items():
                for phrase in (p for tier in tiers[split] for p in table[value][tier]):
                    caps.append(data.canonical_caption(a, {family: phrase}))
                    phrases.append(phrase)
                    labels.append(value)
        train, held = features(*sets["train"][:2]), features(*sets["heldout"][:2])
        y_train, y_held = np.array(sets["train"][2]), np.array(sets["heldout"][2])
        for pooling in train:
            clf = LogisticRegression(C=10.0, max_iter=3000).fit(train[pooling], y_train)
            pred = clf.predict(held[pooling])
            nearest = (held[pooling] @ train[pooling].T).argmax(1)
            nn = y_train[nearest]
            wrong = Counter(p for p, ok in zip(sets["heldout"][1], pred == y_held) if not ok)
            print(f"{family:10s} {pooling:13s} logistic {np.mean(pred == y_held):.2f}  nearest {np.mean(nn == y_held):.2f}"
                  f"  (train {clf.score(train[pooling], y_train):.2f})  logistic missed: "
                  + (", ".join(f"{w!r}" for w, _ in wrong.most_common(6)) or "-"))
            neighbours: dict[str, Counter] = {}
            for phrase, j, ok in zip(sets["heldout"][1], nearest, nn == y_held):
                if not ok:
                    neighbours.setdefault(phrase, Counter())[sets["train"][1][j]] += 1
            if neighbours:
                print(f"{'':24s} nearest-neighbour misses: " + ", ".join(
                    f"{p!r} -> {c.most_common(1)[0][0]!r}" for p, c in neighbours.items()))


if __name__ == "__main__":
    main()
