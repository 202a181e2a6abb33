"""Evaluation metrics, one module each, registered in :data:`erasekit.metrics.base.METRICS`."""

from erasekit.metrics import alignment, cost, efficacy, nudenet, quality, retention  # noqa: F401
from erasekit.metrics.base import METRICS, Answers, EvalPrompt, Metric, Value, get_metric, metric_names

__all__ = ["METRICS", "Answers", "EvalPrompt", "Metric", "Value", "get_metric", "metric_names"]
