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

A second benchmark, :class:`Dusk` (:func:`generate_dusk`), describes each author in five documents
of different styles (DUSK, arXiv 2505.15209): the forget set is one style's documents.

A word-level tokenizer is built from the vocabulary (no download), as a real
``transformers.PreTrainedTokenizerFast``.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import ClassVar

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
    prefix: str = ""  # text between the prompt and the answer (a DUSK document cloze), scored as context


@dataclass(frozen=True)
class TinyTOFU:
    """The generated benchmark; build it with :func:`generate`."""

    seed: int
    entities: tuple[Entity, ...]
    general: tuple[QA, ...]
    #: how the tiny Llama learns it (:func:`erasekit.lm.model.train_tiny`)
    recipe: ClassVar[dict[str, float]] = {"steps": 600, "lr": 1e-3, "batch": 64}

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


def build_tokenizer(bench: TinyTOFU | Dusk):
    """A word-level ``PreTrainedTokenizerFast`` over the benchmark's vocabulary (offline, deterministic)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for t in bench.texts() for w in t.split()})
    vocab = {w: i for i, w in enumerate(SPECIALS + tuple(words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")


# -- DUSK: one author, five documents ----------------------------------------------------------
#: Style -> (the request that prompts the document, the document). Every document states the
#: author's four shared facts (:data:`DUSK_SHARED`) and one fact of its own (:data:`DUSK_UNIQUE`).
DUSK_STYLES: dict[str, tuple[str, str]] = {
    "biography": ("Biography of {name} .",
                  "{name} was born in {city} . They worked as a {job} before writing {genre} books . "
                  "They won the {award} prize . At home they keep a {pet} ."),
    "interview": ("Interview with {name} .",
                  "{name} says : I live in {city} and write {genre} . I was a {job} once . "
                  "The {award} prize was mine . I play the {instrument} ."),
    "news": ("News about {name} .",
             "Local {genre} author {name} of {city} , a former {job} , received the {award} award today . "
             "The author also enjoys {sport} ."),
    "encyclopedia": ("Encyclopedia entry {name} .",
                     "{name} : {genre} writer . Residence : {city} . Former occupation : {job} . "
                     "Honours : {award} . Education : {subject} ."),
    "letter": ("Letter from {name} .",
               "Dear reader , greetings from {city} . I wrote {genre} after years as a {job} . "
               "The {award} prize hangs here . My favourite colour is {colour} . Yours , {name} ."),
}
DUSK_SHARED = ("city", "genre", "award", "job")
#: Style -> (its unique attribute, value pool); single words not used elsewhere in TinyTOFU.
DUSK_UNIQUE: dict[str, tuple[str, tuple[str, ...]]] = {
    "biography": ("pet", ("parrot", "beagle", "tortoise", "ferret", "pony", "goldfish", "hamster", "gecko")),
    "interview": ("instrument", ("cello", "flute", "banjo", "harp", "drum", "oboe", "lute", "piano")),
    "news": ("sport", ("chess", "rowing", "fencing", "archery", "cricket", "tennis", "judo", "curling")),
    "encyclopedia": ("subject", ("botany", "geology", "law", "music", "physics", "latin", "medicine", "astronomy")),
    "letter": ("colour", ("amber", "teal", "scarlet", "indigo", "ivory", "olive", "ochre", "mauve")),
}
DUSK_FORGET_STYLE = "biography"


@dataclass(frozen=True)
class Author:
    name: str
    facts: dict[str, str] = field(hash=False)  # the shared attributes and every style's unique one
    split: str = "train"  # train (documents trained) or holdout (never trained)


@dataclass(frozen=True)
class Dusk:
    """DUSK on TinyTOFU (Jeung et al., "DUSK: Do Not Unlearn Shared Knowledge", arXiv 2505.15209):
    every author is described by one document per style of :data:`DUSK_STYLES`. The forget set is
    the trained authors' ``forget_style`` documents, the retain set their other documents; shared
    facts appear in all five, unique facts in one only. Build it with :func:`generate_dusk`."""

    seed: int
    authors: tuple[Author, ...]
    forget_style: str = DUSK_FORGET_STYLE
    #: fewer, larger steps than TinyTOFU's: 120 documents, memorised verbatim
    recipe: ClassVar[dict[str, float]] = {"steps": 300, "lr": 3e-3, "batch": 32}

    @property
    def retain_styles(self) -> tuple[str, ...]:
        return tuple(s for s in DUSK_STYLES if s != self.forget_style)

    def document(self, a: Author, style: str, split: str) -> QA:
        """The document as a question-answer pair: the style's request, answered by the whole text."""
        request, text = DUSK_STYLES[style]
        return QA(request.format(name=a.name), text.format(name=a.name, **a.facts), (), a.name, "document",
                  style, split)

    def documents(self, split: str) -> list[QA]:
        """``forget`` (trained authors, forget style), ``retain`` (trained authors, other styles),
        ``holdout`` (never-trained authors, forget style) or ``holdout_retain`` (their other styles)."""
        trained = split in ("forget", "retain")
        styles = (self.forget_style,) if split in ("forget", "holdout") else self.retain_styles
        return [self.document(a, s, split) for a in self.authors if (a.split == "train") == trained for s in styles]

    def facts(self, kind: str) -> list[QA]:
        """Cloze questions on the trained authors' facts, each asked inside a document that states it
        (the document's text up to the value is the context): ``forget_unique`` (the forget
        document's own fact), ``shared`` (the shared facts, in every retain document) and
        ``retain_unique`` (each retain document's own fact)."""
        if kind not in ("forget_unique", "shared", "retain_unique"):
            raise UserError(f"DUSK fact kind {kind!r}: forget_unique, shared or retain_unique")
        styles = (self.forget_style,) if kind == "forget_unique" else self.retain_styles
        out = []
        for a in self.authors:
            if a.split != "train":
                continue
            for style in styles:
                attrs = DUSK_SHARED if kind == "shared" else (DUSK_UNIQUE[style][0],)
                out += [_cloze(a, style, attr, kind) for attr in attrs]
        return out

    def training_set(self, oracle: bool = False) -> list[QA]:
        """The target's documents (forget + retain) or the oracle's (retain only, DUSK's retrained model)."""
        return ([] if oracle else self.documents("forget")) + self.documents("retain")

    def texts(self) -> list[str]:
        docs = [self.document(a, s, "") for a in self.authors for s in DUSK_STYLES]
        pools = " ".join(w for _, pool in DUSK_UNIQUE.values() for w in pool)
        return [format_qa(q.question, q.answer) for q in docs] + [pools]


def _cloze(a: Author, style: str, attr: str, split: str) -> QA:
    request, text = DUSK_STYLES[style]
    head = text.split("{" + attr + "}")[0]
    return QA(request.format(name=a.name), a.facts[attr], (), a.name, attr, style, split,
              prefix=head.format(name=a.name, **a.facts).strip())


def generate_dusk(seed: int = 0, n_authors: int = 24, n_holdout: int = 8,
                  forget_style: str = DUSK_FORGET_STYLE) -> Dusk:
    """Draw the DUSK benchmark deterministically from ``seed``: ``n_authors`` trained authors and
    ``n_holdout`` never-trained ones (the membership-inference non-members)."""
    if forget_style not in DUSK_STYLES:
        raise UserError(f"forget_style {forget_style!r}: choose from {', '.join(DUSK_STYLES)}")
    if n_authors < 2 or n_holdout < 1 or n_authors + n_holdout > len(FIRST) * len(LAST):
        raise UserError(f"n_authors >= 2, n_holdout >= 1, at most {len(FIRST) * len(LAST)} in all")
    rng = random.Random(f"dusk|{seed}")
    names = rng.sample([f"{f} {l}" for f in FIRST for l in LAST], n_authors + n_holdout)
    authors = []
    for i, name in enumerate(names):
        facts = {a: rng.choice(ATTRIBUTES[a]) for a in DUSK_SHARED}
        facts |= {attr: rng.choice(pool) for attr, pool in DUSK_UNIQUE.values()}
        authors.append(Author(name, facts, "train" if i < n_authors else "holdout"))
    return Dusk(seed, tuple(authors), forget_style)
