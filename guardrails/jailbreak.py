"""Jailbreaks and prompt injection: override and persona framings, system-prompt requests, hidden payloads.

The rules run over the recent user turns joined together and over every decoded reading of them (see
`guardrails.text.variants`), so a payload split across turns or hidden in base64, hex or leetspeak is read
as a whole. Fragments in quotes or assigned to variables are also joined in order ("a='how to' b=...").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from guardrails.harmful import rule_findings
from guardrails.literals import prefilter_text
from guardrails.policy import JailbreakConfig, compile_pattern
from guardrails.text import Variant
from guardrails.verdict import Finding

# A quote mark inside a word ("let's") neither opens nor closes a fragment.
_QUOTED = re.compile(r"(?<!\w)[\"'`“”‘’]([^\"'`“”‘’\n]{1,80})[\"'`“”‘’](?!\w)")
_ASSIGNED = re.compile(r"\b[a-z_]\w{0,10}\s*[:=]\s*([^\s\"'`=][^\n;,]{0,60})")


class JailbreakDetector:
    def __init__(self, config: JailbreakConfig, intent: Sequence[str]) -> None:
        self.rules = {"jailbreak": config.rules}
        self.intent = [compile_pattern(p) for p in intent]
        self.follow_up = [compile_pattern(p) for p in config.follow_up]

    def check(self, variants: Sequence[Variant]) -> list[Finding]:
        return rule_findings(self.rules, variants, self.intent, rail="jailbreak")

    def builds_on_earlier(self, text: str) -> bool:
        """Whether a message refers back to the turns before it ("now act on it", "stay in character")."""
        folded = prefilter_text(text)
        return any(p.search(text, folded) for p in self.follow_up)


def fragments(text: str) -> list[Variant]:
    """Quoted or assigned fragments joined in order (with and without spaces), when there are several."""
    parts = [m.group(1).strip() for m in _QUOTED.finditer(text)]
    if len(parts) < 2:
        parts = [m.group(1).strip() for m in _ASSIGNED.finditer(text)]
    if len(parts) < 2:
        return []
    return [Variant("fragments", " ".join(parts)), Variant("fragments", "".join(parts))]
