"""Topical scope: questions far from every in-scope example get a polite redirect, a warning, or pass."""

from __future__ import annotations

import re

import numpy as np

from guardrails.policy import TopicalConfig
from guardrails.verdict import Finding
from knowledge.embedder import Embedder

# Greetings and thanks are never off-topic, however far they are from the domain.
_SMALL_TALK = re.compile(
    r"^\W*(?:hi|hello|hey|thanks|thank you|good (?:morning|afternoon|evening)|bye|goodbye|ok|okay|"
    r"안녕\w*|감사\w*|고마워\w*|잘 ?가)\W*$",
    re.IGNORECASE,
)


class TopicalDetector:
    def __init__(self, config: TopicalConfig, embedder: Embedder | None) -> None:
        self.config = config
        self._examples: np.ndarray | None = None
        if embedder is not None and config.mode != "allow" and config.examples:
            self._examples = embedder.embed(config.examples)  # (E, D)

    @property
    def active(self) -> bool:
        return self._examples is not None

    def check(self, text: str, vector: np.ndarray) -> Finding | None:
        """A finding when `text` (embedded as `vector`) is off-topic; None when in scope or inactive."""
        if self._examples is None or _SMALL_TALK.match(text):
            return None
        similarity = float(np.max(self._examples @ vector))
        if similarity >= self.config.threshold:
            return None
        return Finding(
            rail="topical",
            rule=f"topical.{self.config.mode}",
            category="off_topic",
            score=round(similarity, 4),
        )
