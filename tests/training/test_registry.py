"""The adapter registry: round trips, refusals that keep the previous state, damaged files, atomic writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from training.registry import (
    ACTIVE_FILE,
    CARD_FILE,
    AdapterCard,
    AdapterRegistry,
    RegistryError,
    same_model,
)

ROOT = Path(__file__).resolve().parents[2]
MODEL = "tiny-llama"


def adapter_folder(folder: Path, payload: bytes = b"weights") -> Path:
    """A stand-in for a peft adapter folder: the registry copies files, it never parses the weights."""
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}), encoding="utf-8")
    (folder / "adapter_model.safetensors").write_bytes(payload)
    (folder / "README.md").write_text("model card", encoding="utf-8")
    return folder


def card(name: str, created_at: str = "2026-01-01T00:00:00+00:00", **fields: Any) -> AdapterCard:
    values: dict[str, Any] = {"name": name, "kind": "sft", "base_model": MODEL, "created_at": created_at, **fields}
    return AdapterCard(**values)


@pytest.fixture()
def registry(tmp_path: Path) -> AdapterRegistry:
    return AdapterRegistry.in_data_dir(tmp_path / "data")


def add(registry: AdapterRegistry, tmp_path: Path, name: str, **fields: Any) -> Path:
    return registry.add(adapter_folder(tmp_path / "src" / name, name.encode()), card(name, **fields))


def test_round_trip(registry: AdapterRegistry, tmp_path: Path) -> None:
    data = {"path": "train.jsonl", "sha256": "ab" * 32, "rows": 12, "format": "chat"}
    # Added out of creation order: the list is by creation time, not by name or insertion.
    add(registry, tmp_path, "round-002", created_at="2026-02-01T10:00:00+00:00", parent="round-001")
    folder = add(registry, tmp_path, "round-001", data=data, arguments={"lr": 2e-4}, metrics={"final_loss": 1.5})

    assert folder == registry.root / "round-001" == registry.path("round-001")
    assert (folder / "adapter_model.safetensors").read_bytes() == b"round-001"
    files = {p.name for p in folder.iterdir()}
    assert files == {"adapter_config.json", "adapter_model.safetensors", "README.md", CARD_FILE}
    assert [c.name for c in registry.list()] == ["round-001", "round-002"]
    assert registry.card("round-001").data == data
    assert registry.card("round-002").parent == "round-001"

    registry.update_metrics("round-001", {"eval": {"token_f1": 0.4}})
    registry.update_metrics("round-001", {"eval": {"token_f1": 0.5}, "wins": 3})
    assert registry.card("round-001").metrics == {"final_loss": 1.5, "eval": {"token_f1": 0.5}, "wins": 3}
    assert registry.next_name() == "round-003"
    assert registry.next_name("sft") == "sft-001"


def test_activation_and_state_token(registry: AdapterRegistry, tmp_path: Path) -> None:
    assert registry.active() is None
    tokens = [registry.state_token()]
    add(registry, tmp_path, "a")
    add(registry, tmp_path, "b")
    assert registry.state_token() == tokens[0]  # adding is not activating
    for name in ["a", "b", "b", None]:
        registry.activate(name, model_name=MODEL)
        assert registry.active() == name
        tokens.append(registry.state_token())
    assert len(set(tokens)) == len(tokens)  # every activation, even of the same adapter, is a new state
    registry.update_metrics("b", {"x": 1})
    assert registry.state_token() == tokens[-1]


@pytest.mark.parametrize("name", ["../escape", ".hidden", "a/b", "none", "Base", "active.json", "", "x" * 81, "sp ace"])
def test_unsafe_names_are_refused(registry: AdapterRegistry, tmp_path: Path, name: str) -> None:
    source = adapter_folder(tmp_path / "src")
    with pytest.raises(RegistryError, match="is not allowed"):
        registry.add(source, card(name))
    assert registry.list() == []
    assert not (tmp_path / "escape").exists()


def test_add_refuses_an_existing_name_and_an_unfinished_folder(registry: AdapterRegistry, tmp_path: Path) -> None:
    add(registry, tmp_path, "a")
    with pytest.raises(RegistryError, match="already in"):
        registry.add(adapter_folder(tmp_path / "other", b"new"), card("a"))
    assert (registry.path("a") / "adapter_model.safetensors").read_bytes() == b"a"

    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "adapter_config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"missing adapter_model\.safetensors"):
        registry.add(unfinished, card("b"))
    assert [c.name for c in registry.list()] == ["a"]


def test_a_failed_copy_leaves_nothing(
    registry: AdapterRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_copytree = shutil.copytree

    def disk_fills_after_one_file(src: Any, dst: Any, **kwargs: Any) -> Any:
        copied: list[str] = []

        def copy(source: str, target: str) -> str:
            if copied:
                raise OSError(28, "No space left on device")
            copied.append(source)
            return shutil.copyfile(source, target)

        return real_copytree(src, dst, **{**kwargs, "copy_function": copy})

    source = adapter_folder(tmp_path / "src")
    monkeypatch.setattr(shutil, "copytree", disk_fills_after_one_file)
    with pytest.raises(RegistryError, match="No space left"):
        registry.add(source, card("round-001"))
    assert sorted(p.name for p in registry.root.iterdir()) == [".lock"]  # no adapter, no staging folder
    assert registry.list() == []

    monkeypatch.undo()
    assert registry.add(source, card("round-001")).is_dir()


def test_a_copy_killed_half_way_is_invisible_and_cleaned_up(registry: AdapterRegistry, tmp_path: Path) -> None:
    add(registry, tmp_path, "a")
    stale = registry.root / ".staging-b-0123abcd"  # what a kill -9 during `add` leaves
    adapter_folder(stale)
    assert [c.name for c in registry.list()] == ["a"]
    assert registry.scan().problems == []
    add(registry, tmp_path, "b")
    assert not stale.exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"{not json", "is damaged"),
        (b'{"name": "b", "kind": "lora", "base_model": "m", "created_at": "2026-01-01T00:00:00"}', "kind"),
        (b'{"name": "other", "kind": "sft", "base_model": "m", "created_at": "2026-01-01T00:00:00"}', "names 'other'"),
        (None, "is missing"),
    ],
)
def test_damaged_card_is_named_and_the_others_stay_usable(
    registry: AdapterRegistry, tmp_path: Path, content: bytes | None, problem: str
) -> None:
    add(registry, tmp_path, "a")
    add(registry, tmp_path, "b")
    registry.activate("a")
    card_file = registry.root / "b" / CARD_FILE
    if content is None:
        card_file.unlink()
    else:
        card_file.write_bytes(content)

    with pytest.raises(RegistryError, match=problem) as refused:
        registry.card("b")
    assert str(card_file) in str(refused.value)
    assert [c.name for c in registry.list()] == ["a"]
    assert len(registry.scan().problems) == 1 and str(card_file) in registry.scan().problems[0]
    with pytest.raises(RegistryError, match=problem):
        registry.activate("b")
    assert registry.active() == "a"
    with pytest.raises(RegistryError, match=problem):
        registry.update_metrics("b", {"x": 1})


@pytest.mark.parametrize("content", [b"{trunc", b"[1, 2]", b'{"name": "../etc"}', b"\xff\xfe"])
def test_damaged_pointer_is_named_and_can_be_rewritten(
    registry: AdapterRegistry, tmp_path: Path, content: bytes
) -> None:
    add(registry, tmp_path, "a")
    pointer = registry.root / ACTIVE_FILE
    pointer.write_bytes(content)
    with pytest.raises(RegistryError, match=r"pointer .* is damaged") as damaged:
        registry.active()
    assert str(pointer) in str(damaged.value)
    assert registry.state_token()  # watchers never fail on it
    assert [c.name for c in registry.list()] == ["a"]
    registry.activate("a")
    assert registry.active() == "a"


def test_refused_activations_keep_the_previous_adapter(registry: AdapterRegistry, tmp_path: Path) -> None:
    add(registry, tmp_path, "a")
    add(registry, tmp_path, "other", base_model="SomeOrg/Another-7B")
    registry.activate("a", model_name=MODEL)
    token = registry.state_token()

    with pytest.raises(RegistryError, match=r"No adapter named 'missing'.*registered: a, other"):
        registry.activate("missing", model_name=MODEL)
    with pytest.raises(RegistryError, match=f"trained on SomeOrg/Another-7B, but the configured model is {MODEL}"):
        registry.activate("other", model_name=MODEL)
    (registry.root / "a" / "adapter_model.safetensors").rename(tmp_path / "moved")
    with pytest.raises(RegistryError, match="incomplete"):
        registry.activate("a", model_name=MODEL)

    assert registry.active() == "a"
    assert registry.state_token() == token


@pytest.mark.parametrize(
    ("recorded", "configured", "same"),
    [
        ("SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct", True),
        ("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct", True),
        ("smollm2-135m-instruct", "SmolLM2-135M-Instruct", True),
        ("SmolLM2-360M-Instruct", "SmolLM2-135M-Instruct", False),
    ],
)
def test_same_model(recorded: str, configured: str, same: bool) -> None:
    assert same_model(recorded, configured) is same


WORKER = """
import sys
from pathlib import Path
from training.registry import AdapterRegistry

registry = AdapterRegistry(Path(sys.argv[1]))
me = sys.argv[2]
for i in range(int(sys.argv[3])):
    registry.activate("a" if i % 2 else "b")
    registry.update_metrics("a", {f"{me}-{i}": i})
"""


def test_two_processes_at_once_leave_a_valid_registry_and_lose_no_update(
    registry: AdapterRegistry, tmp_path: Path
) -> None:
    add(registry, tmp_path, "a")
    add(registry, tmp_path, "b")
    rounds = 25
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(registry.root), me, str(rounds)], env=env)
        for me in ("p1", "p2")
    ]
    reads = 0
    while any(worker.poll() is None for worker in workers):
        assert registry.active() in {None, "a", "b"}  # a reader never sees a half-written pointer
        assert registry.card("a").name == "a"
        reads += 1
    assert [worker.returncode for worker in workers] == [0, 0]
    assert registry.active() in {"a", "b"}
    metrics = registry.card("a").metrics
    assert set(metrics) == {f"{me}-{i}" for me in ("p1", "p2") for i in range(rounds)}
    assert reads > 0
    assert sorted(p.name for p in registry.root.iterdir() if p.name.endswith(".tmp")) == []
