"""uft: realistic unsupervised fine-tuning of CLIP (Universal Entropy Optimization and friends)."""

__version__ = "0.1.0"
