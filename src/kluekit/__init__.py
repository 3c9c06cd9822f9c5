"""kluekit: train, evaluate, predict with and serve transformer models for Korean NLU (KLUE)."""

__version__ = "0.1.0"
