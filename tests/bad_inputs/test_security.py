"""The local dask cluster of a cohort run is private: every socket it listens on is on 127.0.0.1,
its comms need this run's TLS credentials, and its HTTP servers serve nothing (no slide names,
folders or stack traces) unless the dashboard is asked for."""

from __future__ import annotations

import gc
import importlib.util
import urllib.error
import urllib.request

import psutil
import pytest

from napari_histostain.cohort.runner import make_cluster

HAS_CRYPTOGRAPHY = importlib.util.find_spec("cryptography") is not None


def _listening() -> set[tuple[int, str, int]]:
    """(pid, address, port) of the TCP sockets this process and its children listen on."""
    procs = [psutil.Process(), *psutil.Process().children(recursive=True)]
    out = set()
    for p in procs:
        try:
            conns = p.net_connections(kind="inet")
        except psutil.Error:
            continue
        out |= {(p.pid, *c.laddr) for c in conns if c.status == psutil.CONN_LISTEN}
    return out


@pytest.fixture(scope="module")
def cluster():
    before = _listening()
    c = make_cluster(1, 1, memory_limit="1GB")
    c.sockets = _listening() - before  # type: ignore[attr-defined]
    yield c
    c.close()


def _http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_every_socket_of_the_cluster_is_on_127_0_0_1(cluster):
    sockets = cluster.sockets
    # scheduler + its HTTP server, the nanny, the worker + its HTTP server
    assert len(sockets) >= 5, sockets
    assert {address for _, address, _ in sockets} == {"127.0.0.1"}, sockets
    scheme = "tls" if HAS_CRYPTOGRAPHY else "tcp"
    assert cluster.scheduler_address.startswith(f"{scheme}://127.0.0.1:")
    for worker in cluster.scheduler_info["workers"].values():
        assert worker["host"] == "127.0.0.1" and worker["nanny"].startswith(
            f"{scheme}://127.0.0.1:"
        )


@pytest.mark.slow
def test_http_endpoints_serve_nothing(cluster):
    ports = {cluster.scheduler.http_server.port}
    ports |= {w["services"]["dashboard"] for w in cluster.scheduler_info["workers"].values()}
    for port in ports:
        for path in ("/info/main/workers.html", "/json/identity.json", "/metrics", "/health"):
            assert _http_status(port, path) == 404, (port, path)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_CRYPTOGRAPHY, reason="TLS needs the cryptography package")
def test_only_a_client_with_this_runs_credentials_can_connect(cluster):
    from distributed import Client
    from distributed.security import Security

    address = cluster.scheduler_address
    # each Client that fails to start is collected at once: collected later, inside another
    # Client's start, its close blocks dask's loop start (AssertionError in LoopRunner.start)
    gc.collect()
    with pytest.raises((OSError, TypeError)):  # plain TCP: the TLS server hangs up
        Client(address.replace("tls://", "tcp://"), timeout="5s", set_as_default=False)
    gc.collect()
    with pytest.raises((OSError, TypeError)):  # TLS without any credentials
        Client(address, timeout="5s", set_as_default=False)
    gc.collect()
    with pytest.raises(OSError):  # TLS with another run's credentials
        Client(address, security=Security.temporary(), timeout="5s", set_as_default=False)
    gc.collect()
    with Client(address, security=cluster.security, set_as_default=False) as client:
        assert client.submit(sum, [1, 2]).result(timeout=60) == 3
