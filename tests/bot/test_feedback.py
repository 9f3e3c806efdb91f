import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bot.errors import DomainbotError
from bot.feedback import FeedbackStore, InteractionRecord, UnknownInteraction


def record(question: str = "What is LoRA?", user: str = "u1") -> InteractionRecord:
    return InteractionRecord(
        question=question,
        answer="A low-rank adapter.",
        model="tiny",
        adapter="round-1",
        conversation_id="c1",
        user_id=user,
        channel="telegram",
        passage_ids=["guide.md#3"],
        timings={"generate": 0.5},
        verdicts={"input": "allowed"},
    )


@pytest.fixture()
def store() -> FeedbackStore:
    return FeedbackStore(":memory:")


def test_log_and_read_back(store: FeedbackStore) -> None:
    interaction_id = store.log(record())
    got = store.get(interaction_id)
    assert got.model_dump(include=set(InteractionRecord.model_fields)) == record().model_dump()
    assert got.ratings == [] and got.corrections == []


def test_a_rater_changing_their_mind_updates_the_rating(store: FeedbackStore) -> None:
    interaction_id = store.log(record())
    store.rate(interaction_id, 1, rater_id="alice")
    store.rate(interaction_id, -1, score=2, rater_id="alice")
    store.rate(interaction_id, 1, rater_id="bob")
    ratings = {r.rater_id: (r.value, r.score) for r in store.get(interaction_id).ratings}
    assert ratings == {"alice": (-1, 2), "bob": (1, None)}
    assert store.stats() == {"interactions": 1, "ratings_up": 1, "ratings_down": 1, "corrections": 0}


def test_corrections_attach_in_order(store: FeedbackStore) -> None:
    interaction_id = store.log(record())
    store.correct(interaction_id, "  Low-Rank Adaptation.  ", rater_id="alice")
    store.correct(interaction_id, "LoRA adds trainable low-rank matrices.", rater_id="bob")
    assert [c.text for c in store.get(interaction_id).corrections] == [
        "Low-Rank Adaptation.",
        "LoRA adds trainable low-rank matrices.",
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, i: s.rate(i, 0), "1 \\(up\\) or -1"),
        (lambda s, i: s.rate(i, 1, score=9), "between 1 and 5"),
        (lambda s, i: s.correct(i, "   "), "empty"),
        (lambda s, i: s.rate("no-such-id", 1), "No interaction"),
        (lambda s, i: s.correct("no-such-id", "x"), "No interaction"),
        (lambda s, i: s.forget_user(""), "needs a user id"),
    ],
)
def test_bad_calls_are_refused_and_change_nothing(store: FeedbackStore, call, message: str) -> None:
    interaction_id = store.log(record())
    with pytest.raises(DomainbotError, match=message):
        call(store, interaction_id)
    assert store.stats() == {"interactions": 1, "ratings_up": 0, "ratings_down": 0, "corrections": 0}


def test_forget_user_erases_only_their_interactions(store: FeedbackStore) -> None:
    mine = store.log(record(user="u1"))
    store.rate(mine, 1, rater_id="u1")
    store.correct(mine, "better", rater_id="u1")
    theirs = store.log(record(user="u2"))
    assert store.forget_user("u1") == 1
    with pytest.raises(UnknownInteraction):
        store.get(mine)
    assert [i.id for i in store.interactions()] == [theirs]
    assert store.stats()["ratings_up"] == 0 and store.stats()["corrections"] == 0


def test_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    FeedbackStore(path).close()
    again = FeedbackStore(path)
    assert again.migrate() == []
    names = [row[0] for row in again.db.execute("SELECT name FROM migrations")]
    assert names == ["m001_initial", "m002_prompt", "m003_conversation_state"]
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_store_from_before_logged_prompts_is_upgraded_without_loss(tmp_path: Path) -> None:
    import sqlite3

    from bot import feedback

    path = tmp_path / "feedback.sqlite3"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    feedback._m001_initial(old)
    old.execute("INSERT INTO migrations VALUES ('m001_initial', '2026-01-01T00:00:00+00:00')")
    old.execute(
        "INSERT INTO interactions VALUES ('old1', '2026-01-01T00:00:00+00:00', 'c', 'u', 'terminal', 'Q?', 'A.', "
        "'m', NULL, '[]', '{}', '{}')"
    )
    old.commit()
    old.close()
    store = FeedbackStore(path)
    assert store.get("old1").prompt == [] and store.get("old1").answer == "A."
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}]
    new = store.log(InteractionRecord(question="Q?", answer="B.", model="m", prompt=prompt))
    assert store.get(new).prompt == prompt


def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(DomainbotError, match="cannot be opened"):
        FeedbackStore(path)
    assert path.read_bytes() == b"not sqlite at all" * 100


def test_threads_share_one_store(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "feedback.sqlite3")
    ids: list[str] = []

    def work() -> None:
        for _ in range(25):
            interaction_id = store.log(record())
            store.rate(interaction_id, 1)
            ids.append(interaction_id)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(ids)) == 100
    assert store.stats()["interactions"] == 100 and store.stats()["ratings_up"] == 100


WRITER = """
import sys
from pathlib import Path
from bot.feedback import FeedbackStore, InteractionRecord
store = FeedbackStore(Path(sys.argv[1]))
for i in range(int(sys.argv[2])):
    interaction_id = store.log(InteractionRecord(question=f"q{i}", answer="a", model="m", user_id=sys.argv[3]))
    print(interaction_id, flush=True)
"""


def test_concurrent_writer_processes(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    FeedbackStore(path).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), "40", f"p{n}"], stdout=subprocess.PIPE, text=True)
        for n in range(3)
    ]
    printed = [proc.communicate(timeout=120)[0].split() for proc in writers]
    assert all(proc.returncode == 0 for proc in writers)
    store = FeedbackStore(path)
    assert {i.id for i in store.interactions()} == {i for ids in printed for i in ids}
    assert len(list(store.interactions(user_id="p1"))) == 40


def test_kill_9_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "100000", "k"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    committed = [proc.stdout.readline().strip() for _ in range(30)]
    time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    committed += proc.stdout.read().split()  # ids printed before the kill landed
    store = FeedbackStore(path)
    stored = {i.id for i in store.interactions()}
    assert set(committed) <= stored
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert sqlite3.connect(path).execute("SELECT COUNT(*) FROM interactions").fetchone()[0] == len(stored)


def test_a_pending_correction_is_taken_once_by_any_process(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    worker_a, worker_b = FeedbackStore(path), FeedbackStore(path)
    interaction_id = worker_a.log(record())
    worker_a.await_correction("telegram:5:5", interaction_id, "5", now=1000.0)
    assert worker_b.take_correction("telegram:6:6", max_age=60, now=1010.0) is None  # another conversation
    assert worker_b.take_correction("telegram:5:5", max_age=60, now=1010.0) == interaction_id
    assert worker_a.take_correction("telegram:5:5", max_age=60, now=1011.0) is None  # used up
    worker_a.await_correction("telegram:5:5", interaction_id, "5", now=1000.0)
    assert worker_b.take_correction("telegram:5:5", max_age=60, now=1061.0) is None  # too late, and gone
    assert worker_a.take_correction("telegram:5:5", max_age=60, now=1001.0) is None


def test_a_pending_correction_is_cancelled_erased_and_checked(store: FeedbackStore) -> None:
    interaction_id = store.log(record(user="u1"))
    with pytest.raises(UnknownInteraction):
        store.await_correction("c1", "no-such-id", "u1")
    store.await_correction("c1", interaction_id, "u1")
    assert store.cancel_correction("c1") and not store.cancel_correction("c1")
    other = store.log(record(user="u2"))
    store.await_correction("c2", other, "u1")  # u1 corrects u2's answer in a group
    store.forget_user("u1")
    assert store.take_correction("c2", max_age=60) is None
    store.await_correction("c3", other, "u3")
    store.forget_user("u2")  # the interaction goes, and the request with it
    assert store.take_correction("c3", max_age=60) is None


def test_the_last_answer_of_a_conversation_is_shared_reset_and_erased(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite3"
    worker_a, worker_b = FeedbackStore(path), FeedbackStore(path)
    first, second = worker_a.log(record(user="u1")), worker_a.log(record(user="u1"))
    cited = [{"number": 1, "source": "guide.md", "location": "p. 2", "snippet": "LoRA adds", "passage_id": "x1"}]
    assert worker_b.last_answer("c1") is None
    worker_a.remember_answer("c1", first, "u1", [])
    worker_a.remember_answer("c1", second, "u1", cited)
    assert worker_b.last_answer("c1") == (second, cited)
    worker_a.remember_answer("c2", "never-logged", "u2", cited)  # kept, without the link
    assert worker_b.last_answer("c2") == (None, cited)
    worker_a.await_correction("c1", second, "u1")
    worker_b.reset_conversation("c1")
    assert worker_a.last_answer("c1") is None and worker_a.take_correction("c1", max_age=60) is None
    worker_a.remember_answer("c1", second, "u1", cited)
    worker_b.forget_user("u1")
    assert worker_a.last_answer("c1") is None and worker_a.last_answer("c2") == (None, cited)
