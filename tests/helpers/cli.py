"""What the CLI tests assert of a user error's output."""

from __future__ import annotations

from typing import Any


def one_error_line(result: Any) -> str:  # click.testing.Result
    """The single ``error: ...`` line a user error prints (exit 2, no traceback)."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]
