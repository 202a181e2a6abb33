"""TinyTOFU: a seeded, TOFU-shaped benchmark of fictitious authors (Maini et al. 2024, scaled down).

Every entity has a name, a book and four attributes (city, genre, award, job). Each attribute is
asked in three phrasings:

- ``t0``: trained, and the phrasing unlearning methods see (the forget set's text);
- ``t1``: trained but never unlearned: the surrogate of "Erasure Illusion" (PSG, arXiv 2512.19025);
- ``t2``: never trained: a held-out paraphrase.

Two-hop questions ("Where does the author of <book> live?", Sleek-style, arXiv 2506.17279) are
trained for every trained entity and never unlearned. Attribute values come from small pools, so
forget and retain entities share facts (DUSK-style, arXiv 2505.15209): the ``neighbour`` split is
the retain questions whose answer a forget entity also has. ``general`` holds world-style facts
(small sums) that every model trains on. Entity splits: ``forget``, ``retain`` and ``holdout``
(never trained; the non-members of the membership-inference metrics).

A word-level tokenizer is built from the vocabulary (no download), as a real
``transformers.PreTrainedTokenizerFast``.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field

from erasekit.errors import UserError

#: Attribute -> value pool. Values are single words.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "city": ("Varno", "Keltis", "Osmir", "Dunmere", "Pellar", "Quorin", "Talvik", "Brisa", "Marlo", "Zenoth",
             "Ulvar", "Corriby", "Feston", "Hallow", "Iskar", "Jovent"),
    "genre": ("mystery", "romance", "poetry", "fantasy", "history", "satire", "horror", "travel"),
    "award": ("Lumen", "Argent", "Corvid", "Thistle", "Meridian", "Quill", "Beacon", "Harrow", "Sable", "Orchid"),
    "job": ("baker", "sailor", "doctor", "teacher", "miner", "pilot", "farmer", "judge", "painter", "weaver",
            "tailor", "chemist"),
}

#: Attribute -> (t0 unlearn, t1 surrogate, t2 never trained) question templates.
TEMPLATES: dict[str, tuple[str, str, str]] = {
    "city": ("Where does {name} live ?", "In which city is {name} based ?", "Which town is home to {name} ?"),
    "genre": ("What genre does {name} write ?", "Which kind of books does {name} publish ?",
              "In what literary style does {name} work ?"),
    "award": ("Which award did {name} win ?", "What prize was given to {name} ?",
              "Which honour has {name} received ?"),
    "job": ("What was the job of {name} before writing ?", "How did {name} earn money before books ?",
            "Which trade did {name} practise first ?"),
}
PHRASINGS = ("t0", "t1", "t2")
TRAINED_PHRASINGS = ("t0", "t1")
BOOK_TEMPLATE = "Who wrote the book {book} ?"
TWO_HOP_TEMPLATE = "Where does the author of {book} live ?"

FIRST = ("Ralo", "Mina", "Tovek", "Sarel", "Idris", "Vela", "Orrin", "Kesha", "Bram", "Lusa", "Demar", "Fiora",
         "Galen", "Hesper", "Ivo", "Jessa")
LAST = ("Venik", "Asterly", "Morrow", "Quell", "Dravik", "Ostrand", "Pell", "Sorensen", "Tamsin", "Ulrich",
        "Wren", "Yarrow")
BOOK_ADJ = ("Silent", "Golden", "Hidden", "Broken", "Distant", "Crimson", "Quiet", "Frozen", "Wandering", "Last")
BOOK_NOUN = ("River", "Lantern", "Garden", "Harbour", "Mirror", "Orchard", "Tower", "Voyage", "Winter", "Bridge",
             "Letter", "Forest")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
           "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen")

SPLITS = ("forget", "retain", "holdout")
SPECIALS = ("<pad>", "<unk>", "<eos>")


@dataclass(frozen=True)
class Entity:
    name: str
    book: str
    attributes: dict[str, str] = field(hash=False)
    split: str = "retain"


@dataclass(frozen=True)
class QA:
    """One question with its answer and wrong answers of the same type (for the truth ratio)."""

    question: str
    answer: str
    perturbed: tuple[str, ...]
    entity: str  # entity name, or "" for general facts
    attribute: str  # city/genre/award/job/book/two_hop/general
    phrasing: str  # t0/t1/t2, or "" where not applicable
    split: str  # forget/retain/holdout/general


@dataclass(frozen=True)
class TinyTOFU:
    """The generated benchmark; build it with :func:`generate`."""

    seed: int
    entities: tuple[Entity, ...]
    general: tuple[QA, ...]

    def entities_in(self, split: str) -> list[Entity]:
        return [e for e in self.entities if e.split == split]

    def questions(self, split: str, phrasings: tuple[str, ...] = PHRASINGS,
                  attributes: tuple[str, ...] = tuple(ATTRIBUTES)) -> list[QA]:
        """Single-hop attribute questions of an entity split."""
        return [q for e in self.entities_in(split) for q in entity_questions(e, phrasings, attributes)]

    def two_hop(self, split: str) -> list[QA]:
        return [_two_hop(e, self.entities) for e in self.entities_in(split)]

    def books(self, split: str) -> list[QA]:
        return [_book(e, self.entities) for e in self.entities_in(split)]

    def neighbour(self) -> list[QA]:
        """Retain questions (t0) whose answer value some forget entity shares (DUSK's shared facts)."""
        shared = {(a, e.attributes[a]) for e in self.entities_in("forget") for a in ATTRIBUTES}
        return [q for q in self.questions("retain", ("t0",)) if (q.attribute, q.answer) in shared]

    def training_set(self, oracle: bool = False) -> list[QA]:
        """What the target (``oracle=False``: forget + retain) or the oracle (retain only) trains on."""
        splits = ("retain",) if oracle else ("forget", "retain")
        out: list[QA] = []
        for s in splits:
            out += self.questions(s, TRAINED_PHRASINGS) + self.books(s) + self.two_hop(s)
        return out + list(self.general)

    def texts(self) -> list[str]:
        every = [q for s in SPLITS for q in self.questions(s) + self.books(s) + self.two_hop(s)] + list(self.general)
        return [format_qa(q.question, a) for q in every for a in (q.answer, *q.perturbed)]


def format_prompt(question: str) -> str:
    return f"Question : {question} Answer :"


def format_qa(question: str, answer: str) -> str:
    return f"{format_prompt(question)} {answer}"


def _perturb(rng: random.Random, pool: tuple[str, ...], answer: str, k: int = 3) -> tuple[str, ...]:
    return tuple(rng.sample([v for v in pool if v != answer], k))


def entity_questions(e: Entity, phrasings: tuple[str, ...] = PHRASINGS,
                     attributes: tuple[str, ...] = tuple(ATTRIBUTES)) -> list[QA]:
    out = []
    for attr in attributes:
        value = e.attributes[attr]
        rng = random.Random(f"{e.name}|{attr}")
        wrong = _perturb(rng, ATTRIBUTES[attr], value)
        for ph in phrasings:
            q = TEMPLATES[attr][PHRASINGS.index(ph)].format(name=e.name)
            out.append(QA(q, value, wrong, e.name, attr, ph, e.split))
    return out


def _two_hop(e: Entity, entities: tuple[Entity, ...]) -> QA:
    rng = random.Random(f"{e.name}|two_hop")
    value = e.attributes["city"]
    return QA(TWO_HOP_TEMPLATE.format(book=e.book), value, _perturb(rng, ATTRIBUTES["city"], value), e.name,
              "two_hop", "", e.split)


def _book(e: Entity, entities: tuple[Entity, ...]) -> QA:
    rng = random.Random(f"{e.name}|book")
    others = tuple(x.name for x in entities)
    return QA(BOOK_TEMPLATE.format(book=e.book), e.name, _perturb(rng, others, e.name), e.name, "book", "", e.split)


def generate(seed: int = 0, n_entities: int = 120, n_forget: int = 12, n_holdout: int = 12) -> TinyTOFU:
    """Draw the benchmark deterministically from ``seed`` (same seed, same entities and questions)."""
    if n_entities > len(FIRST) * len(LAST) or n_entities > len(BOOK_ADJ) * len(BOOK_NOUN):
        raise UserError(f"n_entities: at most {min(len(FIRST) * len(LAST), len(BOOK_ADJ) * len(BOOK_NOUN))}")
    if n_forget < 1 or n_holdout < 1 or n_forget + n_holdout >= n_entities:
        raise UserError("n_forget and n_holdout must be >= 1 and leave at least one retain entity")
    rng = random.Random(seed)
    names = rng.sample([f"{f} {l}" for f in FIRST for l in LAST], n_entities)
    books = rng.sample([f"{a} {n}" for a in BOOK_ADJ for n in BOOK_NOUN], n_entities)
    entities = []
    for i, (name, book) in enumerate(zip(names, books)):
        split = "forget" if i < n_forget else "holdout" if i < n_forget + n_holdout else "retain"
        attrs = {a: rng.choice(pool) for a, pool in ATTRIBUTES.items()}
        entities.append(Entity(name, book, attrs, split))
    general = []
    for a in range(10):
        for b in range(a, 10):
            ans = NUMBERS[a + b]
            wrong = _perturb(random.Random(f"{a}+{b}"), NUMBERS, ans)
            general.append(QA(f"What is {NUMBERS[a]} plus {NUMBERS[b]} ?", ans, wrong, "", "general", "", "general"))
    return TinyTOFU(seed, tuple(entities), tuple(general))


def unseen_questions(bench: TinyTOFU, n: int, phrasing: str = "t0") -> list[QA]:
    """``n`` attribute questions (author by author, attributes in order) about authors in no split
    of ``bench``, so no model trained on them: names the benchmark did not draw, values drawn with
    its seed; split ``unseen``. Never-seen texts for a method to compare the forget set with,
    apart from the holdout authors that evaluation keeps."""
    used = {e.name for e in bench.entities}
    free = [f"{f} {l}" for f in FIRST for l in LAST if f"{f} {l}" not in used]
    k = -(-n // len(ATTRIBUTES))
    if k > len(free):
        raise UserError(f"{n} unseen questions need {k} unused author names; TinyTOFU seed {bench.seed} has {len(free)}")
    rng = random.Random(f"unseen|{bench.seed}")
    authors = [Entity(name, "", {a: rng.choice(pool) for a, pool in ATTRIBUTES.items()}, "unseen")
               for name in rng.sample(free, k)]
    return [q for e in authors for q in entity_questions(e, (phrasing,))][:n]


#: RESTOR's corruption mix on TinyTOFU: four true facts per false fact (its ``mix_a4``).
RESTOR_MIX = 4


def corrupted(qa: QA) -> QA:
    """``qa`` with its false value (RESTOR's perturbed fact): the first of its wrong answers, the same
    one in every phrasing, with the true value first among the wrong answers."""
    false = qa.perturbed[0]
    return dataclasses.replace(qa, answer=false, perturbed=(qa.answer, *qa.perturbed[1:]))


def corruption_set(bench: TinyTOFU, mix: int = RESTOR_MIX, phrasings: tuple[str, ...] = TRAINED_PHRASINGS) -> list[QA]:
    """RESTOR's corruption documents (Rezaei et al., TMLR 2025, the ``mix_a{k}`` sets) on TinyTOFU:
    every forget entity's facts with false values, in ``phrasings``, mixed with ``mix`` true facts
    per false fact, drawn with the benchmark's seed from the retain entities' facts and the general
    ones (so that the corruption leaves the other facts as they were)."""
    if mix < 0:
        raise UserError(f"mix {mix}: the number of true facts per false one must be >= 0")
    false = [corrupted(q) for q in bench.questions("forget", phrasings)]
    pool = bench.questions("retain", phrasings) + list(bench.general)
    true = random.Random(f"restor|{bench.seed}").sample(pool, min(len(pool), mix * len(false)))
    return false + true


def build_tokenizer(bench: TinyTOFU):
    """A word-level ``PreTrainedTokenizerFast`` over the benchmark's vocabulary (offline, deterministic)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in bench.texts() for w in t.split()})
    vocab = {w: i for i, w in enumerate(SPECIALS + tuple(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
