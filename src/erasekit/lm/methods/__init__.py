"""Importing this package registers every language-model unlearning method."""

from erasekit.lm.methods import abliteration, graddiff, leace, npo, rmu, simnpo  # noqa: F401
