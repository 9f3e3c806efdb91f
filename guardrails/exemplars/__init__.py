"""Exemplar texts for the embedding classifier (YAML data, shipped with the package)."""
