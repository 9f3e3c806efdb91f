"""What the knowledge base hands back: passages to cite, and the report of an ingest."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Location:
    """Where a passage sits in its document: section (heading path) or page, and character offsets."""

    start: int
    end: int
    section: str | None = None
    page: int | None = None

    def __str__(self) -> str:
        where = [f"p. {self.page}"] if self.page is not None else []
        if self.section:
            where.append(f"§ {self.section}")
        where.append(f"chars {self.start}-{self.end}")
        return ", ".join(where)


@dataclass(frozen=True)
class Passage:
    id: str
    source: str
    title: str
    location: Location
    text: str
    score: float
    injection_rules: tuple[str, ...] = ()
    """Prompt-injection rules the text matched; such text must be quoted as data, never followed."""

    @property
    def injection_suspected(self) -> bool:
        return bool(self.injection_rules)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["location"] = str(self.location)
        data["offsets"] = {"start": self.location.start, "end": self.location.end}
        data["section"], data["page"] = self.location.section, self.location.page
        data["injection_rules"] = list(self.injection_rules)
        data["injection_suspected"] = self.injection_suspected
        return data


Outcome = Literal["added", "unchanged", "replaced", "failed"]


@dataclass(frozen=True)
class FileResult:
    name: str
    outcome: Outcome
    chunks: int = 0
    reason: str = ""


@dataclass
class IngestReport:
    results: list[FileResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(r.outcome == outcome for r in self.results)

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> dict[str, int]:
        return {o: self.count(o) for o in ("added", "unchanged", "replaced", "failed")}

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.summary(), "files": [asdict(r) for r in self.results]}
