"""The deployments of ``prefect.yaml`` on a real Prefect server, work pool and process worker.

Nothing of Prefect is mocked: a ``prefect server`` on loopback with its own PREFECT_HOME, the
``emoflow-process`` work pool, ``prefect deploy --all`` from the project's ``prefect.yaml`` with the
store and dataset templated in from ``EMOFLOW_STORE`` / ``EMOFLOW_DATASET``, a ``prefect worker``
that runs the flow run in a subprocess, and the store that run produced.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prefect.client.base import PrefectHttpxSyncClient

from corpora.synth import generate_dataset
from store import FeatureStore
from store.verify import verify
from tests.helpers.net import free_port

REPO = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).parent / "prefect")
FLOW = "emoflow-pipeline"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process group this test started (server, worker and their children)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


class Server:
    """A ``prefect server start`` on 127.0.0.1 plus the environment its clients need."""

    def __init__(self, home: Path, env: dict[str, str], proc: subprocess.Popen) -> None:
        self.home = home
        self.env = env
        self.proc = proc
        self.url = env["PREFECT_API_URL"]
        # Prefect's own HTTP client, as the CLI and workers use: it retries the 503 the server
        # answers when SQLite is locked (the scheduler inserting cron runs beside our requests)
        self.http = PrefectHttpxSyncClient(base_url=self.url, timeout=30, raise_on_all_errors=False)

    def wait_healthy(self, timeout: float = 150) -> None:
        """Block until ``/api/health`` answers (the first start migrates a fresh SQLite database)."""
        log = self.home / "server.log"
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"prefect server exited:\n{log.read_text()[-3000:]}"
            try:
                if self.http.get("/health").is_success:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"no /api/health after {timeout} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)

    def create_run(self, deployment: dict[str, Any], parameters: dict[str, Any] | None = None) -> str:
        """What `prefect deployment run NAME --param ...` does: a flow run scheduled now."""
        r = self.http.post(f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters or {}})
        r.raise_for_status()
        return r.json()["id"]

    def cli(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
        proc = subprocess.run(
            [PREFECT, *args], cwd=REPO, env={**self.env, **(env or {})}, capture_output=True, text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout + proc.stderr

    def deployment(self, name: str) -> dict[str, Any]:
        r = self.http.get(f"/deployments/name/{FLOW}/{name}")
        r.raise_for_status()
        return r.json()

    def flow_run(self, run_id: str) -> dict[str, Any]:
        r = self.http.get(f"/flow_runs/{run_id}")
        r.raise_for_status()
        return r.json()

    def logs(self, run_id: str) -> str:
        r = self.http.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}, "limit": 200})
        return "\n".join(f"{x['level']} {x['message']}" for x in r.json()) if r.is_success else r.text

    def wait_for(self, run_id: str, timeout: float, worker_log: Path) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.flow_run(run_id)
            if run["state_type"] in TERMINAL:
                return run
            time.sleep(1.0)
        pytest.fail(f"flow run {run_id} not finished after {timeout} s (state {run['state_type']}):\n"
                    f"{self.logs(run_id)[-3000:]}\nworker:\n{worker_log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        "PREFECT_LOGGING_LEVEL": "INFO",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",
        # a few upcoming cron runs are enough to assert the schedule; 100 per deployment (the
        # default) is a long SQLite write that contends with the requests below on 2 cores
        "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "5",
    }
    env.pop("PREFECT_PROFILE", None)
    log = (home / "server.log").open("w")
    proc = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"],
        cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    srv = Server(home, env, proc)
    try:
        yield srv
    finally:
        srv.http.close()
        _stop(proc)
        log.close()


def test_prefect_yaml_declares_the_scheduled_deployments() -> None:
    """Static checks: entrypoints resolve to the flow, crons parse, parameters validate against it."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in spec["deployments"]}
    assert {"extract-nightly", "stats-weekly"} <= set(deps)
    assert spec["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ $EMOFLOW_HOME }}"
    for d in deps.values():
        flow = load_flow_from_entrypoint(str(REPO / d["entrypoint"]))
        assert flow.name == FLOW
        assert d["work_pool"]["name"] == "emoflow-process"
        (sched,) = d["schedules"]
        CronSchedule(cron=sched["cron"], timezone=sched["timezone"])
        assert sched["timezone"] == "UTC"
        assert d["parameters"]["config"]["store"] == "{{ $EMOFLOW_STORE }}"
        filled = json.loads(json.dumps(d["parameters"]).replace("{{ $EMOFLOW_STORE }}", "/srv/store")
                            .replace("{{ $EMOFLOW_DATASET }}", "/srv/data"))
        params = flow.validate_parameters(filled)
        assert params["config"].store == "/srv/store"
    assert deps["stats-weekly"]["parameters"]["stages"] == ["stats"]
    assert deps["extract-nightly"]["parameters"]["stages"] == ["ingest", "extract", "align", "stats"]


@pytest.mark.slow
def test_deploy_schedule_and_run_through_a_process_worker(server: Server, tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", n_clips=4, seed=21, min_seconds=1.5, max_seconds=2.5)
    store = tmp_path / "store"
    server.wait_healthy()
    server.cli("work-pool", "create", "emoflow-process", "--type", "process")
    worker_log = tmp_path / "worker.log"
    with worker_log.open("w") as wl:
        # a process worker polling the pool (it runs each flow run in a subprocess)
        worker = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", "emoflow-process", "--limit", "1", "--name", "test-worker"],
            cwd=tmp_path, env=server.env, stdout=wl, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            _deploy_and_run(server, data, store, worker_log)
        finally:
            _stop(worker)


def _deploy_and_run(server: Server, data: Any, store: Path, worker_log: Path) -> None:
    deploy_env = {"EMOFLOW_HOME": str(REPO), "EMOFLOW_STORE": str(store), "EMOFLOW_DATASET": str(data.root)}
    server.cli("--no-prompt", "deploy", "--all", env=deploy_env, timeout=180)

    # the deployments as the server holds them: templated parameters, schedules, pull step, pool
    nightly, weekly = server.deployment("extract-nightly"), server.deployment("stats-weekly")
    assert nightly["parameters"]["config"]["store"] == str(store)
    assert nightly["parameters"]["config"]["dataset"]["path"] == str(data.root)
    assert nightly["parameters"]["stages"] == ["ingest", "extract", "align", "stats"]
    assert weekly["parameters"] == {"config": {"store": str(store)}, "stages": ["stats"]}
    for dep, cron in ((nightly, "0 2 * * *"), (weekly, "30 6 * * 1")):
        (sched,) = dep["schedules"]
        assert sched["schedule"]["cron"] == cron and sched["schedule"]["timezone"] == "UTC" and sched["active"]
        assert dep["work_pool_name"] == "emoflow-process"
        assert dep["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}
        ]

    # a run of the nightly deployment now, with only the two fast extractors (the weekly stats
    # deployment runs the same flow with stages=["stats"]; tests/flows/test_incremental.py runs that)
    run_id = server.create_run(nightly, {"extractors": ["audio.mfcc", "text.bert"]})
    run = server.wait_for(run_id, 240, worker_log)
    assert run["state_type"] == "COMPLETED", f"{run['state']}\n{server.logs(run_id)[-4000:]}"
    assert run["parameters"]["extractors"] == ["audio.mfcc", "text.bert"]
    assert run["parameters"]["config"]["store"] == str(store)

    # the store the deployment run produced
    st = FeatureStore.open(store)
    clip_ids = sorted(st.clips().column("clip_id").to_pylist())
    assert clip_ids == sorted(c.clip_id for c in data.clips)
    sets = {st.feature_set(n).attrs["extractor"]: st.feature_set(n) for n in st.feature_set_names()}
    assert set(sets) == {"audio.mfcc", "text.bert"}
    for fset in sets.values():
        assert sorted(fset.index().column("clip_id").to_pylist()) == clip_ids
    assert verify(st) == [] and st.failures().num_rows == 0
    runs = st.runs().to_pylist()
    assert {r["extractor"] for r in runs} == {"audio.mfcc", "text.bert"}
    assert all(r["clips_done"] == 4 and r["clips_failed"] == 0 for r in runs)
    assert "extract audio.mfcc: done 4, skipped 0, failed 0" in server.logs(run_id)
    assert st.view_names() == ["default"]
    assert "dataset" in st.report_names()

    # the scheduler service materialised the cron schedule: upcoming nightly runs at 02:00 UTC
    deadline = time.monotonic() + 30
    while True:
        r = server.http.post("/flow_runs/filter", json={
            "flow_runs": {"deployment_id": {"any_": [nightly["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}},
            "limit": 5,
        })
        r.raise_for_status()
        scheduled = [x for x in r.json() if x.get("auto_scheduled")]
        if scheduled or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert scheduled, "the scheduler created no run for the nightly cron"
    starts = [x["expected_start_time"] for x in scheduled]
    assert all(re.search(r"T02:00:00(\.0+)?(Z|\+00:00)$", t) for t in starts), starts
