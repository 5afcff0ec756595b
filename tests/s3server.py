"""The local S3-compatible server of the object-store tests: moto's server mode on loopback, one per test
process (it takes seconds of CPU to start), its environment set for each module that uses it. Its fixtures
are registered in tests/conftest.py, so that the process shares one server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

BUCKET = "ace-etl-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """The server's endpoint URL, with the bucket `BUCKET` made; modules keep to prefixes of their own."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.1)
        import s3fs

        with pytest.MonkeyPatch.context() as patch:
            for name, value in {"AWS_ENDPOINT_URL": endpoint, **CREDENTIALS}.items():
                patch.setenv(name, value)
            s3fs.S3FileSystem(skip_instance_cache=True).mkdir(BUCKET)
        yield endpoint
    finally:
        server.terminate()
        server.wait()


@pytest.fixture(scope="module")
def s3_env(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The AWS variables that point at the server, set in this process for the module (and returned, for
    the processes its tests start)."""
    env = {
        "AWS_ENDPOINT_URL": s3_server,
        **CREDENTIALS,
        # An object-store data dir keeps its request budget in ./data, which is the repository here.
        "ACE_ETL_BUDGET_PATH": str(tmp_path_factory.mktemp("s3-local") / "api-budget.sqlite"),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        yield env
