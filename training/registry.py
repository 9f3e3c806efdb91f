"""The adapter registry: every round's LoRA adapter with its card, and the pointer to the one the bot serves.

Layout under `<data_dir>/adapters/`:

    <name>/adapter_config.json       the peft adapter folder, as the round saved it
    <name>/adapter_model.safetensors
    <name>/card.json                 AdapterCard: kind, base model, data hash, arguments, metrics
    active.json                      {"name": ..., "activated_at": ..., "change": ...}; absent: the base model
    .lock                            held around every change, so two processes cannot interleave theirs

Every file is written beside its target and moved over it with `os.replace`, and a new adapter is copied into
a hidden staging folder that is renamed to its name only when complete: a reader sees the old state or the
new one, never half of either. A damaged card or pointer is reported with its path and leaves the rest usable.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock, Timeout
from pydantic import BaseModel, Field, ValidationError, field_validator

from bot.errors import DomainbotError

log = logging.getLogger(__name__)

REGISTRY_DIR = "adapters"
CARD_FILE = "card.json"
ACTIVE_FILE = "active.json"
LOCK_FILE = ".lock"
STAGING_PREFIX = ".staging-"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
# Names become folder names and appear in commands: letters, digits, '.', '_' and '-', not starting with a dot.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,79}")
# `adapters activate none|base` means the base model, and the pointer file lives beside the adapter folders.
RESERVED_NAMES = frozenset({"none", "base", ACTIVE_FILE})
LOCK_TIMEOUT_S = 30.0
BASE_TOKEN = "base"


class RegistryError(DomainbotError):
    """The registry refused a change or found a damaged file; nothing stored was changed by the refusal."""


class AdapterCard(BaseModel):
    """What the registry records about one adapter, beside its weights."""

    name: str
    kind: Literal["sft", "dpo", "kto", "imported"]
    base_model: str = Field(description="The model it was trained on: the loader's name for it (the folder name).")
    created_at: str = Field(description="ISO 8601, UTC.")
    data: dict[str, Any] = Field(default_factory=dict, description="e.g. path, sha256, rows, format.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="The training arguments.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Training metrics; evaluations add theirs.")
    parent: str | None = Field(None, description="The adapter this round started from.")

    @field_validator("created_at")
    @classmethod
    def _iso_timestamp(cls, value: str) -> str:
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"expected an ISO 8601 timestamp, got {value!r}") from None
        return value

    @field_validator("base_model")
    @classmethod
    def _named_model(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("expected the name of the model the adapter was trained on, got an empty string")
        return value

    def created(self) -> datetime:
        stamp = datetime.fromisoformat(self.created_at)
        return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


@dataclass
class Listing:
    """Every adapter whose card reads, oldest first, and one message per folder that does not."""

    cards: list[AdapterCard] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def check_name(name: str) -> str:
    """The name unchanged if it can be an adapter's folder name; a RegistryError saying why not otherwise."""
    if not NAME_PATTERN.fullmatch(name) or name.lower() in RESERVED_NAMES:
        raise RegistryError(
            f"Adapter name {name!r} is not allowed: expected 1-80 letters, digits, '.', '_' or '-', starting with "
            f"a letter or digit, and none of {', '.join(sorted(RESERVED_NAMES))}."
        )
    return name


def same_model(recorded: str, configured: str) -> bool:
    """Whether an adapter's recorded base model is the configured one. A hub id and a folder of the same model
    share the last path part ('org/SmolLM2-135M-Instruct' and '.../SmolLM2-135M-Instruct')."""
    return recorded.rstrip("/").rsplit("/", 1)[-1].casefold() == configured.rstrip("/").rsplit("/", 1)[-1].casefold()


class AdapterRegistry:
    """The adapters in one folder, their cards, and which one is active."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def in_data_dir(cls, data_dir: Path) -> AdapterRegistry:
        return cls(data_dir / REGISTRY_DIR)

    # --- reading ------------------------------------------------------------------------------------------

    def scan(self) -> Listing:
        """Every readable card, oldest first, and what is wrong with each folder whose card does not read."""
        listing = Listing()
        if not self.root.is_dir():
            return listing
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir() or folder.name.startswith("."):
                continue
            try:
                listing.cards.append(self._read_card(folder.name))
            except RegistryError as exc:
                listing.problems.append(str(exc))
        listing.cards.sort(key=lambda card: (card.created(), card.name))
        return listing

    def list(self) -> builtins.list[AdapterCard]:
        """Every adapter whose card reads, oldest first; a damaged one is logged and left out."""
        listing = self.scan()
        for problem in listing.problems:
            log.warning("%s", problem)
        return listing.cards

    def card(self, name: str) -> AdapterCard:
        return self._read_card(self._existing(name))

    def path(self, name: str) -> Path:
        return self.root / self._existing(name)

    def resolve(self, value: str) -> Path:
        """The adapter folder `value` names: an existing folder path first, else a registered adapter's name."""
        folder = Path(value).expanduser()
        if folder.is_dir():
            return folder
        if len(folder.parts) == 1 and (self.root / folder.name / CARD_FILE).is_file():
            return self.root / folder.name
        known = ", ".join(card.name for card in self.scan().cards) or "none yet"
        raise RegistryError(
            f"No adapter folder at {folder} and no registered adapter named {value!r} (registered: {known})."
        )

    def active(self) -> str | None:
        """The active adapter's name, or None for the base model (also when nothing was ever activated)."""
        pointer = self.root / ACTIVE_FILE
        try:
            data = json.loads(pointer.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise self._damaged_pointer(pointer, _first_line(exc)) from None
        if not isinstance(data, dict) or "name" not in data:
            raise self._damaged_pointer(pointer, "expected a JSON object with a 'name'")
        name = data["name"]
        if name is None:
            return None
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise self._damaged_pointer(pointer, f"'name' is {name!r}, not an adapter name")
        return name

    def state_token(self) -> str:
        """Changes whenever the active adapter is set (each write carries a fresh id); a file read, no parsing.
        Never raises: an unreadable pointer gives a token of its own, and `active()` explains it."""
        try:
            content = (self.root / ACTIVE_FILE).read_bytes()
        except FileNotFoundError:
            return BASE_TOKEN
        except OSError as exc:
            return f"unreadable:{exc.errno}"
        return hashlib.sha256(content).hexdigest()[:16]

    def next_name(self, prefix: str = "round") -> str:
        """The first unused '<prefix>-NNN' after the highest one present: round-001, round-002, ..."""
        check_name(prefix)
        numbered = re.compile(re.escape(prefix) + r"-(\d+)")
        highest = 0
        if self.root.is_dir():
            for folder in self.root.iterdir():
                match = numbered.fullmatch(folder.name)
                if match:
                    highest = max(highest, int(match.group(1)))
        return f"{prefix}-{highest + 1:03d}"

    def check_fits(self, name: str, model_name: str) -> AdapterCard:
        """The adapter's card, if it was trained on `model_name`; a RegistryError naming both models otherwise."""
        card = self.card(name)
        if not same_model(card.base_model, model_name):
            raise RegistryError(
                f"Adapter {name} was trained on {card.base_model}, but the configured model is {model_name}. "
                "Activate an adapter of this model, or set DOMAINBOT_MODEL to the adapter's base model."
            )
        return card

    # --- changing -----------------------------------------------------------------------------------------

    def add(self, source: Path, card: AdapterCard) -> Path:
        """Copy the finished peft adapter folder `source` in under `card.name`, with its card; returns its folder.

        The copy is made in a hidden staging folder and renamed into place when complete, so a failure (or a
        kill) leaves no adapter under the name.
        """
        name = check_name(card.name)
        missing = [file for file in ADAPTER_FILES if not (source / file).is_file()]
        if not source.is_dir() or missing:
            raise RegistryError(
                f"{source} is not a finished peft adapter folder: expected {' and '.join(ADAPTER_FILES)}, "
                f"missing {', '.join(missing) if source.is_dir() else 'the folder itself'}."
            )
        with self._locked():
            target = self.root / name
            if target.exists():
                raise RegistryError(f"An adapter named {name} is already in {self.root}; choose another name.")
            self._remove_stale_staging()
            staging = self.root / f"{STAGING_PREFIX}{name}-{uuid.uuid4().hex[:8]}"
            try:
                shutil.copytree(source, staging, ignore=shutil.ignore_patterns(CARD_FILE, ".*"))
                for copied in staging.rglob("*"):
                    if copied.is_file():
                        _fsync(copied)
                _write_atomic(staging / CARD_FILE, card.model_dump_json(indent=2))
                os.rename(staging, target)
                _fsync_dir(self.root)
            except OSError as exc:
                shutil.rmtree(staging, ignore_errors=True)
                raise RegistryError(f"Could not copy adapter {name} from {source} into {self.root}: {exc}") from exc
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
        return target

    def update_metrics(self, name: str, metrics: dict[str, Any]) -> None:
        """Merge `metrics` into the card's metrics (top-level keys replace their old values)."""
        with self._locked():
            card = self.card(name)
            card.metrics = {**card.metrics, **metrics}
            try:
                _write_atomic(self.root / card.name / CARD_FILE, card.model_dump_json(indent=2))
            except (OSError, TypeError, ValueError) as exc:
                raise RegistryError(f"Could not record metrics for adapter {name}: {_first_line(exc)}") from exc

    def activate(self, name: str | None, model_name: str | None = None) -> None:
        """Make `name` the adapter the bot serves (None: the base model). Refused, with the previous choice
        kept, when the adapter is unknown, damaged, or (given `model_name`) trained on another model."""
        with self._locked():
            if name is not None:
                card = self.check_fits(name, model_name) if model_name is not None else self.card(name)
                missing = [file for file in ADAPTER_FILES if not (self.root / card.name / file).is_file()]
                if missing:
                    raise RegistryError(
                        f"Adapter {name} in {self.root} is incomplete ({', '.join(missing)} missing); "
                        "it cannot be activated."
                    )
            pointer = {
                "name": name,
                "activated_at": datetime.now(UTC).isoformat(timespec="seconds"),
                # A fresh id per write: re-activating the same adapter still changes state_token().
                "change": uuid.uuid4().hex,
            }
            try:
                _write_atomic(self.root / ACTIVE_FILE, json.dumps(pointer, indent=2))
            except OSError as exc:
                raise RegistryError(f"Could not write {self.root / ACTIVE_FILE}: {exc}") from exc

    # --- internals ----------------------------------------------------------------------------------------

    def _existing(self, name: str) -> str:
        if not NAME_PATTERN.fullmatch(name) or not (self.root / name).is_dir():
            known = ", ".join(card.name for card in self.scan().cards) or "none yet"
            raise RegistryError(
                f"No adapter named {name!r} in {self.root} (registered: {known}). `domainbot adapters list` "
                "shows them."
            )
        return name

    def _read_card(self, name: str) -> AdapterCard:
        path = self.root / name / CARD_FILE
        try:
            card = AdapterCard.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise RegistryError(f"Adapter card {path} is missing: the folder is not a registered adapter.") from None
        except OSError as exc:
            raise RegistryError(f"Adapter card {path} cannot be read: {exc}") from None
        except ValidationError as exc:
            problem = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg']}" for e in exc.errors())
            raise RegistryError(f"Adapter card {path} is damaged: {problem}.") from None
        if card.name != name:
            raise RegistryError(f"Adapter card {path} is damaged: it names {card.name!r}, its folder is {name!r}.")
        return card

    def _damaged_pointer(self, pointer: Path, problem: str) -> RegistryError:
        return RegistryError(
            f"The active-adapter pointer {pointer} is damaged ({problem}). Rewrite it with "
            "`domainbot adapters activate NAME` (or `--base`)."
        )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"Cannot create the adapter registry folder {self.root}: {exc}") from exc
        lock = FileLock(str(self.root / LOCK_FILE), timeout=LOCK_TIMEOUT_S)
        try:
            with lock:
                yield
        except Timeout:
            raise RegistryError(
                f"Another process has held the registry lock {self.root / LOCK_FILE} for {LOCK_TIMEOUT_S:.0f} s; "
                "try again when it has finished."
            ) from None

    def _remove_stale_staging(self) -> None:
        """Staging folders left by a killed copy (only `add` makes them, and it holds the lock throughout)."""
        for folder in self.root.glob(STAGING_PREFIX + "*"):
            shutil.rmtree(folder, ignore_errors=True)


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` beside `path`, flush it to disk, then move it over `path`: readers see old or new, whole."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable; some platforms cannot open folders, and there it is skipped."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
