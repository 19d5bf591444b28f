"""An S3 API server on loopback for store tests: moto's server in a thread of the test process (the
way ``s3fs`` tests itself), one bucket, and the environment that makes ``fsspec.url_to_fs("s3://…")``
with no options reach it, in this process and in every process started afterwards (Dask workers,
killed writers). Requests are counted per kind at the server, so a count covers every process.

    with s3_server() as s3:
        store = FeatureStore.open(s3.url("store"), create=True)
        with s3.counting() as count:
            store.feature_set("x").index()
        count.by_kind  # {"GET": 3, "LIST": 1, "HEAD": 2}
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest

from tests.helpers.net import free_port

BUCKET = "emoflow-test"
REGION = "us-east-1"
# AWS settings that could point a client at a real account or another endpoint: all replaced or removed
_AWS_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
              "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
              "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL_S3", "FSSPEC_S3")


def request_kind(method: str, path: str, query: str) -> str:
    """GET / PUT / HEAD / DELETE of one object, LIST (a bucket GET with a prefix or list-type),
    DELETE (a multi-object POST ?delete counts as one request), MULTIPART (upload steps), POST."""
    params = parse_qs(query, keep_blank_values=True)
    key = path.lstrip("/").partition("/")[2]
    if method == "GET" and (not key or "list-type" in params or "prefix" in params or "delimiter" in params):
        return "LIST"
    if method == "POST" and "delete" in params:
        return "DELETE"
    if "uploads" in params or "uploadId" in params:
        return "MULTIPART"
    return method


@dataclass
class RequestCount:
    """Requests the server answered while a ``counting`` block ran."""

    by_kind: Counter[str] = field(default_factory=Counter)
    by_request: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, path)

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def __getitem__(self, kind: str) -> int:
        return self.by_kind[kind]


class _Counting:
    """WSGI middleware: counts each request into every active ``RequestCount``."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.active: list[RequestCount] = []

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        kind = request_kind(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", ""))
        with self.lock:
            for count in self.active:
                count.by_kind[kind] += 1
                count.by_request[(kind, environ.get("PATH_INFO", ""))] += 1
        return self.app(environ, start_response)


class S3Server:
    """A started server: its endpoint, the bucket, request counting."""

    def __init__(self, endpoint: str, middleware: _Counting) -> None:
        self.endpoint = endpoint
        self.bucket = BUCKET
        self._middleware = middleware

    def url(self, prefix: str) -> str:
        """``s3://<bucket>/<prefix>``."""
        return f"s3://{self.bucket}/{prefix.strip('/')}"

    @property
    def storage_options(self) -> dict[str, Any]:
        """What an explicit ``fsspec.filesystem("s3", **options)`` would need (the env has the same)."""
        return {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": self.endpoint,
                                                                         "region_name": REGION}}

    @contextmanager
    def counting(self) -> Iterator[RequestCount]:
        """Count the requests any process sends while the block runs."""
        count = RequestCount()
        with self._middleware.lock:
            self._middleware.active.append(count)
        try:
            yield count
        finally:
            with self._middleware.lock:
                self._middleware.active.remove(count)


def _clear_fsspec_cache() -> None:
    """s3fs instances are cached by their (empty) options: one made for an earlier server would keep its
    endpoint and listings."""
    import s3fs  # type: ignore[import-untyped]

    s3fs.S3FileSystem.clear_instance_cache()


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1 (a free port) with bucket ``BUCKET``; ``os.environ`` points every
    AWS client at it with dummy credentials until the block ends (then it is restored)."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class Quiet(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:  # one line per request otherwise
            pass

    middleware = _Counting(DomainDispatcherApplication(create_backend_app))
    port = free_port()
    server = make_server("127.0.0.1", port, middleware, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, name="moto-s3", daemon=True)
    thread.start()
    endpoint = f"http://127.0.0.1:{port}"

    saved = dict(os.environ)
    for name in _AWS_UNSET:
        os.environ.pop(name, None)
    os.environ.update({
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": endpoint,  # botocore (and so s3fs) honours it for every service
        "AWS_CONFIG_FILE": os.devnull,  # no profile of the user's
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance metadata service for credentials
    })
    _clear_fsspec_cache()
    try:
        import boto3  # type: ignore[import-untyped]

        boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=REGION).create_bucket(Bucket=BUCKET)
        yield S3Server(endpoint, middleware)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _clear_fsspec_cache()
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
