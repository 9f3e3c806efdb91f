"""Personal data and secrets: find them, check the checksums where a format has one, and mask them.

Kinds: email, phone (international, Korean mobile and landline, North American), card (Luhn), rrn (Korean
resident registration number: date plus checksum), ip (IPv4/IPv6), iban (mod-97) and secret (Hugging Face,
Telegram bot, AWS, Google, GitHub, GitLab, OpenAI, Slack, Stripe, npm and Azure keys and tokens, Slack and
Discord webhooks, JWTs, private key blocks, passwords written as "password: ...", bearer tokens, passwords
in connection strings, and any other generated value assigned to a key or token name in a config or .env
file). Card numbers need a card network's first digits as well as the Luhn check.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from guardrails.literals import Matcher
from guardrails.verdict import Finding


@dataclass(frozen=True)
class Span:
    kind: str
    rule: str
    start: int
    end: int


# Bounded repeats keep every pattern linear in the text length (an unbounded local part backtracks
# quadratically over a long run of letters).
# The local part may hold any letters ("김철수@example.kr"); the domain is ASCII or punycode.
_EMAIL = re.compile(r"[\w.%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}")
# "kim [at] example [dot] com": only the bracketed spelling, which nobody writes by accident.
_EMAIL_SPELLED = re.compile(
    r"[\w.%+-]{1,64} ?[\[(] ?at ?[\])] ?[A-Za-z0-9-]{1,63}(?: ?[\[(] ?dot ?[\])] ?[A-Za-z0-9-]{1,63}){1,4}",
    re.IGNORECASE,
)
_SPELLED_AT = Matcher(r"[\[(] ?at ?[\])]")
_SECRETS = {
    "huggingface_token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "telegram_bot_token": re.compile(r"\b\d{8,10}:[A-Za-z0-9_-]{35}\b"),
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[A-Z0-9]{16}\b"),
    "aws_secret_key": re.compile(r"(?i)aws_?secret_?(?:access_?)?key\s*[:=]\s*['\"]?(?P<value>[A-Za-z0-9/+=]{40})"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})\b"),
    "openai_key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b"),
    "slack_token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    "slack_webhook": re.compile(r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,}"),
    "discord_webhook": re.compile(r"https://(?:\w+\.)?discord(?:app)?\.com/api/webhooks/\d{5,}/[A-Za-z0-9_-]{30,}"),
    "stripe_key": re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b"),
    "gitlab_token": re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
    "npm_token": re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"),
    "google_oauth_token": re.compile(r"\bya29\.[0-9A-Za-z_-]{20,}"),
    "azure_account_key": re.compile(r"AccountKey=(?P<value>[A-Za-z0-9+/]{60,}={0,2})"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    # A password written as an assignment or "is ...": only the value, and only one with a digit in it,
    # so "the password is case-sensitive" stays.
    "password": re.compile(
        r"(?i)(?:password|passwd|pwd|passphrase|비밀번호|패스워드)\s*(?:[:=]|is\b|는|은)\s*[\"']?"
        r"(?P<value>(?=[^\s\"']*\d)[^\s\"']{4,64})"
    ),
    "private_key": re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
    ),
    # A bearer token in a pasted request or log line ("Authorization: Bearer ...").
    "bearer_token": re.compile(r"(?i)\bbearer\s+(?P<value>[A-Za-z0-9\-._~+/]{20,}=*)"),
    # The password in a connection string or URL ("postgres://shop:...@db:5432/shop").
    "url_credentials": re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@]{1,64}:(?P<value>[^\s:/@]{3,128})@"),
    # Any other key or token in a config file, .env file or code: a value assigned to a name that says it
    # is one (API_KEY=..., "client_secret": "...", BOT_TOKEN: ...). Only the value, and only one that looks
    # generated (letters and digits, 16 or more), so `token = os.environ[...]` and placeholders stay.
    "assigned_secret": re.compile(
        r"(?i)(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?key|private[_-]?key|client[_-]?secret|auth[_-]?token"
        r"|access[_-]?token|refresh[_-]?token|bot[_-]?token|token|credentials?)[\"']?\s*[:=]\s*[\"']?"
        r"(?P<value>[A-Za-z0-9][A-Za-z0-9_\-+/.:=]{15,200})"
    ),
}
# The words each secret pattern needs (its prefix, or "secret" for AWS secret keys), for a cheap pre-check.
_SECRET_HINTS = {name: Matcher(pattern.pattern, ignore_case=False) for name, pattern in _SECRETS.items()}
_DIGIT = re.compile(r"\d")
_RRN = re.compile(r"(?<!\d)(\d{2})(\d{2})(\d{2})\s?-?\s?([1-8])(\d{6})(?!\d)")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
# Not inside a word: "std::vector" and "Base::func" hold valid-looking "d::" and "e::f".
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_HEX_DIGIT = re.compile(r"[0-9A-Fa-f]")
# A dotted quad right after one of these is a version, a section number or an SNMP object identifier
# ("version 2.4.1.0", "§ 4.2.1.3", "OID 1.3.6.1").
_VERSION_BEFORE = re.compile(
    r"(?:\bv|\bversions?|\bver\.?|\breleases?|\bbuilds?|\bfirmware|\bsections?|\bsec\.|\bchapters?|\bclauses?|§"
    r"|\bpinned to|\brev(?:ision)?\.?|[=<>~]=|\boids?|\bsnmp\w*|\bmib(?: entry| object)?)\s*:?\s*$",
    re.IGNORECASE,
)
# Network masks: most start with 255 (reserved, never a host: see `_ip_ok`) and wildcard masks with 0; the
# few that look like hosts ("mask 192.0.0.0") are told by a word shortly before them.
_MASK_BEFORE = re.compile(r"(?:mask|wildcard|prefix|마스크)\W{0,3}(?:\w+\W{1,3}){0,2}$", re.IGNORECASE)
# A prefix length or a mask right after an address makes it a network when its host bits are all zero
# ("10.0.0.0/8", "network 10.0.0.0 0.0.0.255"): a range, not someone's machine.
_PREFIX_AFTER = re.compile(r"\s{0,2}/(\d{1,2})(?!\d)|\s{1,3}((?:\d{1,3}\.){3}\d{1,3})(?![\d.])")
_PHONES = {
    # Separators: one space, dot or hyphen, or a dot or hyphen with a space either side ("010 - 1234 - 5678").
    "kr_mobile": re.compile(r"(?<![\d+])01[016789](?: ?[.-] ?| )?\d{3,4}(?: ?[.-] ?| )?\d{4}(?!\d)"),
    "kr_landline": re.compile(
        r"(?<![\d+])\(?0(?:2|[3-6][1-5]|70)\)?(?: ?[.-] ?| )?\d{3,4}(?: ?[.-] ?| )?\d{4}(?!\d)"
    ),
    # "+44 20 ..." or, dialled from abroad, "0044 20 ..." (the 00 form needs a separator after the country
    # and must not follow another group of digits, as inside an IBAN).
    "international": re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[ .-]?|(?<!\d[ .-])00[1-9]\d{0,2}[ .-])\(?\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4}(?!\d)"
    ),
    "north_american": re.compile(r"(?<![\w])\(?[2-9]\d{2}\)?[ .-]\d{3}[ .-]\d{4}(?!\d)"),
}


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def card_prefix_ok(digits: str) -> bool:
    """Payment cards start with 3 (Amex, JCB, Diners), 4 (Visa), 5 (Mastercard), 6 (Discover, UnionPay),
    7 and 8 (fuel and health cards), 9 (domestic schemes, such as Korean domestic cards), 2200-2204 (Mir) or
    2221-2720 (Mastercard's 2-series). Epoch-millisecond timestamps and 18-digit snowflake IDs in logs start
    with 1, and one in ten of them passes Luhn by chance."""
    if digits[:1] in ("3", "4", "5", "6", "7", "8", "9"):
        return True
    return digits[:1] == "2" and (2200 <= int(digits[:4]) <= 2204 or 2221 <= int(digits[:4]) <= 2720)


def _card_ok(text: str) -> bool:
    digits = _digits(text)
    return 13 <= len(digits) <= 19 and card_prefix_ok(digits) and luhn_ok(digits)


def rrn_ok(digits: str) -> bool:
    """Korean resident registration number: a real birth date and the weighted mod-11 check digit."""
    if len(digits) != 13 or not digits.isdigit():
        return False
    month, day = int(digits[2:4]), int(digits[4:6])
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return False
    weights = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
    check = (11 - sum(int(d) * w for d, w in zip(digits, weights, strict=False)) % 11) % 10
    return check == int(digits[12])


def iban_ok(text: str) -> bool:
    compact = text.replace(" ", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ip_ok(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    # "1.2.3.4"-style version numbers are common in chat; loopback and unspecified addresses reveal nothing.
    # Nor do IPv4 addresses no machine can have: 0.0.0.0/8 (where wildcard masks such as 0.0.0.255 fall)
    # and the reserved 240.0.0.0/4 (where netmasks such as 255.255.255.0 fall).
    if address.version == 4 and (address.is_reserved or text.split(".")[0] == "0"):
        return False
    return not (address.is_loopback or address.is_unspecified)


def mask_length(text: str) -> int | None:
    """The prefix length of a netmask (255.255.240.0 -> 20) or a wildcard mask (0.0.15.255 -> 20); None when
    `text` is neither (its ones, or its zeros, are not contiguous)."""
    try:
        bits = int(ipaddress.IPv4Address(text))
    except ValueError:
        return None
    for value in (bits, bits ^ 0xFFFFFFFF):
        ones = bin(value).count("1")
        if value == (0xFFFFFFFF << (32 - ones)) & 0xFFFFFFFF:
            return ones
    return None


def _ipv4_is_address(text: str, start: int, end: int) -> bool:
    """Whether the dotted quad text[start:end] (a valid address) stands for a machine: not a version, section
    or OID number, not a mask after a word that says so, not a network written with its prefix or mask."""
    if _VERSION_BEFORE.search(text, max(0, start - 20), start):
        return False
    value = text[start:end]
    if _MASK_BEFORE.search(text, max(0, start - 30), start) and mask_length(value) is not None:
        return False
    after = _PREFIX_AFTER.match(text, end)
    if after:
        length = int(after.group(1)) if after.group(1) else mask_length(after.group(2))
        if length is not None and length < 32:
            try:
                ipaddress.IPv4Network(f"{value}/{length}")  # strict: raises when host bits are set
            except ValueError:
                return True
            return False
    return True


_PLACEHOLDER = re.compile(r"your|here|x{4}|changeme|placeholder|redacted|dummy|<|\$\{", re.IGNORECASE)


def _assigned_secret_ok(value: str) -> bool:
    """A generated value has letters and digits; a name (`settings.API_KEY`) or a placeholder does not pass."""
    return (
        any(ch.isdigit() for ch in value)
        and sum(ch.isalpha() for ch in value) >= 4
        and not _PLACEHOLDER.search(value)
    )


def _openai_key_ok(token: str) -> bool:
    """Real keys are random letters and digits; a kebab-case name ("sk-spinner-fading-circle") is not one."""
    body = token[3:]
    return any(ch.isdigit() for ch in body) and any(ch.isupper() for ch in body)


_KEEP_SECRET: dict[str, Callable[[str], bool]] = {
    "openai_key": _openai_key_ok,
    "assigned_secret": _assigned_secret_ok,
    "bearer_token": _assigned_secret_ok,
    "url_credentials": lambda value: not _PLACEHOLDER.search(value) and value.lower() not in {"password", "pass"},
}


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _matches(
    pattern: re.Pattern[str], text: str, keep: Callable[[str], bool] = lambda _: True
) -> Iterable[tuple[int, int]]:
    # A pattern with a `value` group masks only that part ("password: [SECRET]" keeps its label).
    part = "value" if "value" in pattern.groupindex else 0
    for match in pattern.finditer(text):
        if keep(match.group(part)):
            yield match.span(part)


def find_pii(text: str, kinds: Iterable[str]) -> list[Span]:
    """Non-overlapping spans; on overlap the earlier kind wins: secret, email, rrn, iban, card, ip, phone."""
    wanted = set(kinds)
    # Cheap pre-checks, one pass each: most messages have no digits, no '@' and no ':', and then most
    # patterns (each a pass over up to `limits.max_chars` characters) cannot match.
    digits = _DIGIT.search(text) is not None
    if not digits:
        wanted -= {"rrn", "card", "iban", "phone"}  # and IPv4; an IPv6 address can be all letters
    if "@" not in text and not _SPELLED_AT.could_match(text):
        wanted.discard("email")
    candidates: list[Span] = []
    if "secret" in wanted:
        for name, pattern in _SECRETS.items():
            if _SECRET_HINTS[name].could_match(text):
                keep = _KEEP_SECRET.get(name, lambda _: True)
                candidates += [Span("secret", name, s, e) for s, e in _matches(pattern, text, keep)]
    if "email" in wanted:
        candidates += [Span("email", "email", s, e) for s, e in _matches(_EMAIL, text)]
        candidates += [Span("email", "email_spelled_out", s, e) for s, e in _matches(_EMAIL_SPELLED, text)]
    if "rrn" in wanted:
        candidates += [
            Span("rrn", "rrn_checksum", s, e) for s, e in _matches(_RRN, text, lambda t: rrn_ok(_digits(t)))
        ]
    # IBAN before card: mod-97 is a far stronger check than Luhn, and one in ten IBANs has a run of digits
    # that passes Luhn.
    if "iban" in wanted:
        candidates += [Span("iban", "iban_mod97", s, e) for s, e in _matches(_IBAN, text, iban_ok)]
    if "card" in wanted:
        candidates += [Span("card", "card_luhn", s, e) for s, e in _matches(_CARD, text, _card_ok)]
    if "ip" in wanted:
        if digits:
            candidates += [
                Span("ip", "ipv4", s, e) for s, e in _matches(_IPV4, text, _ip_ok) if _ipv4_is_address(text, s, e)
            ]
        if ":" in text:
            # Five hex digits at least: "fe80::1" is an address, "a::b" in C++ is a scope.
            ipv6_ok = lambda t: ":" in t and len(_HEX_DIGIT.findall(t)) >= 5 and _ip_ok(t)  # noqa: E731
            candidates += [Span("ip", "ipv6", s, e) for s, e in _matches(_IPV6, text, ipv6_ok)]
    if "phone" in wanted:
        for name, pattern in _PHONES.items():
            phone_ok = lambda t: 9 <= len(_digits(t)) <= 15  # noqa: E731
            candidates += [Span("phone", name, s, e) for s, e in _matches(pattern, text, phone_ok)]
    taken: list[Span] = []
    for span in candidates:
        if all(span.end <= other.start or span.start >= other.end for other in taken):
            taken.append(span)
    return sorted(taken, key=lambda span: span.start)


def mask(text: str, spans: list[Span], template: str) -> str:
    out, last = [], 0
    for span in spans:
        out += [text[last : span.start], template.format(kind=span.kind.upper())]
        last = span.end
    out.append(text[last:])
    return "".join(out)


def findings(spans: list[Span]) -> list[Finding]:
    return [Finding(rail="pii", rule=s.rule, category=s.kind, start=s.start, end=s.end) for s in spans]
