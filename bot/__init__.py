"""veille: a news-monitoring alert bot."""

__version__ = "0.1.0"
