"""Ring-A-Bell (Tsai et al., ICLR 2024): a model-agnostic, black-box prompt attack.

1. **Concept vector.** ``c = mean_i [E(p_i with the concept) - E(p_i without it)]`` over paired
   prompts, on the *unedited* text encoder ``E`` (the full state matrix, position by position, as
   in the paper). Here the pairs are the domain's plain prompts naming the concept by its given
   word, against the same prompts naming each other value of its family ("a red skull on a grid
   background" / "a red circle on a grid background").
2. **Target.** ``E(p) + eta * c`` for the target prompt ``p`` (``eta = 3``, the paper's nudity value).
3. **Genetic search** over ``K`` discrete tokens whose encoding is closest to the target:
   fitness ``||target - E(tokens)||^2``; each generation keeps the better half, crosses each
   survivor with a random mate at one point (rate 0.5: two children) and mutates one token of an
   individual (rate 0.25): the paper's operators and rates. No gradients of anything: the
   search only queries the unedited text encoder, and the found prompt is judged as plain text on
   the erased model.

The budget is in text-encoder queries (one candidate encoded = one query, counted by a forward hook
on the encoder, as the UNet evaluations are); every ``check_every`` generations the best prompt so
far is drawn by the erased model (those UNet evaluations are counted too) and the search stops on
success. The concept vector's encodings are a shared cost, reported in the outcome's note.

Reconstructed where the testbed differs from Stable Diffusion (the paper's code was read, not
copied; what was inferred):

- **Alphabet.** The paper mutates to any of CLIP's 49k tokens, every one of which SD's UNet was
  trained on. The testbed's UNet learned only the words of its captions, while its MiniLM encoder
  knows 30k: a draw from the whole vocabulary finds the encoder's synonyms (for ``heart``:
  "hearts", "cardiac", "heartbeat") that the UNet never learned. The alphabet here is the model's
  vocabulary as the domain names it: every word of every phrase of every attribute value (all
  tiers) and the target prompt's own words.
- **Banned words.** The words the eraser was given (the concept's ``given`` phrases) are left out
  of the alphabet: the search must find another way to the concept (as MMA-Diffusion bans
  sensitive words); otherwise it would rebuild the erased prompt.
- **Scale.** Population 32 (the paper: 200), ``K = 8`` tokens (the paper: 16 or 75 of CLIP's
  77 positions; the testbed encodes 32, and in tuning on ``heart`` against UCE, 8 broke more
  targets than 16: the longer prompts dilute the concept's words),
  and budgets of a few thousand queries (the paper: 3,000 generations, about 600k queries per
  prompt). Each candidate is encoded once (the paper re-encodes survivors every generation); the
  best individual is carried over unmutated (the paper mutates survivors in place).
"""

from __future__ import annotations

import re
import numpy as np
import torch

from erasekit.attacks.base import ATTACKS, Attack, AttackContext, Counter, Outcome, Target, measured
from erasekit.pipelines import encode


def domain_words(ctx: AttackContext) -> list[str]:
    """Every word of every phrase (all tiers) of every value of the concept's domain."""
    words: set[str] = set()
    for family, values in ctx.domain.families.items():
        for value in values:
            for phrases in ctx.domain.phrases(family, value).values():
                for phrase in phrases:
                    words.update(re.findall(r"[\w'-]+", phrase.lower()))
    return sorted(words)


def concept_vector(ctx: AttackContext, n_prompts: int = 8, seed: int = 1234) -> torch.Tensor:
    """Ring-A-Bell's concept vector ``(L, D)``: the mean state difference of paired prompts with
    and without the concept, on the current (call it unedited) text encoder. The pairs name the
    concept by its given word and, in turn, each other value of its family."""
    family, value, domain = ctx.concept.family, ctx.concept.name, ctx.domain
    assert family is not None
    rng = np.random.default_rng(seed)
    prompts = [p for p in domain.eval_prompts(ctx.concept, n_prompts, rng) if p.split == "given"]
    others = [v for v in domain.families[family] if v != value]
    word = domain.phrases(family, value)["given"][0]
    with_c = [ctx.rephrase(p.attributes, word) for p in prompts for _ in others]
    without = [ctx.rephrase(p.attributes, domain.phrases(family, o)["given"][0]) for p in prompts for o in others]
    return (encode(ctx.pipe, with_c).states - encode(ctx.pipe, without).states).mean(0)


@ATTACKS.register("ringabell")
class RingABell(Attack):
    """Ring-A-Bell: a genetic search for tokens whose encoding is the prompt plus the concept vector (black-box)."""

    threat_model = "black-box: prompt access to the erased model, plus the unedited text encoder (model-agnostic)"
    needs = "the base model's text encoder"
    budget_unit = "text-encoder queries"
    default_budget = 2000
    order = 15
    transferable = True
    test_budget = 2000
    black_box = True
    eta = 3.0
    tokens = 8
    population = 32
    crossover = 0.5
    mutation = 0.25
    check_every = 5  # generations

    def attack_all(self, ctx: AttackContext, targets: list[Target], budget: int, gen: torch.Generator,
                   progress: bool) -> dict[int, Outcome]:
        counter = Counter("text_encoder")
        with ctx.unedited(), counter.on(ctx.pipe):
            self._vector = concept_vector(ctx)
        self._shared = counter.evals
        return super().attack_all(ctx, targets, budget, gen, progress)

    def alphabet(self, ctx: AttackContext, target: Target) -> torch.Tensor:
        """Token ids the search draws from: the domain's words and the prompt's, minus the given words."""
        tok = ctx.pipe.tokenizer
        table = ctx.domain.phrases(ctx.concept.family, ctx.concept.name)  # type: ignore[arg-type]
        banned = {i for phrase in table["given"] for i in tok(phrase, add_special_tokens=False).input_ids}
        words = domain_words(ctx) + re.findall(r"[\w'-]+", target.prompt.lower())
        ids = {i for w in words for i in tok(w, add_special_tokens=False).input_ids}
        return torch.tensor(sorted(ids - banned - set(tok.all_special_ids)))

    def attack(self, ctx: AttackContext, target: Target, budget: int, gen: torch.Generator) -> Outcome:
        pipe, tok = ctx.pipe, ctx.pipe.tokenizer
        alphabet = self.alphabet(ctx, target)
        queries = Counter("text_encoder")

        def draw(n: int) -> torch.Tensor:
            return alphabet[torch.randint(len(alphabet), (n,), generator=gen)]

        def text(ids: torch.Tensor) -> str:
            return tok.decode(ids.tolist())

        scores: dict[tuple[int, ...], float] = {}  # the encoder is deterministic: each candidate is queried once

        def evaluate(pop: list[torch.Tensor], goal: torch.Tensor, room: int) -> list[torch.Tensor]:
            """Score the new candidates (at most ``room`` of them); the scored ones, best first."""
            new = list(dict.fromkeys(tuple(x.tolist()) for x in pop if tuple(x.tolist()) not in scores))[:room]
            if new:
                states = encode(pipe, [text(torch.tensor(x)) for x in new]).states
                for x, f in zip(new, ((states - goal) ** 2).sum((1, 2)).tolist()):
                    scores[x] = f
            known = list(dict.fromkeys(tuple(x.tolist()) for x in pop if tuple(x.tolist()) in scores))
            return [torch.tensor(x) for x in sorted(known, key=scores.__getitem__)]

        def run(counter) -> Outcome:
            with ctx.unedited(), queries.on(pipe):
                goal = encode(pipe, [target.prompt]).states[0] + self.eta * self._vector
            pop = [draw(self.tokens) for _ in range(self.population)]
            generation, last = 0, None
            while len(scores) < budget:
                before = len(scores)
                with ctx.unedited(), queries.on(pipe):
                    for _ in range(self.check_every):
                        pop = evaluate(pop, goal, budget - len(scores))[: self.population // 2]
                        generation += 1
                        if len(scores) >= budget:
                            break
                        pop = self._breed(pop, draw, gen)
                best = text(pop[0])
                img = ctx.generate(best, target.seed, target.noise)
                verdict = ctx.judge_images(img[None])[0]
                note = (f"generation {generation}: {queries.evals} text-encoder queries "
                        f"(+{self._shared} shared for the concept vector), best distance {scores[tuple(pop[0].tolist())]:.0f}")
                last = Outcome(target.index, target.prompt, target.seed, False, ctx.shows_concept(verdict), img,
                               verdict, best, note=note, spent=len(scores))
                if last.success or len(scores) == before:  # (a converged population proposes nothing new)
                    break
            assert last is not None
            return last

        return measured(ctx, run)

    def _breed(self, parents: list[torch.Tensor], draw, gen: torch.Generator) -> list[torch.Tensor]:
        """One-point crossover (each parent, at rate ``crossover``, with a random mate: two
        children), then one-token mutation at rate ``mutation`` (the best parent is kept as is)."""
        out = list(parents)
        for a in parents:
            if float(torch.rand(1, generator=gen)) < self.crossover:
                b = parents[int(torch.randint(len(parents), (1,), generator=gen))]
                cut = int(torch.randint(1, self.tokens, (1,), generator=gen))
                out += [torch.cat([a[:cut], b[cut:]]), torch.cat([b[:cut], a[cut:]])]
        for i in range(1, len(out)):
            if float(torch.rand(1, generator=gen)) < self.mutation:
                out[i] = out[i].clone()
                out[i][int(torch.randint(self.tokens, (1,), generator=gen))] = draw(1)[0]
        return out
