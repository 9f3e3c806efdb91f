"""Command groups of the `domainbot` CLI, one module per area."""
