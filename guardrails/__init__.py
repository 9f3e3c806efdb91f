"""Guardrails: policy, detectors, and the input and output rails."""
