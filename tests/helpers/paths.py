"""Where the tests find the repository and the shared real data (``../shared/data``, may be absent)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
