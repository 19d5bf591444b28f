"""Prefect flows and tasks over ``stages/``, task runners and the CLI. Importing this package sets
offline-safe Prefect defaults."""

import os

# Before Prefect is imported anywhere: no analytics calls to the internet, a patient ephemeral
# server start on small machines, and our library loggers routed into Prefect's run logs.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "features,store,training")
