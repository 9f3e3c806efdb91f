"""What /export sends: the feedback store's rated and corrected interactions as JSON lines.

One function, so that the datasets the training package builds from the same store can take its place.
Rater and user ids stay behind: a training set needs what was asked, answered and judged, not by whom.
"""

from __future__ import annotations

import json
from pathlib import Path

from bot.feedback import FeedbackStore

RATINGS_FILE = "ratings.jsonl"


def feedback_files(store: FeedbackStore, out_dir: Path) -> list[Path]:
    """Write the export into `out_dir`; returns the files to send (none when nothing has been rated yet)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "interaction_id": item.id,
            "created_at": item.created_at,
            "question": item.question,
            "answer": item.answer,
            "model": item.model,
            "adapter": item.adapter,
            "passage_ids": item.passage_ids,
            "ratings": [{"value": r.value, "score": r.score, "updated_at": r.updated_at} for r in item.ratings],
            "corrections": [{"text": c.text, "created_at": c.created_at} for c in item.corrections],
        }
        for item in store.interactions()
        if item.ratings or item.corrections
    ]
    if not rows:
        return []
    path = out_dir / RATINGS_FILE
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return [path]
