"""Explainers: a short text for a verdict, from the evidence itself or from a vision-language model."""
