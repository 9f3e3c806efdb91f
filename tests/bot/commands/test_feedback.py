"""`domainbot feedback export` and `feedback stats`, end to end through the console entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.feedback import FeedbackStore, InteractionRecord
from tests.helpers import run_cli
from training.datasets import load_preferences


@pytest.fixture()
def rated_store(clean_env: Path) -> Path:
    """The data folder's store with one question answered well, badly and then corrected."""
    store = FeedbackStore.in_data_dir(clean_env)
    for answer, vote in (("Use the reset link.", 1), ("Mail root@example.com.", -1)):
        interaction = store.log(InteractionRecord(question="How do I reset my password?", answer=answer, model="m"))
        store.rate(interaction, vote)
    store.close()
    return clean_env


def test_export_writes_file_card_and_prints_summary(capsys: pytest.CaptureFixture[str], rated_store: Path) -> None:
    code, out, err = run_cli(capsys, "feedback", "export", "--format", "dpo", "--json")
    assert code == 0, err
    summary = json.loads(out)
    path = Path(summary["path"])
    assert path.parent == rated_store / "exports" and Path(summary["card_path"]).is_file()
    [pair] = load_preferences(path)
    assert (pair.chosen, pair.rejected) == ("Use the reset link.", "Mail [EMAIL].")

    code, out, _ = run_cli(capsys, "feedback", "export", "-f", "kto", "--style", "llamafactory", "--out", "elsewhere")
    assert code == 0
    assert "wrote 2 KTO row(s), llamafactory style" in out and "dataset_info.json" in out
    assert len(list(Path("elsewhere").glob("feedback-kto-llamafactory-*.jsonl"))) == 1


def test_stats_counts_exportable_rows(capsys: pytest.CaptureFixture[str], rated_store: Path) -> None:
    code, out, _ = run_cli(capsys, "feedback", "stats", "--json")
    report = json.loads(out)
    assert code == 0
    assert (report["interactions"], report["ratings_up"], report["ratings_down"]) == (2, 1, 1)
    assert report["exportable"]["rows"] == {"sft": 1, "dpo": 1, "kto": 2}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["feedback", "export", "--format", "sft"], "No feedback store at"),
        (["feedback", "export", "--format", "ppo"], "Expected --format sft, dpo or kto, got 'ppo'"),
        (["feedback", "export", "--format", "sft", "--style", "axolotl"], "got 'axolotl'"),
        (["feedback", "stats"], "No feedback store at"),
    ],
)
def test_bad_requests_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], clean_env: Path, args: list[str], fragment: str
) -> None:
    code, out, err = run_cli(capsys, *args)
    assert code == 1 and out == ""
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert not clean_env.exists()  # asking created no store and no data folder


def test_empty_export_is_an_error_and_leaves_no_file(capsys: pytest.CaptureFixture[str], clean_env: Path) -> None:
    FeedbackStore.in_data_dir(clean_env).close()
    code, _, err = run_cli(capsys, "feedback", "export", "--format", "sft")
    assert code == 1 and "Nothing to export as SFT" in err and "no interactions yet" in err
    assert not (clean_env / "exports").exists()
