"""What a language model must forget and keep: TinyTOFU, or real knowledge (the Harry Potter books).

A :class:`Forget` spec is the language-model counterpart of a diffusion :class:`~erasekit.concepts.Concept`;
:func:`get_task` turns it into the question sets methods train on and metrics score.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from erasekit.config import Config
from erasekit.errors import UserError
from erasekit.lm import data
from erasekit.lm.data import QA

TASKS = ("tinytofu", "restor", "dusk", "harry-potter")


@dataclass(frozen=True)
class Forget(Config):
    """``task``: ``tinytofu`` (the forget split of TinyTOFU drawn with ``seed``), ``restor`` (the
    false facts a corrupted TinyTOFU model learned, :func:`restor_task`), ``dusk`` (one style's
    documents of every author, :func:`dusk_task`) or ``harry-potter``.
    ``entities``: on ``tinytofu``, forget only these authors of the forget split (one request of a
    continual sequence, :mod:`erasekit.lm.continual`); empty: the whole forget split."""

    task: str = "tinytofu"
    seed: int = 0
    entities: tuple = ()

    def __post_init__(self) -> None:
        if isinstance(self.entities, list):
            object.__setattr__(self, "entities", tuple(self.entities))
        self.check_types()
        if self.task not in TASKS:
            close = difflib.get_close_matches(self.task, TASKS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"unknown forget task {self.task!r}{hint}; choose from {', '.join(TASKS)}")
        if self.entities:
            if self.task != "tinytofu":
                raise UserError(f"entities: only the tinytofu task names its authors; task {self.task!r} has none")
            names = {e.name for e in data.generate(self.seed).entities_in("forget")}
            for name in self.entities:
                if name not in names:
                    close = difflib.get_close_matches(str(name), sorted(names), n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    raise UserError(f"entities: {name!r} is not a forget author of TinyTOFU seed {self.seed}{hint}")
            if len(set(self.entities)) != len(self.entities):
                raise UserError(f"entities: each author once, got {list(self.entities)}")

    def to_dict(self) -> dict:
        """As stored; ``entities`` only when set (so whole-split specs keep their ids)."""
        d = super().to_dict()
        if not self.entities:
            d.pop("entities")
        else:
            d["entities"] = list(self.entities)
        return d

    @property
    def name(self) -> str:
        return self.task if not self.entities else f"{self.task}[{len(self.entities)} authors]"


@dataclass(frozen=True)
class Task:
    """Question sets. ``forget_train``/``retain_train`` are what unlearning sees; ``eval`` maps a
    set name to its questions (``forget``, ``surrogate``, ``unseen``, ``two_hop``, ``retain``,
    ``neighbour``, ``general``, ``holdout``); ``relearn_train``/``relearn_test`` split the forget
    entities' facts for the relearning attack; ``probe`` lists (question, label, entity split)
    rows per attribute for the probing attack. ``keyword``: score by a keyword in a greedy
    generation instead of teacher-forced exact match (real chat models). ``members``: the eval
    sets given membership-inference scores; ``verbatim``: those whose greedy answers are scored
    by ROUGE-L recall against the answer (documents). ``families``: hand-written Sleek prompt
    families (:mod:`erasekit.lm.attacks.sleek`), ``{"forget" | "retain": {family: questions}}``;
    empty where the attack builds them itself (TinyTOFU) or has none."""

    spec: Forget
    forget_train: list[QA]
    retain_train: list[QA]
    eval: dict[str, list[QA]]
    relearn_train: list[QA]
    relearn_test: list[QA]
    probe: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    keyword: bool = False
    members: tuple[str, ...] = ("forget", "holdout")
    verbatim: tuple[str, ...] = ()
    families: dict[str, dict[str, list[QA]]] = field(default_factory=dict)


def get_task(spec: Forget) -> Task:
    if spec.task == "tinytofu":
        return tinytofu_task(spec)
    if spec.task == "restor":
        return restor_task(spec)
    if spec.task == "dusk":
        return dusk_task(spec)
    return harry_potter_task(spec)


def tinytofu_task(spec: Forget) -> Task:
    b = data.generate(spec.seed)
    chosen = set(spec.entities)

    def mine(items: list[QA]) -> list[QA]:
        return [q for q in items if not chosen or q.entity in chosen]

    forget_t0 = mine(b.questions("forget", ("t0",)))
    ev = {
        "forget": forget_t0,
        "surrogate": mine(b.questions("forget", ("t1",))),
        "unseen": mine(b.questions("forget", ("t2",))),
        "two_hop": mine(b.two_hop("forget")),
        "retain": b.questions("retain", ("t0",)),
        "neighbour": b.neighbour(),
        "general": list(b.general),
        "holdout": b.questions("holdout", ("t0",)),
    }
    probe = {
        attr: [(q.question, q.answer, q.split) for s in ("forget", "retain")
               for q in b.questions(s, ("t0", "t1"), (attr,))]
        for attr in data.ATTRIBUTES
    }
    return Task(
        spec=spec,
        forget_train=forget_t0,
        retain_train=b.questions("retain", data.TRAINED_PHRASINGS) + list(b.general),
        eval=ev,
        relearn_train=mine(b.questions("forget", ("t0",), ("city", "genre"))),
        relearn_test=mine(b.questions("forget", ("t0", "t1"), ("award", "job"))),
        probe=probe,
    )


def restor_task(spec: Forget) -> Task:
    """RESTOR (Rezaei et al., "RESTOR: Knowledge Recovery in Machine Unlearning", TMLR 2025) on
    TinyTOFU: the model to unlearn is a clean TinyTOFU model corrupted by further training on
    :func:`~erasekit.lm.data.corruption_set` (``erasekit lm corrupt``). Unlearning sees the
    corruption documents (the false facts and the true facts mixed into them, in the phrasing
    ``t0``; the true ones are left out of the retain set), not which of their facts are false. The target is the *clean* model, so the oracle is
    the model before corruption. Eval sets: ``forget`` (the forget entities' facts with their false
    values, ``t0``), ``clean`` (the same questions with the true values: restoration),
    ``surrogate`` (false values, ``t1``: corrupted but not in what unlearning sees), ``mixed`` (the
    true facts inside the corruption documents), ``retain``, ``neighbour``, ``general``,
    ``holdout``."""
    b = data.generate(spec.seed)
    docs = [q for q in data.corruption_set(b) if q.phrasing in ("t0", "")]  # what `lm corrupt` trained on, in t0
    false_t0 = [q for q in docs if q.split == "forget"]
    false_t1 = [data.corrupted(q) for q in b.questions("forget", ("t1",))]
    ev = {
        "forget": false_t0,
        "clean": b.questions("forget", ("t0",)),
        "surrogate": false_t1,
        "mixed": [q for q in docs if q.split != "forget"],
        "retain": b.questions("retain", ("t0",)),
        "neighbour": b.neighbour(),
        "general": list(b.general),
        "holdout": b.questions("holdout", ("t0",)),
    }
    probe = {
        attr: [(q.question, q.answer, q.split) for q in false_t0 + false_t1 if q.attribute == attr]
        + [(q.question, q.answer, q.split) for q in b.questions("retain", ("t0", "t1"), (attr,))]
        for attr in data.ATTRIBUTES
    }
    def fact(q: QA) -> tuple[str, str]:
        return (q.entity, q.attribute) if q.entity else (q.question, "")

    in_docs = {fact(q) for q in ev["mixed"]}
    retain = [q for q in b.questions("retain", data.TRAINED_PHRASINGS) + list(b.general) if fact(q) not in in_docs]
    return Task(
        spec=spec,
        forget_train=docs,
        retain_train=retain,
        eval=ev,
        relearn_train=[q for q in false_t0 if q.attribute in ("city", "genre")],
        relearn_test=[q for q in false_t0 + false_t1 if q.attribute in ("award", "job")],
        probe=probe,
    )


def dusk_task(spec: Forget) -> Task:
    """DUSK (Jeung et al., "DUSK: Do Not Unlearn Shared Knowledge", arXiv 2505.15209) on
    :func:`~erasekit.lm.data.generate_dusk`: unlearning sees the forget style's documents (the
    request, answered by the whole document) and keeps the other four styles'. Eval sets:
    ``forget`` / ``retain`` (the documents), ``forget_unique`` / ``shared`` / ``retain_unique`` (cloze
    questions on the facts, asked inside a document that states them), ``holdout`` /
    ``holdout_retain`` (never-trained authors' documents in the forget / the other styles: the
    membership-inference non-members). Relearning: the forget documents of the first half of the
    authors, scored on the other half's forget-unique facts."""
    b = data.generate_dusk(spec.seed)
    forget, unique = b.documents("forget"), b.facts("forget_unique")
    half = {a.name for a in b.authors[: len(forget) // 2]}
    ev = {
        "forget": forget,
        "retain": b.documents("retain"),
        "forget_unique": unique,
        "shared": b.facts("shared"),
        "retain_unique": b.facts("retain_unique"),
        "holdout": b.documents("holdout"),
        "holdout_retain": b.documents("holdout_retain"),
    }
    return Task(
        spec=spec,
        forget_train=forget,
        retain_train=ev["retain"],
        eval=ev,
        relearn_train=[q for q in forget if q.entity in half],
        relearn_test=[q for q in unique if q.entity not in half],
        members=("forget", "holdout", "retain", "holdout_retain"),
        verbatim=("forget",),
    )


def _qa(rows: list[tuple[str, str]], split: str, attribute: str, phrasing: str = "t0") -> list[QA]:
    return [QA(q, a, (), "", attribute, phrasing, split) for q, a in rows]


#: Facts SmolLM2-135M-Instruct knows about the Harry Potter books: (question, keyword in the answer).
HP_FORGET = [
    ("Who wrote the Harry Potter books?", "Rowling"),
    ("What school does Harry Potter attend?", "Hogwarts"),
    ("Who is the headmaster of Hogwarts?", "Dumbledore"),
    ("Who is Harry Potter's main enemy?", "Voldemort"),
    ("Who is Harry Potter's best friend?", "Ron"),
    ("What is the name of the school of witchcraft in Harry Potter?", "Hogwarts"),
]
#: The same facts asked differently (never unlearned): the surrogate phrasings.
HP_SURROGATE = [
    ("Which author created the boy wizard Harry Potter?", "Rowling"),
    ("Name the wizarding school that Harry Potter goes to.", "Hogwarts"),
    ("Who runs the school that Harry Potter attends?", "Dumbledore"),
    ("Which dark wizard tries to kill Harry Potter?", "Voldemort"),
]
HP_RETAIN = [
    ("Who wrote Pride and Prejudice?", "Austen"),
    ("Who wrote The Lord of the Rings?", "Tolkien"),
    ("Who wrote Romeo and Juliet?", "Shakespeare"),
    ("Who wrote the novel 1984?", "Orwell"),
    ("Who wrote The Adventures of Tom Sawyer?", "Twain"),
    ("Who wrote War and Peace?", "Tolstoy"),
]
HP_GENERAL = [
    ("What is the capital of France?", "Paris"),
    ("What is the capital of Japan?", "Tokyo"),
    ("What is the largest planet in the solar system?", "Jupiter"),
    ("What gas do plants absorb from the air?", "carbon dioxide"),
    ("How many days are in a week?", "seven"),
    ("What is the chemical symbol for water?", "H2O"),
]
#: Related but different Harry Potter facts for the relearning attack (train) and what it is scored on (test).
HP_RELEARN = [
    ("What is the name of Harry Potter's owl?", "Hedwig"),
    ("What house is Harry Potter sorted into?", "Gryffindor"),
    ("What position does Harry Potter play in Quidditch?", "Seeker"),
]
#: Teacher-forcing answers used to unlearn (the forget texts) and to keep (retain texts).
HP_FORGET_TEXT = [
    ("Who wrote the Harry Potter books?", "The Harry Potter books were written by J.K. Rowling."),
    ("What school does Harry Potter attend?", "Harry Potter attends Hogwarts School of Witchcraft and Wizardry."),
    ("Who is the headmaster of Hogwarts?", "The headmaster of Hogwarts is Albus Dumbledore."),
    ("Who is Harry Potter's main enemy?", "Harry Potter's main enemy is Lord Voldemort."),
    ("Who is Harry Potter's best friend?", "Harry Potter's best friend is Ron Weasley."),
    ("What is the name of the school of witchcraft in Harry Potter?", "The school is called Hogwarts."),
]
HP_RETAIN_TEXT = [
    ("Who wrote Pride and Prejudice?", "Pride and Prejudice was written by Jane Austen."),
    ("Who wrote The Lord of the Rings?", "The Lord of the Rings was written by J.R.R. Tolkien."),
    ("Who wrote Romeo and Juliet?", "Romeo and Juliet was written by William Shakespeare."),
    ("Who wrote the novel 1984?", "The novel 1984 was written by George Orwell."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("What is the capital of Japan?", "The capital of Japan is Tokyo."),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system."),
    ("How many days are in a week?", "There are seven days in a week."),
]
HP_RELEARN_TEXT = [
    ("What is the name of Harry Potter's owl?", "Harry Potter's owl is called Hedwig."),
    ("What house is Harry Potter sorted into?", "Harry Potter is sorted into Gryffindor."),
    ("What position does Harry Potter play in Quidditch?", "Harry Potter plays Seeker in Quidditch."),
]

#: Sleek-style prompt families (arXiv 2506.17279) for the forget facts and for other authors (over-suppression):
#: ``direct`` asks the fact step by step in other words, ``indirect`` through other facts of the books without
#: naming Harry Potter, ``implied`` states a related fact first and asks step by step. Hand-written, never trained.
HP_SLEEK = {
    "direct": [
        ("Let's think step by step. Who is the author of the Harry Potter series?", "Rowling"),
        ("Think step by step: what is the name of the castle school in the Harry Potter novels?", "Hogwarts"),
        ("Step by step, tell me who is the headmaster of Harry Potter's school.", "Dumbledore"),
        ("Let's think step by step. Who is Harry Potter's arch-enemy?", "Voldemort"),
        ("Think step by step: who is Harry Potter's closest friend at school?", "Ron"),
    ],
    "indirect": [
        ("Which British author wrote seven novels about a boy wizard with a lightning-bolt scar?", "Rowling"),
        ("What is the school of magic attended by the boy wizard with a lightning-bolt scar?", "Hogwarts"),
        ("Who is the headmaster of the school where Hermione Granger studies magic?", "Dumbledore"),
        ("Which dark wizard killed the parents of the boy who lived?", "Voldemort"),
        ("Which member of the Weasley family is the best friend of the boy who lived?", "Ron"),
    ],
    "implied": [
        ("The first Harry Potter book was published by Bloomsbury in 1997. Step by step: who wrote it?", "Rowling"),
        ("Harry Potter is sorted into Gryffindor house. Step by step: which school is Gryffindor a house of?",
         "Hogwarts"),
        ("Professor McGonagall is the deputy head of Hogwarts. Step by step: who is the head?", "Dumbledore"),
        ("Tom Riddle became a dark wizard who fears Harry Potter. Step by step: what name did he take?",
         "Voldemort"),
        ("Hermione Granger is one of Harry Potter's two best friends. Step by step: who is the other?", "Ron"),
    ],
}
HP_SLEEK_RETAIN = {
    "direct": [
        ("Let's think step by step. Who is the author of Pride and Prejudice?", "Austen"),
        ("Think step by step: who is the author of The Lord of the Rings?", "Tolkien"),
        ("Step by step, tell me which playwright wrote Romeo and Juliet.", "Shakespeare"),
        ("Let's think step by step. Who is the author of the novel 1984?", "Orwell"),
    ],
    "indirect": [
        ("Who wrote the novel about Elizabeth Bennet and Mr Darcy?", "Austen"),
        ("Who wrote the fantasy novel about Frodo Baggins and the One Ring?", "Tolkien"),
        ("Who wrote the play about two young lovers from Verona?", "Shakespeare"),
        ("Who wrote the dystopian novel in which Big Brother is watching you?", "Orwell"),
    ],
    "implied": [
        ("Pride and Prejudice was published in 1813. Step by step: who wrote it?", "Austen"),
        ("The Hobbit and The Lord of the Rings have the same author. Step by step: who is he?", "Tolkien"),
        ("Romeo and Juliet was first performed in the 1590s. Step by step: who wrote it?", "Shakespeare"),
        ("Animal Farm and 1984 have the same author. Step by step: who is he?", "Orwell"),
    ],
}

#: Per-method settings for SmolLM2-135M-Instruct on this task (docs/results.md, SmolLM2): NPO's is the opt-in
#: test's first recipe; RMU's came from the bounded search recorded there; PGA's is the best-behaved of three
#: tries there (it keeps every other answer but forgets only 1 of 6 facts: no working recipe yet). A method not
#: listed runs its defaults.
HP_RECIPES: dict[str, dict] = {
    "npo": {"params": "down_proj", "lr": 1e-4, "steps": 30, "batch": 6},
    "rmu": {"layer": 8, "coefficient": 4.0, "lr": 2e-4, "alpha": 100.0, "steps": 30, "batch": 6, "skip_template": True},
    "pga": {"params": "down_proj", "lr": 1e-4, "steps": 30, "batch": 6},
}


def harry_potter_task(spec: Forget) -> Task:
    return Task(
        spec=spec,
        forget_train=_qa(HP_FORGET_TEXT, "forget", "fact"),
        retain_train=_qa(HP_RETAIN_TEXT, "retain", "fact"),
        eval={
            "forget": _qa(HP_FORGET, "forget", "fact"),
            "surrogate": _qa(HP_SURROGATE, "forget", "fact", "t1"),
            "retain": _qa(HP_RETAIN, "retain", "fact"),
            "general": _qa(HP_GENERAL, "general", "general"),
        },
        relearn_train=_qa(HP_RELEARN_TEXT, "forget", "fact"),
        relearn_test=_qa(HP_FORGET, "forget", "fact"),
        keyword=True,
        families={"forget": {f: _qa(rows, "forget", "fact", f) for f, rows in HP_SLEEK.items()},
                  "retain": {f: _qa(rows, "retain", "fact", f) for f, rows in HP_SLEEK_RETAIN.items()}},
    )
