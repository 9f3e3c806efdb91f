from knowledge.embedder import HashEmbedder
from knowledge.extractive import (
    SentenceMatch,
    adds_to,
    answer_relevance,
    coverage,
    drop_headings,
    extractive_answer,
    passage_sentences,
    rank_sentences,
)

embed = HashEmbedder(256).embed
SETTINGS = """Knowledge base settings

- DOMAINBOT_CHUNK_TOKENS: the most tokens in one passage, 200 by
  default.
- DOMAINBOT_MAX_DOCUMENT_MB: the largest file the knowledge base accepts, 20 megabytes by default."""
RATING = """Rating an answer

Each reply comes with a rating keyboard: thumbs up for a good answer, thumbs down for a bad
one. A user who rates an answer down can also send a corrected answer."""


def test_passage_sentences_unwrap_lines_and_leave_out_headings_and_list_marks() -> None:
    assert passage_sentences(SETTINGS) == [
        "DOMAINBOT_CHUNK_TOKENS: the most tokens in one passage, 200 by default.",
        "DOMAINBOT_MAX_DOCUMENT_MB: the largest file the knowledge base accepts, 20 megabytes by default.",
    ]
    assert passage_sentences(RATING)[0].endswith("thumbs down for a bad one.")


def test_coverage_matches_word_forms() -> None:
    assert coverage("How do I rate an answer?", "A user who rates an answer down") == 1.0
    assert coverage("How do I rate an answer?", "Backups run nightly.") == 0.0


def test_extractive_answer_cites_the_best_sentences_in_reading_order() -> None:
    matches = rank_sentences("How do I rate an answer?", [SETTINGS, RATING], embed)
    assert matches[0].passage == 2 and matches[0].text.startswith("A user who rates an answer down")
    best = "A user who rates an answer down can also send a corrected answer [2]."
    assert extractive_answer(matches, threshold=0.3) == best
    assert extractive_answer(matches, threshold=0.99) == ""
    assert extractive_answer([], threshold=0.0) == ""
    # A second sentence nearly as good joins the best one; one passage's sentences keep their order.
    close = [
        SentenceMatch(passage=1, text="Later sentence: ends with a colon:", score=0.8, order=3),
        SentenceMatch(passage=1, text="Earlier sentence!", score=0.75, order=0),
        SentenceMatch(passage=2, text="Far behind.", score=0.5, order=0),
    ]
    assert extractive_answer(close, threshold=0.6) == "Earlier sentence [1]. Later sentence: ends with a colon [1]."


def test_answer_relevance_tells_an_answer_from_a_supported_digression() -> None:
    question = "How do I rate an answer?"
    on_topic = answer_relevance(question, "You rate an answer with thumbs up or thumbs down [2].", embed)
    off_topic = answer_relevance(question, "The largest file the knowledge base accepts is 20 megabytes [1].", embed)
    assert on_topic > off_topic + 0.15
    assert answer_relevance(question, "", embed) == 0.0


def test_a_restatement_of_the_question_adds_nothing() -> None:
    question = "What happens when no Telegram token is set?"
    assert not adds_to(question, "No Telegram token is set [2].")
    assert adds_to(question, "Without a token, domainbot starts a chat in the terminal [2].")


def test_copied_headings_are_dropped_from_an_answer() -> None:
    answer = "Rating an answer [1]. A user who rates an answer down can also send a corrected answer [1]."
    assert drop_headings(answer, [RATING]) == "A user who rates an answer down can also send a corrected answer [1]."
    assert drop_headings("Nothing copied here.", [RATING]) == "Nothing copied here."


def test_a_sections_heading_and_the_search_rank_count_for_its_sentences() -> None:
    """The sentence under "Adding documents" answers "How do I add documents?" without saying "documents";
    its heading covers that word, and a search that ranked its passage first adds to its score."""
    question = "How do I add documents?"
    body = "Run `domainbot kb add PATH` with files, folders or glob patterns."
    intro = "The knowledge base\n\nOperators add their domain's documents to it with the command line."

    def scores(adding: str, retrieval: list[float] | None = None) -> dict[int, float]:
        return {m.passage: m.score for m in rank_sentences(question, [adding, intro], embed, retrieval)}

    headless, headed = scores(body), scores(f"Adding documents\n\n{body}")
    assert headed[1] >= headless[1] + 0.1  # coverage 1/2 -> 2/2
    searched = scores(f"Adding documents\n\n{body}", [0.82, 0.6])
    assert searched[1] - searched[2] > headed[1] - headed[2]
