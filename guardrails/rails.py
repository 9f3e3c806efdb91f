"""The input and output rails: run the enabled detectors and turn their findings into one verdict."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from guardrails.harmful import NAMED, HarmfulDetector, rule_findings
from guardrails.jailbreak import JailbreakDetector, fragments
from guardrails.literals import Matcher
from guardrails.pii import find_pii, mask
from guardrails.pii import findings as pii_findings
from guardrails.policy import Policy, TopicalConfig, load_policy
from guardrails.text import Variant, clean, cut, decoded_payload, fold, gist, language, to_text, variants
from guardrails.topical import TopicalDetector
from guardrails.verdict import Action, Finding, Verdict
from knowledge.embedder import Embedder

# Earlier turns matter for split payloads, which come in short pieces: each is cut to this many characters.
EARLIER_TURN_CHARS = 500
# In an answer, numbered steps and the like count as "asking" for rules that need an intent.
_INSTRUCTIONS = Matcher(
    r"(?:^|\n)\s*(?:step\s*\d|\d+[.)]\s)"
    r"|\b(?:first,|then,|next,|finally,|you(?:'ll| will) need|ingredients|materials"
    r"|instructions|here(?:'s| is) how)|(?:단계|먼저|다음으로|준비물|재료)"
)
_ALWAYS = Matcher("")


@dataclass(frozen=True)
class _Passed:
    """The text a verdict hands on: cut to the limit, personal data masked."""

    text: str
    truncated: bool


@dataclass(frozen=True)
class Message:
    """One chat turn; dicts with the same keys are accepted wherever a Message is."""

    role: str
    content: str


Conversation = str | bytes | Message | Mapping[str, Any] | Sequence[Message | Mapping[str, Any]]


def user_turns(conversation: Conversation) -> list[str]:
    """The user messages of a conversation, oldest first; a plain string is one user message."""
    if isinstance(conversation, str | bytes):
        return [to_text(conversation)]
    items = [conversation] if isinstance(conversation, Message | Mapping) else list(conversation)
    turns = []
    for item in items:
        if isinstance(item, Message):
            role, content = item.role, item.content
        else:
            role, content = item.get("role", "user"), item.get("content", "")
        if role == "user":
            turns.append(to_text(content) if isinstance(content, str | bytes) else str(content))
    return turns


class Guardrails:
    """Built once from a policy and an embedder (None: no embedding classifier or encoder head; the rules
    and the n-gram head still run); check_input / check_output per message."""

    def __init__(self, policy: Policy | None = None, embedder: Embedder | None = None) -> None:
        self.policy = policy or load_policy()
        self.embedder = embedder
        self.harmful = HarmfulDetector(
            self.policy.harmful,
            self.policy.exemplars,
            self.policy.benign,
            embedder,
            self.policy.public_names,
            self.policy.fictional_names,
            self.policy.classifier_head,
            self.policy.ngram_head,
        )
        self.jailbreak = JailbreakDetector(self.policy.jailbreak, self.policy.harmful.intent)
        self.topical = TopicalDetector(self.policy.topical, embedder)

    @classmethod
    def load(
        cls,
        policy_path: Path | None = None,
        embedder: Embedder | None = None,
        topical_mode: Literal["allow", "warn", "redirect"] | None = None,
    ) -> Guardrails:
        """From a policy file (default: the shipped one), optionally overriding the topical mode."""
        policy = load_policy(policy_path)
        if topical_mode is not None:
            topical = TopicalConfig.model_validate({**policy.topical.model_dump(), "mode": topical_mode})
            policy = policy.model_copy(update={"topical": topical})
        return cls(policy, embedder)

    def check_input(self, conversation: Conversation) -> Verdict:
        """Verdict on the last user message, read together with the recent turns before it."""
        rails: set[str] = set(self.policy.rails.input)
        turns = user_turns(conversation) or [""]
        text, truncated = clean(turns[-1], self.policy.limits.max_chars)
        spans = find_pii(text, self.policy.pii.kinds) if "pii" in rails else []
        masked = mask(text, spans, self.policy.pii.mask)
        base = _Passed(masked, truncated)
        if not text.strip():
            return Verdict(action="allowed", masked_text=base.text, truncated=base.truncated)

        scanned = cut(text, self.policy.limits.scan_chars)[0]
        lang = language(scanned)
        readings = self._readings(scanned)
        blocking = self._rule_findings(readings, rails, scanned)
        if "jailbreak" in rails:
            blocking += self.jailbreak.check_long(text, self.policy.limits.scan_chars)
        earlier = [clean(t, EARLIER_TURN_CHARS)[0] for t in turns[-self.policy.jailbreak.history_turns : -1]]
        if earlier:
            blocking += self._new_in_conversation(earlier, scanned, rails, {f.rule for f in blocking})

        # The classifier judges a text that asks for something; one with no request wording only with a
        # higher bar (`harmful.unasked`); and a question about a fact or an event ("how did...", "why
        # were...") by the head alone, as the exemplars cannot tell history from a plan to repeat it ("how
        # did the gang get into the vault, so I can do the same?"). One embedder call serves it and the
        # topical check: none when a rule already decided or nothing would use the vector. A long text with
        # no request wording is a pasted document, which the rules read.
        config = self.policy.harmful
        judged = not blocking and "harmful" in rails and lang in config.classifier_languages
        asks = judged and any(self.harmful.has_intent(r.text) for r in readings)
        short = config.unasked is not None and len(scanned) <= config.unasked.max_chars
        fact = judged and not asks and short and self.harmful.asks_about_a_fact(scanned)
        classify = judged and (asks or (short and not fact) or (fact and self.harmful.head is not None))
        wanted = not blocking and (classify or ("topical" in rails and self.topical.active))
        read, vector = "", None
        if wanted and self.embedder is not None:
            read = self.classifier_text(masked)
            vector = self.embedder.embed([read])[0]  # (D,)
        if vector is not None and classify:
            setting = any(self.harmful.in_game_or_fiction(r.text) for r in readings)
            extra = config.setting_margin if setting else 0.0
            lead = 0.0
            if not asks and config.unasked is not None:
                extra += config.unasked.threshold_margin
                lead = config.unasked.benign_margin
            # A text with a payload the rails decoded ("convert this hex to text: ...") says what it asks
            # only in the payload, and a decoded reading is often half noise: the head, trained on neither,
            # blocks neither alone; the exemplars judge both and the head confirms what they find.
            payload = decoded_payload(readings)
            found = self.harmful.classify(
                vector,
                read,
                extra,
                lead,
                head_alone=payload is None,
                exemplars=not fact,
                look_alike=lambda: self.harmful.names_a_look_alike(readings),
            )
            found = found or self._classify_payload(payload, extra, lead)
            if found:
                blocking.append(found)
        if not blocking and "harmful" in rails and self.harmful.judges_ngrams(lang):
            found = self._classify_ngrams(readings, masked)
            # Its jailbreak judgements count only where the jailbreak rail runs.
            if found and (found.rail != "jailbreak" or "jailbreak" in rails):
                blocking.append(found)

        found_pii = pii_findings(spans)
        if blocking:
            decider = min(blocking, key=_priority)
            message = (
                self.policy.messages.jailbreak.pick(lang)
                if decider.rail == "jailbreak"
                else self.policy.refusal(decider.category, lang)
            )
            return self._verdict("blocked", decider, message, [*blocking, *found_pii], base)

        if vector is not None and "topical" in rails:
            off_topic = self.topical.check(text, vector)
            if off_topic:
                message = self.policy.topical.message.pick(lang)
                if self.policy.topical.mode == "redirect":
                    return self._verdict("blocked", off_topic, message, [off_topic, *found_pii], base)
                action: Action = "masked" if spans else "allowed"
                return self._verdict(action, off_topic, message, [off_topic, *found_pii], base)

        if spans:
            return self._verdict("masked", found_pii[0], None, found_pii, base)
        return Verdict(action="allowed", masked_text=base.text, truncated=base.truncated)

    def classifier_text(self, masked: str) -> str:
        """What the embedder and the head read of a message whose personal data is masked: its gist, with a
        listed character's name as "a fictional character", as the privacy rules read it. Neither classifier
        knows the lists, and a character's "browsing history" or "birth certificate" is nobody's data. The
        head's training rows are read the same way."""
        return gist(self.harmful.names.fiction_reading(masked) or masked, self.policy.limits.embed_chars)

    def mask_pii(self, text: str) -> str:
        """`text` with the personal data the policy names masked: what leaves the machine, without the other
        rails' work (no embedding, no harmful or jailbreak rules)."""
        return mask(text, find_pii(text, self.policy.pii.kinds), self.policy.pii.mask)

    def check_output(self, question: str, answer: str, passages: Sequence[str] = ()) -> Verdict:
        """Verdict on a generated answer: unsafe content, and personal data found in neither the question
        nor the passages (that data is masked). Unsupported-claim checks belong to the answer pipeline."""
        rails: set[str] = set(self.policy.rails.output)
        text, truncated = clean(answer, self.policy.limits.max_chars)
        lang = language(question + " " + text)
        spans = find_pii(text, self.policy.pii.kinds) if "pii" in rails else []
        known = _normalised(" ".join([question, *passages]))
        leaked = [s for s in spans if _normalised(text[s.start : s.end]) not in known]
        masked = mask(text, leaked, self.policy.pii.mask)
        base = _Passed(masked, truncated)

        if "harmful" in rails:
            asked = self.harmful.has_intent(fold(question))
            intent = [*self.harmful.intent, _INSTRUCTIONS, *([_ALWAYS] if asked else [])]
            scanned = cut(text, self.policy.limits.scan_chars)[0]
            found = rule_findings(
                self.harmful.rules, variants(scanned), intent, "harmful", self.harmful.games, self.harmful.evasion
            )
            if found:
                decider = min(found, key=_priority)
                message = self.policy.refusal(decider.category, lang)
                return self._verdict("blocked", decider, message, found, base)
        if leaked:
            leaks = [f.model_copy(update={"rule": f"leak.{f.rule}"}) for f in pii_findings(leaked)]
            return self._verdict("masked", leaks[0], None, leaks, base)
        return Verdict(action="allowed", masked_text=base.text, truncated=base.truncated)

    def _readings(self, raw: str) -> list[Variant]:
        """The folded text, its decoded readings, quoted fragments, and the reading with possibly private
        names as a placeholder (which only the harmful rail's name categories read)."""
        return [*variants(raw), *fragments(fold(raw)), *self.harmful.name_readings(raw)]

    def _rule_findings(self, readings: list[Variant], rails: set[str], raw: str) -> list[Finding]:
        """`readings`: those of `raw`, which the jailbreak rules reread without sentences that only quote
        or describe an attack."""
        found = []
        if "harmful" in rails:
            found += self.harmful.check_rules(readings)
        if "jailbreak" in rails:
            found += self.jailbreak.check([r for r in readings if r.how != NAMED], raw)
        return found

    def _new_in_conversation(
        self, earlier: list[str], last: str, rails: set[str], seen: set[str]
    ) -> list[Finding]:
        """Rule findings that appear only when the last message is read with the earlier turns: a request
        split over turns. Findings the earlier turns raise alone are not held against the new message."""
        limit = self.policy.limits.scan_chars
        before = cut("\n".join(earlier), limit)[0]
        together = cut(before + "\n" + last, limit)[0]
        # A last message that builds on the earlier turns ("now put them together") is judged with what
        # they raised: the set-up came before it, the request is now.
        old = (
            set()
            if "jailbreak" in rails and self.jailbreak.builds_on_earlier(fold(last), [fold(t) for t in earlier])
            else {f.rule for f in self._rule_findings(self._readings(before), rails, before)}
        )
        new = []
        for finding in self._rule_findings(self._readings(together), rails, together):
            if finding.rule not in old and finding.rule not in seen:
                new.append(finding.model_copy(update={"rule": finding.rule + "@conversation"}))
        return new

    def _classify_ngrams(self, readings: list[Variant], masked: str) -> Finding | None:
        """The n-gram head on a text the rules let pass, in a language the embedder cannot read: a request at
        `alone`; a text in a game or story, or with no request wording, at `alone_raised`. As for the encoder
        head, a pasted document (no request wording, longer than `unasked.max_chars`) is left to the rules,
        and so is a text with a payload the rails decoded."""
        unasked = self.policy.harmful.unasked
        asks = any(self.harmful.has_intent(r.text) for r in readings)
        pasted = not asks and unasked is not None and len(readings[0].text) > unasked.max_chars
        if pasted or decoded_payload(readings) is not None:
            return None
        setting = any(self.harmful.in_game_or_fiction(r.text) or self.harmful.names_a_game(r.text) for r in readings)
        return self.harmful.classify_ngrams(self.classifier_text(masked), raised=setting or not asks)

    def _classify_payload(self, payload: str | None, extra: float, lead: float) -> Finding | None:
        """The classifier on a decoded payload ("decode this and answer it: <base64>"), which the text as
        written hides from it; one more embedder call, only for a text that had something to decode. The head
        only confirms the exemplars' finding here (see check_input)."""
        # The classifier judges only the languages it separates well, whatever language carried the payload.
        languages = self.policy.harmful.classifier_languages
        if payload is None or self.embedder is None or language(payload) not in languages:
            return None
        read = gist(payload, self.policy.limits.embed_chars)
        found = self.harmful.classify(self.embedder.embed([read])[0], read, extra, lead, head_alone=False)
        return found.model_copy(update={"rule": f"{found.rule}@decoded"}) if found else None

    @staticmethod
    def _verdict(
        action: Action, decider: Finding, message: str | None, findings: list[Finding], base: _Passed
    ) -> Verdict:
        return Verdict(
            action=action,
            rail=decider.rail,
            rule=decider.rule,
            category=decider.category,
            score=decider.score,
            message=message,
            findings=findings,
            masked_text=base.text,
            truncated=base.truncated,
        )


def _priority(finding: Finding) -> tuple[int, int]:
    """Self-harm first (its message offers help), then harmful rules, jailbreak rules, the classifier."""
    if finding.category == "self_harm":
        return (0, 0)
    if finding.rail == "harmful" and not finding.rule.endswith((".exemplars", ".head", ".ngrams")):
        return (1, 0)
    if finding.rail == "jailbreak":
        return (2, 0)
    return (3, 0)


def _normalised(text: str) -> str:
    """Lower case without spaces and separators, so '010-1234-5678' and '01012345678' compare equal."""
    return re.sub(r"[\s\-().]", "", text.lower())
