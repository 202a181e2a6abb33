"""Evaluation metrics, one module each, registered in :data:`erasekit.metrics.base.METRICS`.

The registry imports every module of this package on first lookup: adding a metric is adding one file."""


from erasekit.metrics.base import METRICS, Answers, EvalPrompt, Metric, Value, get_metric, metric_names

__all__ = ["METRICS", "Answers", "EvalPrompt", "Metric", "Value", "get_metric", "metric_names"]
