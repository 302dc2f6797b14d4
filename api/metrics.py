"""``GET /metrics``: the server in the Prometheus text format (version 0.0.4).

Behind the token like ``/api`` (and the same Origin check), unless ``metrics_public = true``:
a scraper on another machine then needs no secret, and learns only counts and agent names.

Written by hand, not with ``prometheus_client``: the figures already exist (the registry's
agents, the stream counters, the sampler's usage), and rendering them at scrape time is a few
lines per family, where the client library would add a dependency and a second set of counters
to keep in step with ours. The tests read the output with ``prometheus_client``'s own parser.

Each family comes from one function of :data:`COLLECTORS` (a ``(name, type, help, samples)``
per family), so a new figure is one more function. The storage families read the server's
:class:`~supervisor.health.StorageHealth`, the same figures ``/healthz`` and ``/api/sse/stats``
show: there is no second counter of storage failures.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator

from flask import Blueprint, Response, request

from supervisor import __version__
from supervisor.states import RUNNING_STATES, AgentState

from .auth import token_ok
from .errors import json_error
from .ext import Supervisor, current
from .security import origin_refusal

bp = Blueprint("metrics", __name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "agent_supervisor_"

Labels = dict[str, str]
Sample = tuple[str, Labels, float]  # (suffix after the family's name, labels, value)
Family = tuple[str, str, str, list[Sample]]  # (name, type, help, samples)


@bp.get("/metrics")
def metrics() -> Response:
    ext = current()
    if not ext.config.metrics_public:
        why = origin_refusal(request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"),
                             request.headers.get("Host"), ext.config.cors_origins)
        if why is not None:
            return json_error(403, "cross_origin", why)
        if not token_ok(ext.config.token):
            return json_error(401, "unauthorized", "/metrics needs the token (Authorization: Bearer), or set"
                              " metrics_public = true", {"WWW-Authenticate": 'Bearer realm="agent-supervisor"'})
    return Response(render(ext), mimetype=None, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


def render(ext: Supervisor) -> str:
    """Every family of :data:`COLLECTORS`, in the text format."""
    out: list[str] = []
    for collect in COLLECTORS:
        for name, kind, text, samples in collect(ext):
            full = PREFIX + name
            out.append(f"# HELP {full} {_escape_help(text)}")
            out.append(f"# TYPE {full} {kind}")
            out.extend(f"{full}{suffix}{_labels(labels)} {_number(value)}" for suffix, labels, value in samples)
    return "\n".join(out) + "\n"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels.items()) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int) or (math.isfinite(value) and value == int(value) and abs(value) < 2**53):
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


# ----------------------------------------------------------------------------------- families


def _server(ext: Supervisor) -> Iterator[Family]:
    yield ("build_info", "gauge", "The server's version (always 1).", [("", {"version": __version__}, 1)])
    yield ("uptime_seconds", "gauge", "Seconds since the server started.",
           [("", {}, ext.streams.counters.uptime_s)])


def _agents(ext: Supervisor) -> Iterator[Family]:
    agents = ext.registry.list()
    by_state = dict.fromkeys((state.value for state in AgentState), 0)
    for agent in agents:
        if agent.state is not None:
            by_state[agent.state.value] += 1
    yield ("agents", "gauge", "Agents by state.", [("", {"state": state}, n) for state, n in by_state.items()])
    yield ("agents_waiting_input", "gauge", "Agents whose run waits at a prompt.",
           [("", {}, sum(1 for agent in agents if agent.input_wait.waiting))])

    yield ("agent_up", "gauge", "1 while the agent has a live run (starting, running, stopping).",
           [("", {"agent": a.name}, 1 if a.state in RUNNING_STATES else 0) for a in agents])
    yield ("agent_waiting_input", "gauge", "1 while the agent's run waits at a prompt.",
           [("", {"agent": a.name}, 1 if a.input_wait.waiting else 0) for a in agents])
    yield ("agent_restarts_total", "counter", "Runs of the agent after its first (by policy or by request).",
           [("", {"agent": a.name}, max(0, a.run - 1)) for a in agents])
    yield ("agent_lines_total", "counter", "Complete lines the agent printed, since this server started.",
           [("", {"agent": a.name}, a.lines_total) for a in agents])
    yield ("agent_extractions_total", "counter", "Extractions from the agent's output, since this server started.",
           [("", {"agent": a.name}, a.extractions_total) for a in agents])
    yield ("agent_screen_worker_restarts_total", "counter",
           "Screen worker processes of the agent that died or hung and were replaced, since this server started.",
           [("", {"agent": a.name}, a.screen.restarts_total) for a in agents])
    yield ("agent_stream_clients", "gauge", "SSE clients of the agent's own stream.",
           [("", {"agent": a.name}, ext.streams.clients_of(a.name)) for a in agents])
    usage = [(agent.name, figures) for agent in agents if (figures := agent.custody.usage()) is not None]
    yield ("agent_cpu_percent", "gauge", "CPU of the agent's whole process tree over the last seconds (100 = one core).",
           [("", {"agent": name}, f.cpu_percent) for name, f in usage if f.cpu_percent is not None])
    yield ("agent_memory_rss_bytes", "gauge", "Resident memory of the agent's whole process tree.",
           [("", {"agent": name}, f.rss_bytes) for name, f in usage])
    yield ("agent_processes", "gauge", "Processes of the agent's run.",
           [("", {"agent": name}, f.processes) for name, f in usage])
    yield ("agent_uptime_seconds", "gauge", "Seconds the agent's current run has been up.",
           [("", {"agent": name}, f.uptime_s) for name, f in usage])


def _streams(ext: Supervisor) -> Iterator[Family]:
    streams = ext.streams
    counters = streams.counters
    yield ("events_published_total", "counter", "Events the agents published (log lines, extractions, states...).",
           [("", {}, ext.registry.eventlog.events_published)])
    yield ("sse_events_delivered_total", "counter", "Events handed to SSE clients' sockets.",
           [("", {}, counters.events_delivered)])
    yield ("sse_bytes_delivered_total", "counter", "Bytes handed to SSE clients' sockets.",
           [("", {}, counters.bytes_delivered)])
    yield ("sse_clients", "gauge", "SSE clients connected now.", [("", {}, streams.client_count)])
    yield ("sse_clients_connected_total", "counter", "SSE connections accepted.",
           [("", {}, counters.clients_connected_total)])
    yield ("sse_clients_dropped_slow_total", "counter", "SSE clients dropped for not keeping up (they resume).",
           [("", {}, counters.clients_dropped_slow)])
    flushes = counters.flush_times
    buckets: list[Sample] = [("_bucket", {"le": "+Inf" if math.isinf(bound) else repr(bound)}, total)
                             for bound, total in flushes.cumulative()]
    yield ("sse_flush_duration_seconds", "histogram",
           "How long each flush (one batch of events handed to every client) kept the server busy.",
           [*buckets, ("_sum", {}, flushes.sum), ("_count", {}, flushes.count)])


def _storage(ext: Supervisor) -> Iterator[Family]:
    health = ext.registry.storage
    yield ("storage_errors_total", "counter",
           "Writes to the data directory that failed, by what they were writing (a failed retry counts"
           " again); the agents go on.",
           [("", {"kind": kind}, count) for kind, count in health.errors.items()])
    yield ("storage_failure_episodes_total", "counter",
           "Episodes of storage failure (one per owner until everything it failed to write is written again).",
           [("", {}, health.episodes_total)])
    yield ("storage_degraded", "gauge", "1 while something in the data directory cannot be written (/healthz"
           " says degraded), else 0.", [("", {}, 1 if health.degraded else 0)])
    yield ("storage_events_unwritten", "gauge", "Events kept in memory that wait to be written to history.",
           [("", {}, ext.registry.eventlog.storage_status()["events_unwritten"])])
    yield ("storage_events_lost_total", "counter",
           "Events that fell out of memory before they could be written to history (resumers get a reset).",
           [("", {}, health.events_lost)])
    yield ("storage_output_bytes_lost_total", "counter", "Bytes of output.log that could not be written.",
           [("", {}, health.output_bytes_lost)])


def _sampler(ext: Supervisor) -> Iterator[Family]:
    cost = ext.registry.sampler.cost
    yield ("sampler_samples_total", "counter", "Readings of every run's CPU and memory.", [("", {}, cost.samples)])
    yield ("sampler_seconds_total", "counter", "Time the readings kept the server busy.", [("", {}, cost.total_s)])


COLLECTORS: tuple[Callable[[Supervisor], Iterable[Family]], ...] = (_server, _agents, _streams, _storage, _sampler)
