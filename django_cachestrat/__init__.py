"""Redis caching strategies for Django models, correct under concurrency and failure."""

__version__ = "0.1.0"
