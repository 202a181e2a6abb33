"""``erasekit sae train``: train the sparse autoencoder ItD reads, on a text encoder's token states."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from erasekit.cli import args as A
from erasekit.cli import paths as P
from erasekit.cli.args import UsageError


def _prompts(args: argparse.Namespace) -> tuple[list[str], object]:
    """The corpus (``--prompts`` lines, then each ``--concept``'s erase and preserve prompts) and the
    domain whose pipeline to load."""
    from erasekit.concepts import get_concept
    from erasekit.domain import domain_of

    prompts: list[str] = []
    if args.prompts is not None:
        try:
            prompts = [line.strip() for line in Path(args.prompts).read_text().splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--prompts {args.prompts}: cannot read it ({type(exc).__name__}); give a UTF-8 text "
                             "file with one prompt per line") from None
        if not prompts:
            raise UsageError(f"--prompts {args.prompts} holds no prompt; give one prompt per line")
    domain = None
    for name in args.concept:
        concept = get_concept(name)
        prompts += concept.erase_prompts() + list(concept.preserve)
        domain = domain or domain_of(concept)
    if not prompts:
        raise UsageError("give the prompts to train on: --prompts FILE (one per line) and/or --concept NAME")
    return prompts, domain


def cmd_sae_train(args: argparse.Namespace) -> None:
    from erasekit.methods.itd import train_text_sae
    from erasekit.sae import SAEConfig, save_sae

    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise UsageError(f"--out {out}: name a new .safetensors file, such as sae.safetensors")
    if out.exists():
        raise UsageError(f"--out {out} already exists; choose a new file")
    P.check_writable_dir(out.parent)
    config = SAEConfig(n_dirs=args.dirs, k=args.k, steps=args.steps, seed=args.seed)
    prompts, domain = _prompts(args)
    A.check_model_args(args)
    pipe = A.load_pipeline(args.weights, domain)
    t0 = time.perf_counter()
    sae, meta = train_text_sae(pipe, prompts, args.layer, config)
    save_sae(sae, out, meta)
    print(f"trained a {config.n_dirs}-latent SAE (k {config.k}) on {meta['tokens']} token states of text-encoder "
          f"layer {meta['layer']} ({len(prompts)} prompts) in {time.perf_counter() - t0:.1f} s; normalised MSE "
          f"{meta['normalised_mse']:.4f}; saved to {out} (use it: erasekit erase --method itd --set sae={out} ...)")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sae = sub.add_parser("sae", help="sparse autoencoders on text-encoder states (for ItD)")
    ssub = sae.add_subparsers(dest="sae_command", required=True, parser_class=A.Parser)
    tr = ssub.add_parser("train", help="train a TopK sparse autoencoder on a text encoder's token states")
    tr.add_argument("--out", required=True, help="new .safetensors file for the autoencoder")
    tr.add_argument("--prompts", default=None, help="text file, one training prompt per line")
    tr.add_argument("--concept", action="append", default=[],
                    help="also train on this concept's erase and preserve prompts (repeatable)")
    tr.add_argument("--layer", type=int, default=None,
                    help="text-encoder layer, 0-based (default: the one at 2/3 of the depth)")
    tr.add_argument("--dirs", type=A.positive, default=2048, help="latents (default 2048)")
    tr.add_argument("--k", type=A.positive, default=16, help="active latents per token (default 16)")
    tr.add_argument("--steps", type=A.positive, default=1000, help="Adam steps (default 1000)")
    tr.add_argument("--seed", type=A.seed, default=0, help="random seed (default 0)")
    tr.add_argument("--weights", default=None, help="testbed weights or a local diffusers pipeline folder")
    tr.set_defaults(func=cmd_sae_train)
