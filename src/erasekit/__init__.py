"""erasekit: erase concepts from generative models, attack the result, audit it."""

__version__ = "0.1.0"
