"""`domainbot adapters list|show|activate` through the console entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli
from training.registry import CARD_FILE, AdapterCard, AdapterRegistry


@pytest.fixture()
def registry(tiny_settings: Any, tiny_model_dir: Path, tmp_path: Path) -> AdapterRegistry:
    """Two adapters of the configured (tiny) model and one of another model. Files only: nothing loads them."""
    registry = AdapterRegistry.in_data_dir(tiny_settings.data_dir)
    rows: list[tuple[str, str, dict[str, Any]]] = [
        ("sft-001", tiny_model_dir.name, {"final_loss": 2.25, "eval": {"token_f1": 0.31, "wins": 4}}),
        ("dpo-001", tiny_model_dir.name, {"final_loss": 0.69}),
        ("foreign", "SomeOrg/Another-7B", {}),
    ]
    for day, (name, base, metrics) in enumerate(rows, start=1):
        files = tmp_path / "files" / name
        files.mkdir(parents=True)
        (files / "adapter_config.json").write_text("{}", encoding="utf-8")
        (files / "adapter_model.safetensors").write_bytes(b"")
        card = AdapterCard(
            name=name,
            kind="dpo" if name.startswith("dpo") else "sft",
            base_model=base,
            created_at=f"2026-03-0{day}T12:00:00+00:00",
            data={"rows": 40 * day, "sha256": "0123456789abcdef" * 4},
            metrics=metrics,
            parent="sft-001" if name == "dpo-001" else None,
        )
        registry.add(files, card)
    return registry


def test_activate_list_and_show(
    capsys: pytest.CaptureFixture[str], registry: AdapterRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run_cli(capsys, "adapters", "activate", "dpo-001")
    assert code == 0 and "Active adapter: dpo-001." in out
    assert registry.active() == "dpo-001"

    code, out, err = run_cli(capsys, "adapters", "list", "--json")
    listing = json.loads(out)
    assert (code, err, listing["active"], listing["problems"]) == (0, "", "dpo-001", [])
    assert [(a["name"], a["active"]) for a in listing["adapters"]] == [
        ("sft-001", False),
        ("dpo-001", True),
        ("foreign", False),
    ]

    monkeypatch.setenv("COLUMNS", "200")  # one table row per line
    code, out, _ = run_cli(capsys, "adapters", "list")
    assert code == 0
    rows = {line.split("│")[2].strip(): line for line in out.splitlines() if line.count("│") > 5}
    assert set(rows) >= {"sft-001", "dpo-001", "foreign"}
    assert "*" in rows["dpo-001"].split("│")[1] and "*" not in rows["sft-001"].split("│")[1]
    assert "80 rows" in rows["dpo-001"] and "01234567" in rows["dpo-001"]
    assert "loss 2.25" in rows["sft-001"] and "F1 0.31" in rows["sft-001"] and "wins 4" in rows["sft-001"]
    assert "Active: dpo-001" in out

    code, out, _ = run_cli(capsys, "adapters", "show", "sft-001")
    assert code == 0 and json.loads(out) == registry.card("sft-001").model_dump()


@pytest.mark.parametrize(("args", "active"), [(["--base"], None), (["none"], None), (["sft-001"], "sft-001")])
def test_activate_forms(
    capsys: pytest.CaptureFixture[str], registry: AdapterRegistry, args: list[str], active: str | None
) -> None:
    registry.activate("dpo-001")
    code, _, _ = run_cli(capsys, "adapters", "activate", *args)
    assert code == 0
    assert registry.active() == active


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["foreign"], "trained on SomeOrg/Another-7B, but the configured model is"),
        (["missing"], "No adapter named 'missing'"),
        (["../x"], "No adapter named '../x'"),
        ([], "Name the adapter to activate"),
        (["sft-001", "--base"], "not both"),
    ],
)
def test_refused_activation_is_one_line_and_keeps_the_active_adapter(
    capsys: pytest.CaptureFixture[str], registry: AdapterRegistry, args: list[str], message: str
) -> None:
    registry.activate("sft-001")
    code, _, err = run_cli(capsys, "adapters", "activate", *args)
    assert code == 1
    assert message in err and len(err.strip().splitlines()) == 1
    assert registry.active() == "sft-001"


def test_damaged_files_are_reported_and_the_rest_listed(
    capsys: pytest.CaptureFixture[str], registry: AdapterRegistry
) -> None:
    (registry.root / "dpo-001" / CARD_FILE).write_text("{", encoding="utf-8")
    (registry.root / "active.json").write_text("[]", encoding="utf-8")
    code, out, err = run_cli(capsys, "adapters", "list", "--json")
    listing = json.loads(out)
    assert code == 0
    assert [a["name"] for a in listing["adapters"]] == ["sft-001", "foreign"]
    assert len(listing["problems"]) == 2
    assert str(registry.root / "dpo-001" / CARD_FILE) in listing["problems"][0]
    assert str(registry.root / "active.json") in listing["problems"][1]

    code, out, err = run_cli(capsys, "adapters", "list")
    assert code == 0 and "sft-001" in out
    assert err.count("warning:") == 2

    code, _, err = run_cli(capsys, "adapters", "show", "dpo-001")
    assert code == 1 and "is damaged" in err

    code, _, _ = run_cli(capsys, "adapters", "activate", "sft-001")  # rewrites the damaged pointer
    assert code == 0 and registry.active() == "sft-001"


def test_a_pinned_adapter_is_pointed_out(
    capsys: pytest.CaptureFixture[str], registry: AdapterRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOMAINBOT_ADAPTER", "sft-001")
    code, out, _ = run_cli(capsys, "adapters", "activate", "dpo-001")
    assert code == 0 and "DOMAINBOT_ADAPTER pins sft-001" in out


def test_empty_registry(capsys: pytest.CaptureFixture[str], tiny_settings: Any) -> None:
    code, out, _ = run_cli(capsys, "adapters", "list")
    assert code == 0 and "No adapters in" in out and "Active: " not in out
