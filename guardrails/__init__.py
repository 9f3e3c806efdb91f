"""Guardrails: policy, detectors, and the input and output rails.

guard = Guardrails.load(embedder=SentenceTransformerEmbedder())
verdict = guard.check_input([{"role": "user", "content": "..."}])
if not verdict.allowed: reply(verdict.message)
else: pass verdict.masked_text on
"""

from guardrails.policy import DEFAULT_POLICY_PATH, Policy, PolicyError, load_policy
from guardrails.rails import Conversation, Guardrails, Message, user_turns
from guardrails.verdict import Finding, Verdict

__all__ = [
    "DEFAULT_POLICY_PATH",
    "Conversation",
    "Finding",
    "Guardrails",
    "Message",
    "Policy",
    "PolicyError",
    "Verdict",
    "load_policy",
    "user_turns",
]
