"""The README documents every setting exactly as ``fenced settings`` prints it."""

from __future__ import annotations

from pathlib import Path

from service.cli import _settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_matches_the_code() -> None:
    text = README.read_text()
    table = text.split("<!-- settings:begin -->\n", 1)[1].split("\n<!-- settings:end -->", 1)[0]
    assert table.strip() == _settings_table().strip()
