"""Personal data: what is masked, what checksums reject, and what the output rail lets through."""

from __future__ import annotations

import datetime

import pytest

from guardrails import Guardrails
from guardrails.pii import (
    find_pii,
    iban_ok,
    isbn13_ok,
    luhn_ok,
    mask_length,
    registration_number_ok,
)

# Obviously fake, assembled at run time so that no token-shaped literal sits in the repository.
FAKE_HF = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYz" + "0123456789"
FAKE_TELEGRAM = "1234" + "56789:" + "AAHfake" + "x" * 28
FAKE_AWS = "AKIA" + "FAKEFAKEFAKE" + "0000"
FAKE_STRIPE = "sk_" + "test_" + "FAKE0fake1FAKE2fake3"
FAKE_GITLAB = "glpat-" + "Fake" * 5
FAKE_SLACK_HOOK = "https://hooks.slack.com/services/" + "T0FAKE000/B0FAKE000/" + "Fake" * 6
FAKE_JWT = ".".join(["eyJ" + "hbGciOiJub25lIn0", "eyJ" + "zdWIiOiJmYWtlIn0", "ZmFrZXNpZ25hdHVyZQ"])
FAKE_OPENAI = "sk-" + "Fake" * 6 + "0000"
FAKE_WOLFRAM = "FAKE00-" + "0" * 10  # six and ten capitals or digits, as a WolframAlpha App ID
FAKE_GITHUB = "ghp_" + "0123456789" + "abcdefghij" + "ABCDEFGHIJ" + "012345"
FAKE_GOOGLE = "AIza" + "SyD-" + "0123456789" + "abcdefghij" + "ABCDEFGHIJK"

ALL_KINDS = ["email", "phone", "card", "rrn", "id_number", "ip", "iban", "secret"]


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("write to kim.minsu+bot@example.co.kr please", "email", "kim.minsu+bot@example.co.kr"),
        ("내 번호는 010-2345-6789 입니다", "phone", "010-2345-6789"),
        ("call 01098765432 tonight", "phone", "01098765432"),
        ("사무실 02-312-4567로 전화", "phone", "02-312-4567"),
        ("부산 051 123 4567", "phone", "051 123 4567"),
        ("reach me on +44 20 7946 0958", "phone", "+44 20 7946 0958"),
        ("US office (415) 555-0132", "phone", "(415) 555-0132"),
        ("card 4539 5787 6362 1486 exp 12/29", "card", "4539 5787 6362 1486"),
        ("mastercard 5555-5555-5555-4444", "card", "5555-5555-5555-4444"),
        ("주민번호 850315-2123450", "rrn", "850315-2123450"),
        ("rrn 0102033123451", "rrn", "0102033123451"),
        ("server at 203.0.113.45 is down", "ip", "203.0.113.45"),
        ("ipv6 2001:db8:85a3::8a2e:370:7334 here", "ip", "2001:db8:85a3::8a2e:370:7334"),
        ("an all-letter ipv6 dead:beef::cafe here", "ip", "dead:beef::cafe"),
        ("pay to DE89 3704 0044 0532 0130 00", "iban", "DE89 3704 0044 0532 0130 00"),
        ("iban GB82WEST12345698765432", "iban", "GB82WEST12345698765432"),
        ("token " + FAKE_HF, "secret", FAKE_HF),
        ("bot " + FAKE_TELEGRAM + " ok", "secret", FAKE_TELEGRAM),
        ("aws " + FAKE_AWS, "secret", FAKE_AWS),
        ("gh " + FAKE_GITHUB, "secret", FAKE_GITHUB),
        ("google " + FAKE_GOOGLE, "secret", FAKE_GOOGLE),
        ("stripe " + FAKE_STRIPE, "secret", FAKE_STRIPE),
        ("gitlab " + FAKE_GITLAB + " here", "secret", FAKE_GITLAB),
        ("hook " + FAKE_SLACK_HOOK, "secret", FAKE_SLACK_HOOK),
        ("bearer " + FAKE_JWT, "secret", FAKE_JWT),
        ("key " + FAKE_OPENAI, "secret", FAKE_OPENAI),
        ("WOLFRAM_APP_ID=" + FAKE_WOLFRAM, "secret", FAKE_WOLFRAM),
        ("my wolfram alpha app id is " + FAKE_WOLFRAM, "secret", FAKE_WOLFRAM),
        ("password: Fake-0000 please", "secret", "Fake-0000"),
        ("비밀번호는 fake1234 입니다", "secret", "fake1234"),
        ("write to kim_minsu@example.com", "email", "kim_minsu@example.com"),
        ("번호 010 - 2345 - 6789 로", "phone", "010 - 2345 - 6789"),
        ("대표번호 (02) 312-4567", "phone", "(02) 312-4567"),
        ("dial 0044 20 7946 0958 from Korea", "phone", "0044 20 7946 0958"),
        ("mail lee.j [at] example [dot] org", "email", "lee.j [at] example [dot] org"),
    ],
)
def test_pii_is_found_and_masked(rules_guard: Guardrails, text: str, kind: str, value: str) -> None:
    spans = find_pii(text, ALL_KINDS)
    assert [(s.kind, text[s.start : s.end]) for s in spans] == [(kind, value)]
    verdict = rules_guard.check_input(text)
    assert verdict.action == "masked" and verdict.rail == "pii" and verdict.category == kind
    assert value not in verdict.masked_text and f"[{kind.upper()}]" in verdict.masked_text


@pytest.mark.parametrize(
    "text",
    [
        "card 4539 5787 6362 1487 is a typo",  # Luhn fails
        "주민번호 850315-2123451",  # checksum fails
        "rrn 851315-2123450",  # month 13
        "version 999.1.2.3 of the tool",  # not an address
        "iban DE89 3704 0044 0532 0130 01",  # mod-97 fails
        "it costs 12,000 won and takes 3-4 days",
        "meeting at 10:30 on 2024-05-01",
        "localhost is 127.0.0.1",
        "the answer is 42 and pi is 3.14159",
        "upgrade to version 2.4.1.0 tonight",  # a dotted quad after a version word
        "see section 4.2.1.3 of the standard",
        "std::vector and Base::func are C++",  # not addresses inside words
        "what does a::b mean?",
        "the CSS class sk-spinner-double-bounce-container",  # no digits or capitals: not a key
        "the password is case-sensitive",  # no digit in the value
        "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
    ],
)
def test_lookalikes_with_bad_checksums_are_not_masked(rules_guard: Guardrails, text: str) -> None:
    assert find_pii(text, ALL_KINDS) == []
    assert rules_guard.check_input(text).action == "allowed"


def test_checksum_functions() -> None:
    assert luhn_ok("4539578763621486") and not luhn_ok("4539578763621487")
    ok = registration_number_ok
    assert ok("8503152123450") and not ok("8503152123451") and not ok("85031521234")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and not iban_ok("GB83 WEST 1234 5698 7654 32")


def test_several_kinds_in_one_message_are_all_masked(rules_guard: Guardrails) -> None:
    verdict = rules_guard.check_input("I'm a@b.io, 010-1111-2222, card 5555555555554444")
    assert verdict.masked_text == "I'm [EMAIL], [PHONE], card [CARD]"
    assert [f.category for f in verdict.findings] == ["email", "phone", "card"]


def test_output_masks_pii_found_in_neither_question_nor_passages(rules_guard: Guardrails) -> None:
    answer = "Contact the clinic at 02-312-4567 or Dr Kim at kim@clinic.example.com."
    in_passage = rules_guard.check_output("How do I book?", answer, ["Clinic phone: 02 312 4567"])
    assert in_passage.action == "masked"
    assert "02-312-4567" in in_passage.masked_text and "[EMAIL]" in in_passage.masked_text
    assert in_passage.rule == "leak.email"
    grounded = rules_guard.check_output(
        "Email kim@clinic.example.com?", answer, ["Clinic phone: 02-312-4567"]
    )
    assert grounded.action == "allowed" and grounded.masked_text == answer


def test_mask_pii_masks_without_running_the_other_rails() -> None:
    guard = Guardrails.load(embedder=None)
    masked = guard.mask_pii("mail alice@example.com about how to build a bomb")
    assert "alice@example.com" not in masked and "build a bomb" in masked


# Assembled at run time, like the fakes above.
_FAKE_GENERATED = "Fa" + "ke0Generated1Value2" + "xyz"


@pytest.mark.parametrize(
    "line",
    [
        f"PAYMENT_API_KEY={_FAKE_GENERATED}",
        f'"client_secret": "{_FAKE_GENERATED}",',
        f"auth_token: {_FAKE_GENERATED}",
        f"curl -H 'Authorization: Bearer {_FAKE_GENERATED}' https://api.example.com/v1/items",
        f"DATABASE_URL=postgres://shop:{_FAKE_GENERATED}@db:5432/shop",
    ],
)
def test_generated_values_assigned_to_key_names_are_masked(rules_guard: Guardrails, line: str) -> None:
    verdict = rules_guard.check_input(f"Why does the service reject this config?\n{line}\nLOG_LEVEL=debug")
    assert verdict.action == "masked", verdict
    assert _FAKE_GENERATED not in verdict.masked_text and "LOG_LEVEL=debug" in verdict.masked_text


@pytest.mark.parametrize(
    "line",
    [
        "API_KEY=${PAYMENT_API_KEY}",
        'client_secret = settings.OAUTH_CLIENT_SECRET',
        "auth_token: <your-token-here-1234567>",
        "max_tokens=4096",
        "secret_key = os.environ['SECRET_KEY']",
        "DATABASE_URL=postgres://shop:${DB_PASSWORD}@db:5432/shop",
        "ts=1714640401123 event_id=1187234567890123456 status=ok",
    ],
)
def test_names_and_placeholders_in_configs_are_not_masked(rules_guard: Guardrails, line: str) -> None:
    assert rules_guard.check_input(f"Is this config line right?\n{line}").action == "allowed"


def test_an_iban_whose_digits_pass_luhn_is_masked_as_an_iban() -> None:
    text = "pay to DE35 3704 0044 0532 0130 99 by Friday"
    assert luhn_ok("3537040044053201 30".replace(" ", ""))  # the trap: a card reading of its digits passes
    assert [span.kind for span in find_pii(text, ALL_KINDS)] == ["iban"]


@pytest.mark.parametrize(
    ("digits", "card"),
    [
        ("4539578763621486", True),
        ("2221000000000009", True),  # Mastercard 2-series
        ("2200000000000004", True),  # Mir
        ("9410000000000005", True),  # a domestic scheme (first digit 9)
        ("2100000000000005", False),  # 2, but in neither 2-series range
        ("1714640401126", False),  # passes Luhn, but a millisecond timestamp
        ("1187234567890123458", False),  # passes Luhn, but a snowflake ID
    ],
)
def test_cards_need_a_card_network_prefix(digits: str, card: bool) -> None:
    assert luhn_ok(digits)
    assert bool(find_pii(f"value {digits} here", ["card"])) is card


@pytest.mark.parametrize(
    "text",
    [
        "set the netmask to 255.255.255.224 on both interfaces",
        "the wildcard 0.0.0.127 matches half a /24",
        "network 172.16.0.0 0.0.255.255 area 1",
        "allow 10.8.0.0/16 through the tunnel",
        "subnet mask: 128.0.0.0 splits the space in two",
        "query the MIB object 1.3.6.1 first",
        "서브넷 마스크는 255.255.248.0 으로 바꿨어요",
        "펌웨어 버전 3.1.0.2 로 올렸더니 잘 돼요",
        # A section number, then the next one in the series without its word.
        "Clause 7.3.2.1 sets the deadline and 7.3.2.2 the penalty.",
    ],
)
def test_masks_oids_and_networks_are_not_addresses(rules_guard: Guardrails, text: str) -> None:
    verdict = rules_guard.check_input(text)
    assert verdict.allowed and verdict.masked_text == text, verdict


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("host 198.51.100.20 netmask 255.255.255.0", "host [IP] netmask 255.255.255.0"),
        ("netmask 255.255.255.0 gateway 192.168.50.1", "netmask 255.255.255.0 gateway [IP]"),
        ("the VM at 10.8.3.17/16 is unreachable", "the VM at [IP]/16 is unreachable"),
        ("mask 83.12.9.4 from the logs please", "mask [IP] from the logs please"),
        # A machine named right after a version in the same series is still a machine.
        ("patch it to v10.0.4.12, then ssh 10.0.4.13", "patch it to v10.0.4.12, then ssh [IP]"),
    ],
)
def test_addresses_next_to_masks_are_still_masked(rules_guard: Guardrails, text: str, masked: str) -> None:
    verdict = rules_guard.check_input(text)
    assert verdict.action == "masked", verdict
    assert verdict.masked_text == masked


@pytest.mark.parametrize(
    ("mask", "length"),
    [("255.255.255.0", 24), ("255.255.240.0", 20), ("0.0.15.255", 20), ("128.0.0.0", 1), ("255.255.255.255", 32)],
)
def testmask_length_reads_netmasks_and_wildcards(mask: str, length: int) -> None:
    assert mask_length(mask) == length


@pytest.mark.parametrize("value", ["255.0.255.0", "192.168.1.1", "10.0.0.255", "not an address"])
def testmask_length_rejects_what_is_not_a_mask(value: str) -> None:
    assert mask_length(value) is None


# More fakes, assembled at run time like the ones above.
FAKE_40 = "Fake0Example1" * 3 + "F"
FAKE_SENDGRID = "SG." + "Fake0" * 4 + "." + "Fake1" * 8
FAKE_WHSEC = "whsec_" + "Fake0" * 6
FAKE_TELEGRAM_URL = "https://api.telegram.org/bot" + FAKE_TELEGRAM + "/getMe"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("write to john dot doe at example dot com today", "john dot doe at example dot com"),
        ("contact: park.sy(at)example.org", "park.sy(at)example.org"),
        ("reach me at choi.dh(at)example.co.kr", "choi.dh(at)example.co.kr"),  # after a refused prose reading
        ("메일은 hong.gildong 골뱅이 example 닷 com 으로", "hong.gildong 골뱅이 example 닷 com"),
        ("minsu.kang 골뱅이 example 점 kr 입니다", "minsu.kang 골뱅이 example 점 kr"),
        ("email me: jsmith at example.com", "jsmith at example.com"),
        ("kim @ example.com is fine", "kim @ example.com"),
        ("lee＠example.co.kr 으로", "lee＠example.co.kr"),
    ],
)
def test_spelled_out_addresses_are_masked(text: str, value: str) -> None:
    assert [(s.kind, text[s.start : s.end]) for s in find_pii(text, ALL_KINDS)] == [("email", value)]


@pytest.mark.parametrize(
    "text",
    [
        "look at this dot product",  # prose " at " and " dot ": no real top-level domain
        "companies at the dot com peak",
        "Look at google.com for it",  # a word prose puts before "at"
        "jane at example.com said hi",  # a bare name, no word about mail before it
        "I work at acme dot com",
        "git clone git@github.com:acme/shop.git fails",  # an SSH remote
    ],
)
def test_prose_and_remotes_are_not_addresses(text: str) -> None:
    assert find_pii(text, ALL_KINDS) == []


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("아이 주민번호는 210315-3945807 이에요", "rrn", "210315-3945807"),  # since 2020: no check digit
        ("외국인등록번호: 910909-6796129", "rrn", "910909-6796129"),  # the foreigners' check digit
        ("iban de89 3704 0044 0532 0130 00", "iban", "de89 3704 0044 0532 0130 00"),  # lower case
        ("to DE89 3704 0044 0532 0130 00 IN EUR", "iban", "DE89 3704 0044 0532 0130 00"),  # capitals after
        ("code AB12 DE89 3704 0044 0532 0130 00", "iban", "DE89 3704 0044 0532 0130 00"),
        ("my AWS secret access key is " + FAKE_40, "secret", FAKE_40),
        ("AWS 시크릿 키는 " + FAKE_40 + " 입니다", "secret", FAKE_40),
        ("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=" + FAKE_40 + "=", "secret", FAKE_40 + "="),
        ("Authorization: Basic " + FAKE_40, "secret", FAKE_40),
        ("GET " + FAKE_TELEGRAM_URL, "secret", FAKE_TELEGRAM),
        ("redis://:" + FAKE_40 + "@cache:6379", "secret", FAKE_40),
        ("sendgrid " + FAKE_SENDGRID, "secret", FAKE_SENDGRID),
        ("stripe " + FAKE_WHSEC, "secret", FAKE_WHSEC),
        ("wifi password: sunflower-meadow", "secret", "sunflower-meadow"),
        ("비밀번호: 하늘바다-sky 로 바꿨어", "secret", "하늘바다-sky"),
    ],
)
def test_more_formats_are_masked(text: str, kind: str, value: str) -> None:
    assert [(s.kind, text[s.start : s.end]) for s in find_pii(text, ALL_KINDS)] == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "주문번호 8775744762168275 배송이 언제 되나요?",  # passes Luhn, but an order number
        "order #4539 5787 6362 1486 shipped",
        "ISBN 978-89-2245-383-8 책",  # a book number, whatever it passes
        "등기번호 8145421247201 배송 조회",
        "고객센터 1588-3000 으로 문의",  # nationwide business number
        "수신자부담 080-023-5000",  # toll-free
        "사업자등록번호 214-86-12345",  # a business's public id
        "법인등록번호 110111-0012343",
        "주민번호 900101-1234562 형식이 맞나요?",  # before 2020 and a bad check digit
        "주민번호 290101-3123456",  # born in the future
        "iban GB82WEST12345698765432X",  # runs on past its country's length
        "the password is case-sensitive",
        "Password: required",
        "password = os.environ['DB_PASSWORD']",
        "비밀번호는 10자리 이상이어야 합니다",
        "Basic Authentication is simple",
    ],
)
def test_more_lookalikes_are_not_masked(text: str) -> None:
    assert find_pii(text, ALL_KINDS) == []


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("Call me on 020 7946 0958 tomorrow", "phone", "020 7946 0958"),  # national: a phone word before it
        ("my mobile is 07700 900123", "phone", "07700 900123"),
        ("携帯 / mobile: 090-1234-5678", "phone", "090-1234-5678"),
        ("내 연락처는 031 123 4567 이야", "phone", "031 123 4567"),
        ("call 1-415-555-0132 after six", "phone", "1-415-555-0132"),  # North American, with the 1
        ("my ssn is 078-05-1120", "id_number", "078-05-1120"),
        ("Passport No. X1234567 expires soon", "id_number", "X1234567"),
        ("운전면허번호 11-12-345678-90 입니다", "id_number", "11-12-345678-90"),
        ("my NI number is QQ 12 34 56 C, thanks", "id_number", "QQ 12 34 56 C"),  # UK National Insurance
        ("SIN: 046 454 286", "id_number", "046 454 286"),  # Canadian social insurance
        ("driving licence number: MORGA753116SM9IJ", "id_number", "MORGA753116SM9IJ"),  # UK: surname first
        ("mi DNI es 12345678Z", "id_number", "12345678Z"),  # Spanish national ID
        ("Aadhaar number 2345 6789 0123 on the form", "id_number", "2345 6789 0123"),
    ],
)
def test_labelled_national_phones_and_identity_numbers_are_masked(text: str, kind: str, value: str) -> None:
    assert [(s.kind, text[s.start : s.end]) for s in find_pii(text, ALL_KINDS)] == [(kind, value)]


@pytest.mark.parametrize(
    "text",
    [
        "call 1-800-555-0199 for support",  # toll-free: a business's, as 080 is in Korea
        "the sin of pride, told 12345 times over",  # "sin" names a number only before a colon or "number"
        "the 0312 model has a better camera",  # no phone word before it
        "invoice 020 7946 0958 is overdue",  # the same digits, not called a phone
        "my passport number changes every ten years",  # a label with no number after it
        "SSN format is three digits, two, then four",
    ],
)
def test_unlabelled_numbers_and_toll_free_lines_are_not_masked(text: str) -> None:
    assert find_pii(text, ALL_KINDS) == []


def test_an_order_label_does_not_hide_a_card_named_after_it() -> None:
    text = "Order #1234 paid with card 4539 5787 6362 1486"
    assert [s.kind for s in find_pii(text, ALL_KINDS)] == ["card"]


@pytest.mark.parametrize(
    ("digits", "ok"),
    [
        ("8503151141737", True),  # resident, check digit right
        ("8503151141738", False),
        ("8604205977037", True),  # foreigner, foreigners' check digit
        ("8604205147975", True),  # foreigner, residents' check digit
        ("8604201147975", False),  # the same digits as a resident's number
        ("2103153945807", True),  # born 2021: random last digits
        ("2009303945807", False),  # born September 2020, before the change: needs its check digit
        ("0402304946561", False),  # 30 February
        ("2601013123456", False),  # born after `today`
    ],
)
def test_registration_numbers(digits: str, ok: bool) -> None:
    assert registration_number_ok(digits, today=datetime.date(2025, 6, 1)) is ok


def test_isbn13() -> None:
    assert isbn13_ok("9788922453838") and not isbn13_ok("9788922453839") and not isbn13_ok("8809514547528")
