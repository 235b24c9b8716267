"""The example model nbmill ships with: Ridge regression on scikit-learn's diabetes data.

A team replaces this package with its own; nbmill itself does not depend on it.
"""
