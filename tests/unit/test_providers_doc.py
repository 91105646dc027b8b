"""docs/providers.md is the table the code generates, and the table says what the code does."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "generate_providers_doc.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate_providers_doc", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_providers_doc_is_up_to_date() -> None:
    script = _script()
    assert script.TARGET.read_text(encoding="utf-8") == script.render(), (
        "docs/providers.md is stale: run `uv run python scripts/generate_providers_doc.py`"
    )


def _row(table: str, provider_type: str) -> list[str]:
    for line in table.splitlines():
        if line.startswith(f"| `{provider_type}` |"):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"no row for {provider_type}")


def test_rows_follow_how_each_type_is_reached() -> None:
    table = _script().render()
    header = [cell.strip() for cell in table.split("| type |", 1)[1].split("\n", 1)[0].split("|")]
    columns = ["type", *[cell for cell in header if cell]]
    gemini = dict(zip(columns, _row(table, "gemini"), strict=True))
    assert gemini["reached by"] == "any-llm"
    assert gemini["chat"] == "✓"
    assert gemini["messages"] == "✓ᵗ"
    assert gemini["responses"] == "✓ᵗ"  # bridged over its chat
    assert gemini["install"] == "`[gemini]`"
    anthropic = dict(zip(columns, _row(table, "anthropic"), strict=True))
    assert anthropic["reached by"] == "passthrough"
    assert anthropic["chat"] == "✓ᵗ"
    assert anthropic["messages"] == "✓"
    voyage = dict(zip(columns, _row(table, "voyage"), strict=True))
    assert voyage["chat"] == voyage["streaming"] == "—"
    assert voyage["embeddings"] == "✓"
