"""The project's own guardrail evaluation sets (YAML), shipped so operators can rerun them."""
