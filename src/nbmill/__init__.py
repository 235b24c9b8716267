"""nbmill: pipelines of parameterised notebooks, every run kept as a reviewable record."""

__version__ = "0.1.0"
