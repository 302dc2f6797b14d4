"""Tests for api/metrics.py: GET /metrics read by prometheus_client's own parser, from a real
server with real agents and stream clients."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from support.processes import Server, python_agent
from support.waiting import wait_for


def scrape(server: Server, **kw: Any) -> dict[str, Any]:
    response = server.request("GET", "/metrics", **kw)
    assert response.status == 200, response.body[:300]
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {family.name: family for family in text_string_to_metric_families(response.body.decode())}


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    family = families[name]
    suffix = "_total" if family.type == "counter" else ""
    for sample in family.samples:
        if sample.name == name + suffix and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    raise AssertionError(f"no sample {name}{labels} in {family.samples}")


@pytest.mark.slow
def test_metrics_cover_agents_streams_storage_and_flushes(make_server: Callable[..., Server]) -> None:
    """Agents by state, restarts, lines and extractions per agent, CPU and memory, events
    published and delivered, bytes, clients, slow drops, storage errors and the flush histogram,
    all parsed by prometheus_client."""
    server = make_server()
    code = "import time\nfor i in range(5): print(f'step {i} 50%')\ntime.sleep(60)\n"
    with server.stream("/api/stream") as stream:  # live: its events go through the flush
        stream.until(lambda e: e.event == "connected")
        server.create(name="m1", command=python_agent(code), extractors=[{"name": "pct", "pattern": r"(?P<value>\d+)%"}])
        server.create(name="m2", command=python_agent("print('once')"), restart={"mode": "always", "max_restarts": 2,
                                                                                      "backoff_s": 0})
        stream.until(lambda e: e.event == "log" and "step 4" in e.data, timeout=15)
        wait_for(lambda: server.get("/api/agents/m2")["run"] == 3 and server.get("/api/agents/m2")["state"] == "exited",
                 15, 0.05, "m2's restarts")
        wait_for(lambda: (server.get("/api/agents/m1").get("usage") or {}).get("cpu_percent") is not None,
                 15, 0.1, "two samples of m1")
        families = scrape(server)
    assert value(families, "agent_supervisor_agents", state="running") == 1
    assert value(families, "agent_supervisor_agents", state="exited") == 1
    assert value(families, "agent_supervisor_agents", state="lost") == 0
    assert value(families, "agent_supervisor_agent_restarts", agent="m2") == 2
    assert value(families, "agent_supervisor_agent_lines", agent="m1") == 5
    assert value(families, "agent_supervisor_agent_lines", agent="m2") == 3, "every run's lines"
    assert value(families, "agent_supervisor_agent_extractions", agent="m1") == 5
    assert value(families, "agent_supervisor_agent_up", agent="m1") == 1
    assert value(families, "agent_supervisor_agent_memory_rss_bytes", agent="m1") > 1 << 20
    assert value(families, "agent_supervisor_agent_cpu_percent", agent="m1") >= 0
    assert value(families, "agent_supervisor_agent_processes", agent="m1") == 1
    assert value(families, "agent_supervisor_events_published") > 10
    assert value(families, "agent_supervisor_sse_events_delivered") >= 5
    assert value(families, "agent_supervisor_sse_bytes_delivered") > 0
    assert value(families, "agent_supervisor_sse_clients_connected") >= 1
    assert value(families, "agent_supervisor_sse_clients_dropped_slow") == 0
    assert families["agent_supervisor_storage_errors"].type == "counter"
    assert value(families, "agent_supervisor_storage_errors", kind="output") == 0
    flushes = families["agent_supervisor_sse_flush_duration_seconds"]
    assert flushes.type == "histogram"
    buckets = [s for s in flushes.samples if s.name.endswith("_bucket")]
    count = next(s.value for s in flushes.samples if s.name.endswith("_count"))
    assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == count > 0
    assert [b.value for b in buckets] == sorted(b.value for b in buckets), "cumulative"
    assert value(families, "agent_supervisor_build_info", version=families["agent_supervisor_build_info"]
                 .samples[0].labels["version"]) == 1
    assert server.request("POST", "/api/agents/m1/stop", {"grace_s": 1}).status == 202


def test_metrics_need_the_token_unless_public(make_server: Callable[..., Server]) -> None:
    """Behind the token (401, and 403 for a foreign page), unless metrics_public = true."""
    private = make_server()
    assert private.request("GET", "/metrics", headers={"Authorization": None}).status == 401
    foreign = private.request("GET", "/metrics", headers={"Origin": "http://evil.example"})
    assert foreign.status == 403
    public = make_server(env={"AGENT_SUPERVISOR_METRICS_PUBLIC": "true"})
    assert "agent_supervisor_agents" in scrape(public, headers={"Authorization": None})
