"""Language-model metrics, one module each, registered in :data:`erasekit.lm.metrics.base.LM_METRICS`
(the registry imports every module here on first lookup)."""
