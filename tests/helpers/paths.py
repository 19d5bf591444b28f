"""Where the tests find the repository and the shared real data (``../shared/data``, may be absent)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: ``EMOFLOW_SHARED_DATA`` points elsewhere (e.g. a copy carried to a GPU machine)
SHARED_DATA = Path(os.environ.get("EMOFLOW_SHARED_DATA") or REPO.parent / "shared" / "data")
