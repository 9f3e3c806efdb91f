"""What /export sends: the training datasets built from the feedback store, each with its dataset card.

The same files `domainbot feedback export` writes: SFT rows (corrections and 👍 answers), DPO pairs and KTO
rows, with personal data masked and no rater or user ids (a training set needs what was asked, answered and
judged, not by whom). A kind with nothing to export yet (no 👎 answer for DPO, say) is left out.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bot.errors import DomainbotError
from bot.feedback import FeedbackStore


def feedback_files(store: FeedbackStore, out_dir: Path, mask: Callable[[str], str] | None = None) -> list[Path]:
    """Write the exports into `out_dir`; returns the files to send (none when nothing has been rated yet)."""
    from training.export import export_feedback

    files: list[Path] = []
    for fmt in ("sft", "dpo", "kto"):
        try:
            summary = export_feedback(store, fmt, out_dir, mask=mask)
        except DomainbotError:  # nothing of this kind to export yet
            continue
        files += [summary.path, summary.card_path]
    return files
