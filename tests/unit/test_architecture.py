"""The dependency direction and module-size rules, checked mechanically.

api → pipeline → (providers | billing | limits | tools) → store; translate/ depends on
nothing of ours but the usage type; provider SDKs only inside providers/; api/ never
touches the database layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "otari_gateway"
ROOT = "otari_gateway"

# Package areas and the areas each may import. Leaf modules (errors, usage, config,
# telemetry) are open to everyone.
LEAVES = {"errors", "usage", "config", "telemetry", "__init__"}
ALLOWED: dict[str, set[str]] = {
    "api": {"pipeline", "control"},
    "control": {"billing", "store"},
    "pipeline": {"providers", "billing", "limits", "tools", "store", "translate", "control"},
    "providers": {"store"},
    "billing": {"store"},
    "limits": {"store"},
    "tools": {"store"},
    "platform": {"store"},
    "store": set(),
    "translate": set(),
    "telemetry": set(),
}
WIRING = {"app", "cli", "__main__"}
PROVIDER_SDKS = {"openai", "anthropic", "any_llm", "boto3", "botocore", "google", "mistralai"}
DATABASE = {"sqlalchemy", "alembic", "asyncpg", "aiosqlite"}
MAX_LINES = 500
SIZE_ALLOWLIST: dict[str, str] = {}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _area(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_dependency_direction(path: Path) -> None:
    area = _area(path)
    if area in WIRING or area in LEAVES:
        return
    for name in _imports(path):
        top = name.split(".")[0]
        if top == ROOT:
            parts = name.split(".")
            target = parts[1] if len(parts) > 1 else "__init__"
            if target in LEAVES or target == area:
                continue
            assert target in ALLOWED[area], f"{area}/ must not import {name}"
        if top in PROVIDER_SDKS:
            assert area == "providers", f"provider SDK {name} imported outside providers/"
        if top in DATABASE:
            assert area == "store", f"{name} imported outside store/"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_translate_is_pure(path: Path) -> None:
    if _area(path) != "translate":
        return
    for name in _imports(path):
        top = name.split(".")[0]
        assert top in {
            "__future__",
            "collections",
            "dataclasses",
            "typing",
            "itertools",
            "orjson",
            ROOT,
        } or top in {"re", "enum", "base64", "time", "decimal"}, name
        if top == ROOT:
            assert name.startswith(("otari_gateway.translate", "otari_gateway.usage")), name


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_size_and_docstring(path: Path) -> None:
    relative = str(path.relative_to(PACKAGE))
    text = path.read_text(encoding="utf-8")
    lines = text.count("\n")
    if relative not in SIZE_ALLOWLIST:
        assert lines <= MAX_LINES, f"{relative} has {lines} lines; split it"
    if text.strip():
        assert ast.get_docstring(ast.parse(text)), f"{relative} needs a docstring stating its job"
