"""The structured result every rail returns: what happened, which rule decided it, and the text to pass on."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Action = Literal["allowed", "blocked", "masked"]


class Finding(BaseModel):
    """One thing a detector noticed; several findings can lead to one verdict."""

    rail: str = Field(description="Detector that produced it: harmful, jailbreak, pii, topical.")
    rule: str = Field(description="Name of the rule, pattern or classifier that fired.")
    category: str | None = Field(
        default=None, description="Policy category, or the PII kind for the pii rail."
    )
    score: float = Field(default=1.0, description="Strength in [0, 1]; 1 for a rule match.")
    start: int | None = Field(default=None, description="Start offset in the checked text (PII only).")
    end: int | None = Field(default=None, description="End offset in the checked text (PII only).")


class Verdict(BaseModel):
    """Outcome of one rail. The caller passes on `masked_text`, never the raw text, and shows `message`."""

    action: Action
    rail: str | None = Field(
        default=None, description="Rail that decided a block or mask; None when allowed."
    )
    rule: str | None = None
    category: str | None = None
    score: float = 0.0
    message: str | None = Field(
        default=None, description="What to tell the user (refusal, redirect or warning)."
    )
    masked_text: str = Field(
        default="", description="The checked text with personal data masked (and truncated)."
    )
    truncated: bool = Field(
        default=False, description="True when the text was longer than the policy's limit."
    )
    findings: list[Finding] = Field(default_factory=list)

    @property
    def allowed(self) -> bool:
        """True when the text may go on (possibly masked)."""
        return self.action != "blocked"

    def to_json_dict(self) -> dict[str, object]:
        """A JSON-ready dict that also carries `allowed`."""
        return {"allowed": self.allowed, **self.model_dump()}
