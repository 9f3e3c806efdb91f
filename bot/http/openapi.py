"""The published OpenAPI schema (docs/openapi.json): written from the app, checked against it by the tests.

python -m bot.http.openapi docs/openapi.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

from bot.http.app import create_app
from bot.http.config import HttpConfig
from bot.pipeline import Pipeline


def schema() -> dict[str, Any]:
    """The schema of the routes; it does not depend on the pipeline or the settings, so none is loaded."""
    app = create_app(cast(Pipeline, None), HttpConfig(uploads_dir=Path("uploads")))
    return app.openapi()


def render() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/openapi.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render(), encoding="utf-8")
    print(f"wrote {target}")
