"""Guardrails built three ways: the shipped embedder (once per session), the hash fake, rules only."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from guardrails import Guardrails, Policy, load_policy
from knowledge.embedder import HashEmbedder


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy()


@pytest.fixture(scope="session")
def real_guard(policy: Policy) -> Iterator[Guardrails]:
    """The rails as the product runs them: all-MiniLM-L6-v2 from its wheel (skipped when not installed)."""
    torch = pytest.importorskip("torch")
    from knowledge.embedder import SentenceTransformerEmbedder

    try:
        embedder = SentenceTransformerEmbedder()
    except FileNotFoundError as exc:
        pytest.skip(f"shipped embedder not installed: {exc}")
    threads = torch.get_num_threads()
    # Single short texts: one thread is several times faster than two on a busy two-core machine.
    torch.set_num_threads(1)
    yield Guardrails(policy, embedder)
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def rules_guard(policy: Policy) -> Guardrails:
    return Guardrails(policy, embedder=None)


@pytest.fixture(scope="session")
def hash_guard(policy: Policy) -> Guardrails:
    return Guardrails(policy, HashEmbedder())
