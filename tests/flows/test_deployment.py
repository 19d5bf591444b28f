"""The deployments of ``prefect.yaml`` on a real Prefect server, work pool and process worker.

Nothing of Prefect is mocked: a ``prefect server`` on loopback with its own PREFECT_HOME, the
``emoflow-process`` work pool, ``prefect deploy --all`` from the project's ``prefect.yaml`` with the
store and dataset templated in from ``EMOFLOW_STORE`` / ``EMOFLOW_DATASET``, a ``prefect worker``
that runs the flow run in a subprocess, and the store that run produced.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from corpora.synth import generate_dataset
from store import FeatureStore
from store.verify import verify
from tests.helpers.paths import REPO
from tests.helpers.prefect import PrefectServer

FLOW = "emoflow-pipeline"
FLOWS = {"extract-nightly": FLOW, "stats-weekly": FLOW, "predict-inbox": "emoflow-predict"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """A server of its own: the deployment test needs the CLI, a worker process and the scheduler."""
    with PrefectServer.start(tmp_path_factory.mktemp("prefect-home")) as srv:
        yield srv


def test_prefect_yaml_declares_the_scheduled_deployments() -> None:
    """Static checks: entrypoints resolve to the flow, crons parse, parameters validate against it."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deps = {d["name"]: d for d in spec["deployments"]}
    assert {"extract-nightly", "stats-weekly", "predict-inbox"} <= set(deps)
    assert spec["pull"][0]["prefect.deployments.steps.set_working_directory"]["directory"] == "{{ $EMOFLOW_HOME }}"
    env = {"{{ $EMOFLOW_STORE }}": "/srv/store", "{{ $EMOFLOW_DATASET }}": "/srv/data",
           "{{ $EMOFLOW_INBOX }}": "/srv/in", "{{ $EMOFLOW_RUN }}": "/srv/runs/r",
           "{{ $EMOFLOW_PREDICT_STORE }}": "/srv/predict"}
    for d in deps.values():
        assert load_flow_from_entrypoint(str(REPO / d["entrypoint"])).name == FLOWS[d["name"]]
        assert d["work_pool"]["name"] == "emoflow-process"
        (sched,) = d["schedules"]
        CronSchedule(cron=sched["cron"], timezone=sched["timezone"])
        assert sched["timezone"] == "UTC"
        assert "{{" not in json.dumps(flow_params(d, env), default=str)
    assert flow_params(deps["extract-nightly"], env)["config"].store == "/srv/store"
    assert deps["stats-weekly"]["parameters"]["stages"] == ["stats"]
    assert deps["extract-nightly"]["parameters"]["stages"] == ["ingest", "extract", "align", "stats"]
    predict = flow_params(deps["predict-inbox"], env)
    assert predict["media"] == ["/srv/in"] and predict["run"] == "/srv/runs/r" and predict["allow_empty"]
    assert predict["config"].predict.store == "/srv/predict"


def flow_params(deployment: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """A deployment's parameters with the environment filled in, validated by its flow."""
    from prefect.flows import load_flow_from_entrypoint

    text = json.dumps(deployment["parameters"])
    for var, value in env.items():
        text = text.replace(var, value)
    return load_flow_from_entrypoint(str(REPO / deployment["entrypoint"])).validate_parameters(json.loads(text))


@pytest.mark.slow
def test_deploy_schedule_and_run_through_a_process_worker(server: PrefectServer, tmp_path: Path) -> None:
    data = generate_dataset(tmp_path / "data", n_clips=4, seed=21, min_seconds=1.5, max_seconds=2.5)
    store = tmp_path / "store"
    server.wait_healthy()
    server.cli("work-pool", "create", "emoflow-process", "--type", "process")
    worker_log = tmp_path / "worker.log"
    with server.worker("emoflow-process", worker_log, cwd=tmp_path):
        _deploy_and_run(server, data, store, worker_log)


def _deploy_and_run(server: PrefectServer, data: Any, store: Path, worker_log: Path) -> None:
    deploy_env = {"EMOFLOW_HOME": str(REPO), "EMOFLOW_STORE": str(store), "EMOFLOW_DATASET": str(data.root),
                  "EMOFLOW_INBOX": str(store.parent / "inbox"), "EMOFLOW_RUN": str(store.parent / "run"),
                  "EMOFLOW_PREDICT_STORE": str(store.parent / "predict")}
    server.cli("--no-prompt", "deploy", "--all", env=deploy_env, timeout=180)

    # the deployments as the server holds them: templated parameters, schedules, pull step, pool
    nightly, weekly = server.deployment(FLOW, "extract-nightly"), server.deployment(FLOW, "stats-weekly")
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
