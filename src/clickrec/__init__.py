"""clickrec: a self-hosted engine for real-time clickstream personalization."""

__version__ = "0.1.0"
