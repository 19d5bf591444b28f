"""Flow runs on the command's own temporary Prefect server skip heartbeats (nothing watches them, and
Prefect's heartbeat thread costs each flow run up to a second to stop); a running server keeps them."""

from __future__ import annotations

import pytest
from prefect.settings import get_current_settings

from flows import ephemeral_flow_settings


def test_a_temporary_server_gets_no_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    before = get_current_settings().flows.heartbeat_frequency
    with ephemeral_flow_settings():
        assert get_current_settings().flows.heartbeat_frequency is None
    assert get_current_settings().flows.heartbeat_frequency == before


def test_a_running_server_keeps_its_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    before = get_current_settings().flows.heartbeat_frequency
    assert before is not None
    with ephemeral_flow_settings():
        assert get_current_settings().flows.heartbeat_frequency == before
