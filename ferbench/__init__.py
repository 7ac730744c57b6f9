"""ferbench: dynamic facial-expression recognition datasets, protocols, models and leaderboards."""

__version__ = "0.1.0"
