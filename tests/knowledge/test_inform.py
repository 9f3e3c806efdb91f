import pytest

from knowledge.embedder import HashEmbedder
from knowledge.inform import (
    check_claims,
    is_abstention,
    lexical_overlap,
    specifics_agreement,
    split_claims,
    trim_repetition,
)

PASSAGES = [
    "The espresso machine needs about 25 seconds to heat up; it is ready when the green light stops blinking.",
    "All grinders carry a two-year warranty from the date of purchase at Brewtown.",
    "물통 용량은 1.8리터이며 분리해서 세척할 수 있습니다.",
]
embed = HashEmbedder(256).embed


def test_split_claims_keeps_offsets() -> None:
    answer = "First claim here. Second one!\nThird line without stop"
    claims = split_claims(answer)
    assert [text for text, _, _ in claims] == ["First claim here.", "Second one!", "Third line without stop"]
    assert all(answer[start:end] == text for text, start, end in claims)


def test_supported_claims_keep_correct_citations() -> None:
    report = check_claims("The machine heats up in about 25 seconds [1].", PASSAGES, embed)
    assert [c.verdict for c in report.claims] == ["supported"]
    assert report.claims[0].best_passage == 1
    assert report.answer == "The machine heats up in about 25 seconds [1]." and not report.changed


def test_wrong_and_missing_citations_are_repaired() -> None:
    report = check_claims(
        "Grinders have a two-year warranty from purchase [1]. The machine heats up in 25 seconds [9].",
        PASSAGES,
        embed,
    )
    assert report.answer == (
        "Grinders have a two-year warranty from purchase [2]. The machine heats up in 25 seconds [1]."
    )


def test_a_number_no_passage_states_is_unsupported() -> None:
    report = check_claims("The machine heats up in about 90 seconds [1].", PASSAGES, embed)
    claim = report.claims[0]
    assert claim.verdict == "unsupported"
    assert "number 90 not in the passage" in claim.reasons
    assert report.answer == "The machine heats up in about 90 seconds (unverified)."


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("annotate", "Grinders carry a two-year warranty [2]. Napoleon invented the grinder in Paris (unverified)."),
        ("drop", "Grinders carry a two-year warranty [2]."),
        ("refuse", ""),
    ],
)
def test_policies(policy: str, expected: str) -> None:
    answer = "Grinders carry a two-year warranty [2]. Napoleon invented the grinder in Paris."
    assert check_claims(answer, PASSAGES, embed, policy=policy).answer == expected  # type: ignore[arg-type]


def test_korean_claims_overlap_by_character_bigrams() -> None:
    report = check_claims("물통 용량은 1.8리터입니다 [3].", PASSAGES, embed)
    assert report.claims[0].verdict == "supported"
    assert lexical_overlap("물통 용량은 1.8리터입니다", PASSAGES[2]) > 0.6


def test_abstentions_and_fragments_are_not_checked() -> None:
    report = check_claims("I could not find that in the knowledge base. Sorry!", PASSAGES, embed)
    assert [c.verdict for c in report.claims] == ["skipped", "skipped"]
    assert report.answer == "I could not find that in the knowledge base. Sorry!"


def test_without_passages_every_claim_is_unsupported() -> None:
    report = check_claims("The warranty lasts two years.", [], embed, policy="drop")
    assert report.unsupported and report.answer == ""


def test_specifics() -> None:
    assert specifics_agreement("It costs 25 euros at Brewtown.", PASSAGES[1])[1] == ["number 25 not in the passage"]
    assert specifics_agreement("no specifics here", PASSAGES[0]) == (1.0, [])


def test_a_supported_claim_without_citation_gets_its_passage() -> None:
    report = check_claims("All grinders carry a two-year warranty from purchase.", PASSAGES, embed)
    assert report.answer == "All grinders carry a two-year warranty from purchase [2]."


@pytest.mark.parametrize(
    ("answer", "sentences"),
    [
        ("Founded by Dr. Mira Okonkwo in 1987. It grew.", ["Founded by Dr. Mira Okonkwo in 1987.", "It grew."]),
        ("Ask Mrs. Kim or J. Smith first! Then wait.", ["Ask Mrs. Kim or J. Smith first!", "Then wait."]),
        ("The tank holds 1.8 l. Clean it weekly.", ["The tank holds 1.8 l.", "Clean it weekly."]),
        ("물통은 1.8리터입니다. 세척하세요.", ["물통은 1.8리터입니다.", "세척하세요."]),
    ],
)
def test_titles_initials_and_decimals_do_not_end_a_sentence(answer: str, sentences: list[str]) -> None:
    assert [text for text, _, _ in split_claims(answer)] == sentences


def test_repetition_is_cut_at_the_first_repeated_sentence() -> None:
    looping = "It heats up in 25 seconds [1]. The light stops blinking. It heats up in 25 seconds [2]. More"
    assert trim_repetition(looping) == "It heats up in 25 seconds [1]. The light stops blinking."
    assert trim_repetition("One claim. Another claim.") == "One claim. Another claim."


def test_a_question_claims_nothing_and_abstentions_are_recognised() -> None:
    report = check_claims("How long is the grinder warranty at Brewtown?", PASSAGES, embed, policy="drop")
    assert [c.verdict for c in report.claims] == ["skipped"]
    assert is_abstention("I could not find this in the knowledge base.")
    assert not is_abstention("Grinders carry a two-year warranty.")


def test_an_invented_english_sentence_is_not_half_supported_by_shared_letters() -> None:
    invented = "The rating command is a tool that allows you to rate a document by its criteria."
    rating = "Each reply comes with a rating keyboard: thumbs up for a good answer, thumbs down for a bad one."
    # Most character bigrams of any two English sentences match; the words are what count.
    assert lexical_overlap(invented, rating) <= 0.25
    assert lexical_overlap("A user rates answers.", "A user who rates an answer") == 1.0  # word forms
    assert check_claims(invented, [rating], None).claims[0].verdict == "unsupported"
    # Korean keeps its bigrams: particles glue to the words.
    assert lexical_overlap("물통은 분리해서 세척할 수 있다", PASSAGES[2]) > 0.5


def test_the_first_word_of_a_sentence_is_not_a_name() -> None:
    assert specifics_agreement("Each grinder has a warranty.", PASSAGES[1]) == (1.0, [])
    assert specifics_agreement("Each grinder is sold at Beanly.", PASSAGES[1])[1] == ["name Beanly not in the passage"]


def test_an_english_claim_with_words_the_passage_lacks_is_unsupported_whatever_it_shares() -> None:
    rating = "Each reply comes with a rating keyboard: thumbs up for a good answer, thumbs down for a bad one."
    invented = "You can rate an answer by using the rating command in your browser."
    report = check_claims(invented, [rating], None)
    assert report.claims[0].verdict == "unsupported"
    assert report.claims[0].reasons == ["words not in the passage: browser, command, using"]
    # The same words in other forms, and one word of its own, still count as support.
    assert check_claims("You give a thumbs up to rate a good answer.", [rating], None).claims[0].verdict == "supported"
