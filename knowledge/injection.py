"""Spot text written to steer a language model ("ignore previous instructions…") inside documents.

Documents are data, never instructions. Passages that look like instructions to the model are flagged so the
answer pipeline can quote them as untrusted text; a document made mostly of them is refused at ingest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INJECTION_RULES: dict[str, re.Pattern[str]] = {
    name: re.compile(pattern, re.IGNORECASE)
    for name, pattern in {
        "ignore-instructions": r"\b(ignore|disregard|forget|override)\b.{0,40}\b"
        r"(previous|prior|above|earlier|all|any|your|the)\b.{0,30}\b(instructions?|directions?|rules|prompts?|guidelines|context)\b",
        "role-override": r"\byou are (now|no longer) (an?|the|my|in)\b|\bfrom now on,? you (are|will|must)\b|"
        r"\bact as (an?|the) (unfiltered|unrestricted|jailbroken)\b|\b(enable|enter) developer mode\b",
        "system-prompt": r"\b(reveal|print|show|repeat|output)\b.{0,30}\b(system prompt|hidden instructions|"
        r"initial instructions)\b|\bnew (system )?instructions?:",
        "chat-markup": r"<\|im_start\|>|<\|system\|>|\[/?INST\]|<<SYS>>|^\s*(system|assistant)\s*:",
        "hide-from-user": (
            r"\b(do not|don't|never) (tell|inform|mention (this )?to|reveal (this )?to) the user\b"
        ),
        "korean-ignore": (
            r"(이전|앞의|위의|기존)\s*(의\s*)?(모든\s*)?(지시|명령|지침|규칙|프롬프트)\S*"
            r"\s*(을|를)?\s*(모두\s*)?무시"
        ),
        "korean-role": r"(너는|당신은)\s*이제|시스템\s*프롬프트\S*\s*(을|를)?\s*(출력|공개|보여)",
    }.items()
}
SENTENCE = re.compile(r"[^.!?。\n]+[.!?。]?")
# A document whose instruction-like sentences hold at least this share of its text is refused.
MAX_INJECTION_SHARE = 0.5


@dataclass(frozen=True)
class InjectionScan:
    rules: tuple[str, ...]
    share: float
    """Share of the text's characters in sentences that match a rule."""

    @property
    def suspected(self) -> bool:
        return bool(self.rules)


def scan(text: str) -> InjectionScan:
    rules: set[str] = set()
    flagged = total = 0
    for match in SENTENCE.finditer(text):
        sentence = match.group().strip()
        if not sentence:
            continue
        total += len(sentence)
        hits = {name for name, rule in INJECTION_RULES.items() if rule.search(sentence)}
        if hits:
            rules |= hits
            flagged += len(sentence)
    return InjectionScan(tuple(sorted(rules)), flagged / total if total else 0.0)
