"""The shipped model, converted once for the whole session and shared by the integration tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.model import embedded


@pytest.fixture(scope="session")
def prepared_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One conversion shared by the session: the first start of a fresh data folder. Tests that damage the
    cache work on a copy."""
    models = tmp_path_factory.mktemp("models")
    folder, converted = embedded.ensure_embedded_model(models)
    assert converted
    assert embedded.cache_problem(folder, embedded.find_embedded_gguf()) is None
    return models


def use_models(monkeypatch: pytest.MonkeyPatch, models: Path) -> None:
    monkeypatch.setenv("DOMAINBOT_MODEL_CACHE_DIR", str(models))
