"""Importing this package registers every language-model metric."""

from erasekit.lm.metrics import forget, privacy, utility  # noqa: F401
