"""Write docs/public/openapi.json from the app, or with --check fail if it is stale."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import orjson

from otari_gateway.app import create_app
from otari_gateway.config import build_config

TARGET = Path(__file__).resolve().parent.parent / "docs" / "public" / "openapi.json"


def render() -> bytes:
    config = build_config({"master_key": "openapi-generation"}, environ={})
    document = create_app(config, environ={}).openapi()
    return orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args()
    document = render()
    if args.check:
        if not TARGET.exists() or TARGET.read_bytes() != document:
            print(f"{TARGET} is out of date: run `uv run python scripts/generate_openapi.py`")
            return 1
        print(f"{TARGET} is up to date")
        return 0
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    TARGET.write_bytes(document)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
