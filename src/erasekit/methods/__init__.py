"""Erasure methods, one module each, registered in :data:`erasekit.erasure.METHODS` on import."""

from erasekit.methods import esd, negative_prompt, rece, sld, uce  # noqa: F401

MODULES = ("esd", "negative_prompt", "rece", "sld", "uce")
