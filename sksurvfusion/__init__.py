"""Multi-modal survival prediction from foundation-model embeddings."""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
