"""Personal data and secrets: find them, check the checksums where a format has one, and mask them.

Kinds: email (also spelled out: "kim dot lee at example dot com", "kim(at)example.com", 골뱅이), phone
(international, Korean mobile and landline, North American, and national numbers after a phone word), card
(Luhn), rrn (Korean resident and foreigner registration numbers: date plus checksum; numbers issued since
October 2020 carry none), id_number (social security, passport, licence and national ID numbers after a word
that names them: they have no checksum), ip (IPv4/IPv6),
iban (country length and mod-97) and secret (Hugging Face, Telegram bot, AWS, Google, GitHub, GitLab,
OpenAI and Anthropic, Slack, Stripe, SendGrid, PyPI, npm, Shopify, DigitalOcean and Azure keys and tokens,
Slack and Discord webhooks, JWTs, private key blocks, passwords written as "password: ...", bearer and basic
authorization headers, passwords in connection strings, and any other generated value assigned to a key or
token name in a config or .env file). Card numbers need a card network's first digits as well as the Luhn
check.

Public numbers are not personal data and are left alone: Korean nationwide business numbers (1588-xxxx and
the like, eight digits), 080 and North American toll-free numbers, and business registration numbers
(123-45-67890).
"""

from __future__ import annotations

import datetime
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from guardrails.literals import Matcher
from guardrails.verdict import Finding


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


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
# An address spelled out so that harvesters miss it: "kim [at] example [dot] com", "kim(at)example.com",
# "kim dot lee at example dot com", "kim 골뱅이 example 닷 com", "kim @ example . com". The local part is ASCII
# and starts a word; `_spelled_email_ok` decides whether the plain-word spellings (" at ", " dot ", 점)
# really make an address.
_SPELLED_SEP_AT = r"(?: ?[\[({] ?(?:at|골뱅이) ?[\])}] ?| ?(?:골뱅이|＠) ?| @ | at )"
_SPELLED_SEP_DOT = r"(?: ?[\[({] ?(?:dot|점|닷) ?[\])}] ?| ?\. ?| dot | ?(?:점|닷) ?)"
_EMAIL_SPELLED = re.compile(
    r"(?<![\w.%+-])(?P<local>[A-Za-z0-9._%+-]{1,64}(?: dot [A-Za-z0-9_%+-]{1,64}){0,3})"
    + _SPELLED_SEP_AT
    + r"(?P<domain>[A-Za-z0-9-]{1,63}(?:"
    + _SPELLED_SEP_DOT
    + r"[A-Za-z0-9-]{1,63}){0,4})"
    + _SPELLED_SEP_DOT
    + r"(?P<tld>[A-Za-z]{2,24})(?![\w@])",
    re.IGNORECASE,
)
# What must be in a text (lower-cased) for `_EMAIL_SPELLED` to have a chance: an at written out.
_SPELLED_AT = ("at)", "at]", "at }", "at}", "at )", "at ]", "골뱅이", "＠", " @ ", " at ")
# The spellings that ordinary prose holds too ("look at this dot product", "at the dot com peak"): with
# them the address needs a real top-level domain, and a plain " at " needs a local part shaped like one.
_PLAIN_SEPARATOR = re.compile(r"(?i)(?<![\[({] ) at (?! ?[\])}])|(?<![\[({]) dot |(?<![\[({] )(?<![\[({])(?:점|닷)")
_PLAIN_AT = re.compile(r"(?i) at ")
_ADDRESS_SHAPED = re.compile(r"[._\d]| dot ")
_ARTICLES = frozenset({"the", "a", "an", "this", "that", "my", "your", "our"})
_TLDS = _word_set(
    "com net org edu gov mil int io co kr uk jp cn de fr it es nl se no fi dk ch at be pl pt ru br in au ca "
    "us nz ie sg hk tw vn th id my ph ai dev app me info biz xyz tech online site email mail cloud"
)
# Words that stand before " at " in prose ("look at", "good at", "arrive at"), never an address's local part.
_PROSE_BEFORE_AT = _word_set(
    "look looking looked looks good bad best better arrive arrived arriving stay stayed staying meet meeting "
    "me us you him her them it is are was were be been am here there home work office aim aimed aiming "
    "point pointing laugh laughing smile smiling stare staring glance glanced hit hits and or but not all "
    "only even just right left up down back out in on off over available located based found seen"
)
_MAIL_WORD = re.compile(r"(?i)(?:e-?mail|mail|메일|contact|write to|reach|address|주소)\W{0,20}(?:\w+\W{1,3}){0,3}$")
# "git@github.com:acme/shop.git": an SSH remote (user@host:path), not an address.
_SCP_PATH_AFTER = re.compile(r":[\w~]")
_SECRETS = {
    "huggingface_token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    # Also inside a Bot API URL, where "bot" runs into the digits ("/bot123456789:AA.../getMe").
    "telegram_bot_token": re.compile(r"(?:\b|(?<=bot))\d{8,10}:[A-Za-z0-9_-]{35}\b"),
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|APKA)[A-Z0-9]{16}\b"),
    # The secret key has no prefix: it is known by its name before it, in a config or in prose ("my AWS
    # secret access key is ...", "AWS 시크릿 키는 ...").
    "aws_secret_key": re.compile(
        r"(?i)aws[ _-]?(?:secret|시크릿)[ _-]?(?:access[ _-]?)?(?:key|키)[\"']?\s*(?:[:=]|\bis\b|는|은)?\s*['\"]?"
        r"(?P<value>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])"
    ),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    # A WolframAlpha App ID (six and ten capitals or digits) has no prefix of its own: known by its name.
    "wolfram_app_id": re.compile(
        r"(?i)(?:wolfram[ _-]?(?:alpha[ _-]?)?(?:app[ _-]?id|appid|api[ _-]?key|key)|appid)[\"']?"
        r"\s*(?:[:=]|\bis\b|는|은)?\s*['\"]?(?P<value>(?-i:[A-Z0-9]{6}-[A-Z0-9]{10}))\b"
    ),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{50,})\b"),
    # OpenAI (sk-, sk-proj-, sk-svcacct-) and Anthropic (sk-ant-api03-...) keys.
    "openai_key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b"),
    "slack_token": re.compile(r"\b(?:xox[abposre]-|xapp-\d-)[A-Za-z0-9-]{10,}\b"),
    "slack_webhook": re.compile(r"https://hooks\.slack\.com/services/T[A-Z0-9]{6,}/B[A-Z0-9]{6,}/[A-Za-z0-9]{16,}"),
    "discord_webhook": re.compile(r"https://(?:\w+\.)?discord(?:app)?\.com/api/webhooks/\d{5,}/[A-Za-z0-9_-]{30,}"),
    "stripe_key": re.compile(r"\b(?:(?:sk|rk)_(?:live|test)_|whsec_)[A-Za-z0-9]{16,}\b"),
    "sendgrid_key": re.compile(r"\bSG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}\b"),
    "pypi_token": re.compile(r"\bpypi-AgE[A-Za-z0-9_-]{50,}"),
    "shopify_token": re.compile(r"\bshp(?:at|ss|ca|pa)_[A-Za-z0-9]{32}\b"),
    "digitalocean_token": re.compile(r"\bdo[por]_v1_[A-Za-z0-9]{64}\b"),
    "google_oauth_secret": re.compile(r"\bGOCSPX-[A-Za-z0-9_-]{24,}"),
    "gitlab_token": re.compile(r"\bglpat-[A-Za-z0-9_-]{20,}\b"),
    "npm_token": re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"),
    "google_oauth_token": re.compile(r"\bya29\.[0-9A-Za-z_-]{20,}"),
    # Storage account keys and Service Bus / Event Hubs keys in connection strings, and the signature of a
    # shared access signature URL.
    "azure_account_key": re.compile(r"(?:AccountKey|SharedAccessKey)=(?P<value>[A-Za-z0-9+/]{40,}={0,2})"),
    "azure_sas_signature": re.compile(r"[?&]sig=(?P<value>[A-Za-z0-9%+/]{30,}={0,2})"),
    "jwt": re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    # A password written as an assignment or "is ...": only the value, and only one with a digit in it,
    # so "the password is case-sensitive" stays.
    "password": re.compile(
        r"(?i)(?:password|passwd|pwd|passphrase|비밀번호|패스워드|암호)(?P<separator>\s*(?:[:=]|is\b|는|은))\s*[\"']?"
        r"(?P<value>[^\s\"']{4,64})"
    ),
    "private_key": re.compile(
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
    ),
    # A bearer token in a pasted request or log line ("Authorization: Bearer ...").
    "bearer_token": re.compile(r"(?i)\bbearer\s+(?P<value>[A-Za-z0-9\-._~+/]{20,}=*)"),
    # "Authorization: Basic ..." carries a user name and password, only base64-encoded.
    "basic_auth": re.compile(r"(?i)authorization[\"']?\s*[:=]\s*[\"']?basic\s+(?P<value>[A-Za-z0-9+/]{8,}={0,2})"),
    # The password in a connection string or URL ("postgres://shop:...@db:5432/shop").
    # The user may be left out ("redis://:...@cache:6379").
    "url_credentials": re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]{1,20}://[^\s:/@]{0,64}:(?P<value>[^\s:/@]{3,128})@"),
    # Any other key or token in a config file, .env file or code: a value assigned to a name that says it
    # is one (API_KEY=..., "client_secret": "...", BOT_TOKEN: ...). Only the value, and only one that looks
    # generated (letters and digits, 16 or more), so `token = os.environ[...]` and placeholders stay.
    "assigned_secret": re.compile(
        r"(?i)(?:api[_ -]?key|secret(?:[_ -]?key)?|access[_ -]?key|private[_ -]?key|client[_ -]?secret|auth[_ -]?token"
        r"|access[_ -]?token|refresh[_ -]?token|bot[_ -]?token|token|credentials?|api[_ -]?secret|토큰|키)"
        r"[\"']?\s*(?:[:=]|\bis\b|는|은)\s*[\"']?"
        r"(?P<value>[A-Za-z0-9][A-Za-z0-9_\-+/.:=]{15,200})"
    ),
}
# The words each secret pattern needs (its prefix, or "secret" for AWS secret keys), for a cheap pre-check.
_SECRET_HINTS = {name: Matcher(pattern.pattern, ignore_case=False) for name, pattern in _SECRETS.items()}
_DIGIT = re.compile(r"\d")
_RRN = re.compile(r"(?<!\d)(\d{2})(\d{2})(\d{2})\s?-?\s?([1-8])(\d{6})(?!\d)")
# Identity numbers with no checksum to tell them (a US social security number, a passport, a driving
# licence, a national ID, a UK National Insurance or Canadian social insurance number): masked only right
# after a word that names one.
_ID_NUMBER = re.compile(
    r"(?i)(?:\b(?:ssn|social security(?: number| no\.?| #)?|passport(?: number| no\.?| #)?"
    r"|driver'?s? licen[cs]e(?: number| no\.?| #)?|driving licen[cs]e(?: number| no\.?)?"
    r"|national (?:id|identity|insurance)(?: number| no\.?| card number)?|id card number|tax id"
    r"|ni(?:no| number| no\.?)|social insurance(?: number| no\.?)?|sin(?: number| no\.?| #|(?=\s*[:#]))"
    r"|dni|nif|aadhaar(?: number| no\.?)?|cpf|curp|pesel|bsn|personnummer|codice fiscale|steuer-?id)"
    r"|여권\s?번호|운전\s?면허\s?번호|면허\s?번호)\s*(?:is|was|es|ist|est|é|:|=|-|#|는|은)?\s*"
    # A UK National Insurance number ends in a letter after a space: "QQ 12 34 56 C".
    # A UK driving licence number starts with five letters of the surname: "MORGA753116SM9IJ".
    r"(?P<value>(?<![\w-])[A-Za-z]{0,5}[ -]?\d(?:-?[A-Za-z0-9]| \d){5,14}(?: [A-Da-d])?)(?![\w-])"
)
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
# A label right before a long number that names another kind of number: an order, parcel, ticket or
# product code passes Luhn or the RRN check one time in ten by chance.
_OTHER_NUMBER_BEFORE = re.compile(
    r"(?i)(?:\border|\btracking|\bparcel|\bshipment|\binvoice|\bticket|\bbooking|\breservation|\breference"
    r"|\bref\.?|\btransaction|\bisbn(?:-1[03])?|\bean(?:-13)?|\bupc|\bbarcode|\bsku|\bserial|\bitem"
    r"|\bproduct|\bmodel|주문|송장|운송장|등기|택배|배송|예약|티켓|거래|승인|바코드|상품|제품|모델|일련|시리얼|법인)"
    r"[\s\w.#:-]{0,14}$"
)
_CARD_WORD = re.compile(r"(?i)card|카드|visa|master|amex|jcb|discover|union\s?pay|diners|결제")
# A country code, two check digits, then letters and digits, grouped by spaces or hyphens or not at all; how
# many belong to the IBAN the country says (`_IBAN_LENGTHS`), so words after it are not read as part of it.
_IBAN = re.compile(r"(?<![A-Za-z0-9])(?P<country>[A-Za-z]{2})\d{2}(?:[ -]?[A-Za-z0-9]){11,30}")
_IBAN_LENGTHS = {
    item[:2]: int(item[3:])
    for item in _word_set(
        "AD:24 AE:23 AL:28 AT:20 AZ:28 BA:20 BE:16 BG:22 BH:22 BR:29 BY:28 CH:21 CR:22 CY:28 CZ:24 DE:22 "
        "DK:18 DO:28 EE:20 EG:29 ES:24 FI:18 FO:18 FR:27 GB:22 GE:22 GI:23 GL:18 GR:27 GT:28 HR:21 HU:28 "
        "IE:22 IL:23 IQ:23 IS:26 IT:27 JO:30 KW:30 KZ:20 LB:28 LC:32 LI:21 LT:20 LU:20 LV:21 MC:27 MD:24 "
        "ME:22 MK:19 MR:27 MT:31 MU:30 NL:18 NO:15 PK:24 PL:28 PS:29 PT:25 QA:29 RO:24 RS:22 SA:24 SC:31 "
        "SE:24 SI:19 SK:24 SM:27 ST:25 SV:28 TL:23 TN:24 TR:26 UA:29 VA:22 VG:24 XK:20"
    )
}
_IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
# Not inside a word: "std::vector" and "Base::func" hold valid-looking "d::" and "e::f".
_IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
_HEX_DIGIT = re.compile(r"[0-9A-Fa-f]")
# A dotted quad right after one of these is a version, a section number or an SNMP object identifier
# ("version 2.4.1.0", "§ 4.2.1.3", "OID 1.3.6.1").
_VERSION_BEFORE = re.compile(
    r"(?:\bv|\bversions?|\bver\.?|\breleases?|\bbuilds?|\bfirmware|\bsections?|\bsec\.|\bchapters?|\bclauses?|§"
    r"|버전|빌드|릴리스|펌웨어|섹션|조항|항목"
    r"|\bpinned to|\brev(?:ision)?\.?|[=<>~]=|\boids?|\bsnmp\w*|\bmib(?: entry| object)?)\s*:?\s*$",
    re.IGNORECASE,
)
_NETWORK_BEFORE = re.compile(
    r"(?:\bping|\bssh|\bhosts?|\bservers?|\bip|\baddress|\bconnect\w*|\bcurl|\btelnet|\bgateway|\bdns|\bfrom"
    r"|\bto|\bat|@|서버|주소|접속)\W{0,3}$",
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
    # With the country's 1 in front or not ("1-415-555-2671").
    "north_american": re.compile(r"(?<![\w])(?:1[ .-])?\(?[2-9]\d{2}\)?[ .-]\d{3}[ .-]\d{4}(?!\d)"),
    # A national number (trunk 0, no country code: "020 7946 0958", "03-1234-5678", "07911 123456") has no
    # shape of its own, so it counts only right after a word that calls it a phone number.
    "labelled_national": re.compile(
        r"(?i)(?:\b(?:phone|mobile|cell|tel|telephone|landline|fax|whats ?app|call me|text me|ring me|reach me"
        r"|contact|my number)|전화|휴대폰|핸드폰|연락처|연락)[^\d\n]{0,25}?"
        r"(?P<value>(?<![\d+])\(?0\d{1,4}\)?(?:[ .-]?\d{2,4}){2,4})(?!\d)"
    ),
}
# North American toll-free numbers (800, 833, 844, 855, 866, 877, 888) are businesses', as are 080 numbers
# in Korea: not personal data.
_TOLL_FREE = re.compile(r"^(?:1)?8(?:00|33|44|55|66|77|88)\d{7}$")


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
    return 13 <= len(digits) <= 19 and card_prefix_ok(digits) and luhn_ok(digits) and not isbn13_ok(digits)


def isbn13_ok(digits: str) -> bool:
    """A book number: 978 or 979, then a check digit weighted 1, 3, 1, 3... (never a card: no network
    issues 978/979 numbers of 13 digits)."""
    if len(digits) != 13 or digits[:3] not in ("978", "979"):
        return False
    return sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10 == 0


def _labelled_as_other_number(text: str, start: int) -> bool:
    """Whether the words right before position `start` call the number there an order, parcel, ticket,
    product or company number, and no card word stands between that label and the number."""
    before = text[max(0, start - 30) : start]
    label = _OTHER_NUMBER_BEFORE.search(before)
    return label is not None and _CARD_WORD.search(before, label.start()) is None


_RRN_WEIGHTS = (2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5)
# Numbers issued since this day (births, and foreigners registered) end in random digits, not a check digit.
RANDOM_DIGITS_SINCE = datetime.date(2020, 10, 1)


def _rrn_check(digits: str, base: int) -> int:
    return (base - sum(int(d) * w for d, w in zip(digits, _RRN_WEIGHTS, strict=False)) % 11) % 10


def _birth_date(digits: str) -> datetime.date | None:
    """The birth date of a registration number: the seventh digit gives the century (1, 2, 5, 6: 1900s; 3,
    4, 7, 8: 2000s; 9, 0: 1800s). None when it is no calendar date."""
    century = {"1": 1900, "2": 1900, "5": 1900, "6": 1900, "3": 2000, "4": 2000, "7": 2000, "8": 2000}
    try:
        year = century.get(digits[6], 1800) + int(digits[:2])
        return datetime.date(year, int(digits[2:4]), int(digits[4:6]))
    except ValueError:
        return None


def registration_number_ok(digits: str, today: datetime.date | None = None) -> bool:
    """A Korean resident (gender digit 1-4) or foreigner (5-8) registration number: a real birth date not in
    the future and, for numbers issued before October 2020, a check digit. Foreigner numbers were checked
    with the residents' formula plus two; both are accepted. A child born since October 2020 got a number
    whose last digits are random, so such a number passes on its date alone (one issued since then to
    someone older, on a change of number, is indistinguishable from a mistyped number and is not
    masked)."""
    if len(digits) != 13 or not digits.isdigit():
        return False
    born = _birth_date(digits)
    if born is None or born > (today or datetime.date.today()):
        return False
    if born >= RANDOM_DIGITS_SINCE:
        return True
    checks = {_rrn_check(digits, 11)} | ({_rrn_check(digits, 13)} if digits[6] in "5678" else set())
    return int(digits[12]) in checks


def iban_ok(text: str) -> bool:
    compact = text.replace(" ", "").replace("-", "").upper()
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _iban_end(match: re.Match[str], text: str) -> int | None:
    """Where the IBAN that `match` starts ends, by its country's length, when it passes mod-97 (upper or
    lower case, "de89 3704 ...", with spaces, hyphens or none); None for an unknown country, a run that is
    too short or goes on without a break, or a failed check."""
    length = _IBAN_LENGTHS.get(match.group("country").upper())
    if length is None:
        return None
    count, end = 0, match.start()
    while count < length and end < match.end():
        count += text[end].isalnum()
        end += 1
    if count != length or text[end : end + 1].isalnum() or not iban_ok(text[match.start() : end]):
        return None
    return end


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
    value = text[start:end]
    if _VERSION_BEFORE.search(text, max(0, start - 20), start) or _continues_numbered_series(text, start, value):
        return False
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


def _continues_numbered_series(text: str, start: int, value: str) -> bool:
    """Whether a dotted quad with the same first two numbers, marked as a version or a section, came shortly
    before ("Section 4.2.1.3 covers retries; 4.2.1.4 covers timeouts": the second goes on with the series),
    and no word right before this one names a machine ("version 10.0.4.12, then ping 10.0.4.13")."""
    if _NETWORK_BEFORE.search(text, max(0, start - 20), start):
        return False
    head = ".".join(value.split(".")[:2]) + "."
    return any(
        m.group(0).startswith(head) and _VERSION_BEFORE.search(text, max(0, m.start() - 20), m.start())
        for m in _IPV4.finditer(text, max(0, start - 200), start)
    )


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


# Words that follow "password:" in documentation and forms rather than a password.
_NOT_A_PASSWORD = _word_set(
    "required optional none null nil true false string str text hidden secret password passwd pass empty "
    "unset blank same needed missing incorrect wrong invalid expired changed reset"
)
# Code (`os.environ[...]`, `{{ password }}`), masking dots, and a length rule ("비밀번호는 10자리 이상").
_CODE_EXPRESSION = re.compile(r"^[A-Za-z_][\w.]*[(\[]|^[{%$]|\{\{|\}\}$|^[•●*]+$|^\d+(?:자|글자|개|char)")
_JOINED_WORDS = re.compile(r"[^\W\d_][-_!#$%^&*+=~.?@][^\W\d_]|[a-z][A-Z]")


def _password_ok(match: re.Match[str]) -> bool:
    """A stated password: after "is", one with a digit ("the password is case-sensitive" stays); after
    ":" or "=", also one of joined words ("sunflower-meadow", "하늘바다-sky"), but not a word forms and docs
    put there ("password: required"), a placeholder or a code expression (`password = os.environ[...]`)."""
    value = match.group("value").rstrip(".,;)")
    if len(value) < 4 or value.lower() in _NOT_A_PASSWORD or _PLACEHOLDER.search(value):
        return False
    if _CODE_EXPRESSION.search(value):
        return False
    if any(ch.isdigit() for ch in value):
        return True
    return match.group("separator").strip() in (":", "=") and _JOINED_WORDS.search(value) is not None


def _value_ok(check: Callable[[str], bool]) -> Callable[[re.Match[str]], bool]:
    return lambda match: check(match.group("value") if "value" in match.re.groupindex else match.group())


_KEEP_SECRET: dict[str, Callable[[re.Match[str]], bool]] = {
    "openai_key": _value_ok(_openai_key_ok),
    "assigned_secret": _value_ok(_assigned_secret_ok),
    "bearer_token": _value_ok(_assigned_secret_ok),
    "url_credentials": _value_ok(
        lambda value: not _PLACEHOLDER.search(value) and value.lower() not in {"password", "pass"}
    ),
    "password": _password_ok,
    "basic_auth": _value_ok(lambda value: not _PLACEHOLDER.search(value)),
}


def _spelled_email_ok(match: re.Match[str], text: str) -> bool:
    """Whether a spelled-out address is one. The bracketed spellings, 골뱅이 and a spaced "@" are written
    only for addresses; the prose ones (" at ", " dot ", 점, 닷) need a real top-level domain, and a plain
    " at " also a local part that is not a word prose puts there ("look at") and that is shaped like an
    address's ("j.doe", "kim_88", "john dot doe") or follows a word about mail."""
    at = text[match.end("local") : match.start("domain")].lower()
    dots = text[match.start("domain") : match.start("tld")]
    if not _PLAIN_SEPARATOR.search(at + "|" + dots):
        return True
    if match.group("tld").lower() not in _TLDS:
        return False
    if not _PLAIN_AT.match(at):
        return True
    local = match.group("local").lower()
    if local in _PROSE_BEFORE_AT or match.group("domain").lower() in _ARTICLES:
        return False
    return _ADDRESS_SHAPED.search(local) is not None or (
        _MAIL_WORD.search(text, max(0, match.start() - 40), match.start()) is not None
    )


def _phone_ok(text: str) -> bool:
    digits = _digits(text)
    return 9 <= len(digits) <= 15 and not _TOLL_FREE.match(digits)


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _matches(
    pattern: re.Pattern[str], text: str, keep: Callable[[str], bool] = lambda _: True
) -> Iterable[tuple[int, int]]:
    return _kept_spans(pattern, text, _value_ok(keep))


def _kept_spans(
    pattern: re.Pattern[str], text: str, keep: Callable[[re.Match[str]], bool]
) -> Iterable[tuple[int, int]]:
    # A pattern with a `value` group masks only that part ("password: [SECRET]" keeps its label).
    part = "value" if "value" in pattern.groupindex else 0
    for match in pattern.finditer(text):
        if keep(match):
            yield match.span(part)


def _accepted_spans(
    pattern: re.Pattern[str], text: str, accept: Callable[[re.Match[str], str], int | None]
) -> Iterable[tuple[int, int]]:
    """Spans of the matches `accept` takes (it gives where the span ends, or None). After a refused match the
    search goes on from its next character, so a refused reading does not hide one that starts inside it:
    a prose "me at choi.dh" before an address, "AB12" before an IBAN ("AB12 DE89 ...")."""
    pos = 0
    while (match := pattern.search(text, pos)) is not None:
        end = accept(match, text)
        if end is None:
            pos = match.start() + 1
        else:
            yield match.start(), end
            pos = end


def _spelled_email_end(match: re.Match[str], text: str) -> int | None:
    return match.end() if _spelled_email_ok(match, text) else None


def find_pii(text: str, kinds: Iterable[str]) -> list[Span]:
    """Non-overlapping spans; on overlap the earlier kind wins: secret, email, rrn, iban, card, ip, id_number,
    phone."""
    wanted = set(kinds)
    # Cheap pre-checks, one pass each: most messages have no digits, no '@' and no ':', and then most
    # patterns (each a pass over up to `limits.max_chars` characters) cannot match.
    digits = _DIGIT.search(text) is not None
    if not digits:
        wanted -= {"rrn", "card", "iban", "phone", "id_number"}  # and IPv4; an IPv6 address can be all letters
    lowered = text.lower()
    spelled_at = any(word in lowered for word in _SPELLED_AT)
    if "@" not in text and not spelled_at:
        wanted.discard("email")
    candidates: list[Span] = []
    if "secret" in wanted:
        for name, pattern in _SECRETS.items():
            if _SECRET_HINTS[name].could_match(text):
                keep = _KEEP_SECRET.get(name, lambda _: True)
                candidates += [Span("secret", name, s, e) for s, e in _kept_spans(pattern, text, keep)]
    if "email" in wanted:
        candidates += [
            Span("email", "email", m.start(), m.end())
            for m in _EMAIL.finditer(text)
            if not _SCP_PATH_AFTER.match(text, m.end())
        ]
        if spelled_at:
            candidates += [
                Span("email", "email_spelled_out", s, e)
                for s, e in _accepted_spans(_EMAIL_SPELLED, text, _spelled_email_end)
            ]
    if "rrn" in wanted:
        candidates += [
            Span("rrn", "rrn_checksum", s, e)
            for s, e in _matches(_RRN, text, lambda t: registration_number_ok(_digits(t)))
            if not _labelled_as_other_number(text, s)
        ]
    # IBAN before card: mod-97 is a far stronger check than Luhn, and one in ten IBANs has a run of digits
    # that passes Luhn.
    if "iban" in wanted:
        candidates += [Span("iban", "iban_mod97", s, e) for s, e in _accepted_spans(_IBAN, text, _iban_end)]
    if "card" in wanted:
        candidates += [
            Span("card", "card_luhn", s, e)
            for s, e in _matches(_CARD, text, _card_ok)
            if not _labelled_as_other_number(text, s)
        ]
    if "ip" in wanted:
        if digits:
            candidates += [
                Span("ip", "ipv4", s, e) for s, e in _matches(_IPV4, text, _ip_ok) if _ipv4_is_address(text, s, e)
            ]
        if ":" in text:
            # Five hex digits at least: "fe80::1" is an address, "a::b" in C++ is a scope.
            ipv6_ok = lambda t: ":" in t and len(_HEX_DIGIT.findall(t)) >= 5 and _ip_ok(t)  # noqa: E731
            candidates += [Span("ip", "ipv6", s, e) for s, e in _matches(_IPV6, text, ipv6_ok)]
    if "id_number" in wanted:
        # At least five digits after the label ("passport number renewal" holds none).
        id_ok = lambda value: len(_digits(value)) >= 5  # noqa: E731
        candidates += [Span("id_number", "id_labelled", s, e) for s, e in _matches(_ID_NUMBER, text, id_ok)]
    if "phone" in wanted:
        for name, pattern in _PHONES.items():
            candidates += [Span("phone", name, s, e) for s, e in _matches(pattern, text, _phone_ok)]
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
