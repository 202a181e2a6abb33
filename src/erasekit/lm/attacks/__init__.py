"""Importing this package registers every language-model attack."""

from erasekit.lm.attacks import paraphrase, probe, quantize, relearn  # noqa: F401
