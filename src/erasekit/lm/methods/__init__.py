"""Language-model unlearning methods, one module each, registered in
:data:`erasekit.lm.methods.base.LM_METHODS` (the registry imports every module here on first lookup)."""
