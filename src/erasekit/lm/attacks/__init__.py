"""Language-model attacks, one module each, registered in :data:`erasekit.lm.attacks.base.LM_ATTACKS`
(the registry imports every module here on first lookup)."""
