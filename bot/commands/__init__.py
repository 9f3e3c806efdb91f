"""Command groups of the `domainbot` command line, one module per part of the product."""
