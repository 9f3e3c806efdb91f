"""Jailbreaks and prompt injection: override and persona framings, system-prompt requests, hidden payloads.

The rules run over the recent user turns joined together and over every decoded reading of them (see
`guardrails.text.variants`), so a payload split across turns or hidden in base64, hex or leetspeak is read
as a whole. Fragments in quotes or assigned to variables are also joined in order ("a='how to' b=...").

Long pasted texts get two more checks. The middle of a text that the rules' head-and-tail cut leaves out is
read too, in plain text, because instructions hidden in a long document sit anywhere. And the whole text is
weighed for the traits of a jailbreak template (a persona, a penalty for refusing, "stay in character", a
note addressed to the model...): each is common alone, several together are a template.
Sentences that quote or describe an attack ("phrases like 'ignore previous instructions'") are left out of
all of this, so a question about jailbreaks or a pasted security article is not taken for one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from guardrails.harmful import rule_findings
from guardrails.literals import any_match, prefilter_text
from guardrails.policy import JailbreakConfig, compile_pattern
from guardrails.text import Variant, decoded_payload, fold, unread_middle, variants
from guardrails.verdict import Finding

# A quote mark inside a word ("let's", "won't") neither opens nor closes a fragment.
_QUOTED = re.compile(r"(?<!\w)[\"'`“”‘’]((?:[^\"'`“”‘’\n]|(?<=\w)['’](?=\w)){1,80})[\"'`“”‘’](?!\w)")
_ASSIGNED = re.compile(r"\b[a-z_]\w{0,10}\s*[:=]\s*([^\s\"'`=][^\n;,]{0,60})")
# In the middle of a long text, only sentences that speak to someone or about the model are read: an
# instruction to the model says "you", "your", "assistant", "prompt"... and plain prose mostly does not,
# which keeps a long paste cheap.
_ADDRESSED = re.compile(
    r"\b(?:you|your|yourself|assistant|ai|llm|gpt|model|chatbot|bot|system|prompt|instructions?|rules|mode)\b",
    re.IGNORECASE,
)
# Sentences for the mention check: ended by . ! ? and a space, a blank line, or a new list item or heading
# (pasted text is often wrapped, so a single line break does not end one).
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n\s*\n|\n(?=\s*(?:[-*•#>|]|\d+[.)]\s))")


class JailbreakDetector:
    def __init__(self, config: JailbreakConfig, intent: Sequence[str]) -> None:
        self.rules = {"jailbreak": config.rules}
        # Where a payload was decoded, its reading is judged by every rule: a request to decode it stands aside.
        stand_aside = set(config.stand_aside_when_decoded)
        self.rules_when_decoded = {"jailbreak": [r for r in config.rules if r.name not in stand_aside]}
        self.intent = [compile_pattern(p) for p in intent]
        self.follow_up = [compile_pattern(p) for p in config.follow_up]
        self.triggers = [compile_pattern(p) for p in config.triggers]
        self.mentions = [compile_pattern(p) for p in config.mentions]
        self.template = config.template
        self.template_weight = config.template_weight

    def check(self, readings: Sequence[Variant], raw: str | None = None) -> list[Finding]:
        """Rule findings on the readings of `raw` (the text they were made from); when `raw` has sentences
        that merely mention an attack, on the readings of the rest of it instead."""
        if raw is not None:
            kept = self.without_mentions(raw)
            if kept != raw:
                readings = [*variants(kept), *fragments(fold(kept))]
        decoded = decoded_payload(readings) is not None
        return rule_findings(self.rules_when_decoded if decoded else self.rules, readings, self.intent, "jailbreak")

    def check_long(self, text: str, scan_chars: int) -> list[Finding]:
        """The checks for long pasted texts (see the module docstring): the rules over the part of `text`
        that a cut to `scan_chars` leaves out, and the template weight over all of it."""
        kept = self.without_mentions(text)
        found = []
        middle = " ".join(s for s in _SENTENCES.split(unread_middle(kept, scan_chars)) if _ADDRESSED.search(s))
        if middle:
            found = [
                f.model_copy(update={"rule": f"{f.rule}@middle"})
                for f in rule_findings(self.rules, [Variant("plain", fold(middle))], self.intent, "jailbreak")
            ]
        template = self.template_finding(fold(kept))
        return [*found, template] if template else found

    def template_finding(self, folded: str) -> Finding | None:
        """A finding when the template traits present in `folded` weigh `template_weight` or more."""
        if not self.template:
            return None
        lowered = prefilter_text(folded)
        traits = [s for s in self.template if s.compiled.search(folded, lowered)]
        weight = sum(s.weight for s in traits)
        if weight < self.template_weight:
            return None
        names = "+".join(s.name for s in traits)
        return Finding(rail="jailbreak", rule=f"jailbreak.template({names})", category="jailbreak", score=1.0)

    def without_mentions(self, raw: str) -> str:
        """`raw` without the sentences that quote or describe an attack; `raw` itself when there are none."""
        # A pattern that matches in no sentence matches nowhere in the whole text either (sentences are split
        # at white space), so one pass over the whole text finds the few patterns worth trying per sentence.
        folded = fold(raw)
        present = [m for m in self.mentions if m.search(folded)]
        if not present:
            return raw
        sentences = _SENTENCES.split(raw)
        kept = [s for s in sentences if not any(m.search(fold(s)) for m in present)]
        return "\n".join(kept) if len(kept) < len(sentences) else raw

    def builds_on_earlier(self, text: str, earlier: Sequence[str] = ()) -> bool:
        """Whether a message refers back to the turns before it ("now act on it", "stay in character"), or
        uses a trigger word one of them set ("whenever I write 'lantern', ...")."""
        return any_match(self.follow_up, text) or any(_uses(word, text) for word in self.trigger_words(earlier))

    def trigger_words(self, turns: Sequence[str]) -> list[str]:
        """The trigger words that `turns` (folded) set."""
        return [
            m.group("word").strip()
            for turn in turns
            for trigger in self.triggers
            if trigger.could_match(turn)
            for m in trigger.regex.finditer(turn)
            if m.group("word").strip()
        ]


def _uses(word: str, text: str) -> bool:
    """Whether `text` has `word` as a word of its own (not inside a longer one, in Latin script)."""
    return re.search(rf"(?<![a-z0-9]){re.escape(word)}(?![a-z0-9])", text) is not None


def fragments(text: str) -> list[Variant]:
    """Quoted or assigned fragments joined in order (with and without spaces, and as written, where a piece
    that starts or ends inside a word carries its own space: 'how to synth' + 'esize it' + ' at home'), when
    there are several."""
    raw = [m.group(1) for m in _QUOTED.finditer(text)]
    if len(raw) < 2:
        raw = [m.group(1) for m in _ASSIGNED.finditer(text)]
    if len(raw) < 2:
        return []
    parts = [part.strip() for part in raw]
    joined = [" ".join(parts), "".join(parts), "".join(raw)]
    return [Variant("fragments", reading) for reading in dict.fromkeys(joined)]
