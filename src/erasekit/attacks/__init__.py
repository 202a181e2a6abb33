"""Attacks on erased models, one module each, registered in :data:`erasekit.attacks.base.ATTACKS`.

The registry imports every module of this package on first lookup: adding an attack is adding one
file; its ``order`` places it on the ladder (:func:`ladder`) and ``test_budget`` sizes its test.
"""

from erasekit.attacks.base import ATTACKS, AttackContext, AttackResult, attack_names, get_attack, ladder, run_attack

__all__ = ["ATTACKS", "AttackContext", "AttackResult", "attack_names", "get_attack", "ladder", "run_attack"]
