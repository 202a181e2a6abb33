"""Attacks on erased models, one module each, registered in :data:`erasekit.attacks.base.ATTACKS`."""

from erasekit.attacks import arithmetic, discrete, embedding, finetune, inversion, latent, paraphrase  # noqa: F401
from erasekit.attacks.base import ATTACKS, AttackContext, AttackResult, attack_names, get_attack, run_attack

#: in the issue's order of value per cost
ORDER = ("paraphrase", "arithmetic", "embedding", "discrete", "inversion", "latent", "finetune")

__all__ = ["ATTACKS", "AttackContext", "AttackResult", "ORDER", "attack_names", "get_attack", "run_attack"]
