"""Sortable ids and UTC times: shard and index-part names, run ids, commit times."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    """Sortable unique id: UTC time then randomness."""
    return f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:10]}"
