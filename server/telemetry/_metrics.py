"""Prometheus metrics of one process (its own registry, so several instances can share a process in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    """The metrics the engine, the adapters and the HTTP endpoints update."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.workflow_events = Counter(
            "mo_workflow_transitions_total", "Workflow status changes", ["status"], registry=r
        )
        self.runs_active = Gauge("mo_runs_active", "Runs this instance executes now", registry=r)
        self.step_seconds = Histogram("mo_step_duration_seconds", "Graph node durations", ["node"], registry=r,
                                      buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300))  # fmt: skip
        self.agent_executions = Counter(
            "mo_agent_executions_total", "Agent executions", ["agent", "outcome"], registry=r
        )
        self.queue_depth = Gauge("mo_queue_depth", "Entries in the run queue", registry=r)
        self.lease_reclaims = Counter(
            "mo_lease_reclaims_total", "Runs taken over from a silent instance", registry=r
        )
        self.breaker_state = Gauge("mo_breaker_open", "1 when the service's breaker is open (0.5 half-open)",
                                   ["service"], registry=r)  # fmt: skip
        self.webhook_lag = Histogram("mo_webhook_lag_seconds", "Job completion to webhook receipt", registry=r,
                                     buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 60))  # fmt: skip
        self.runs_quarantined = Counter(
            "mo_runs_quarantined_total",
            "Workflows quarantined after runs that ended their worker",
            registry=r,
        )
        self.claiming = Gauge("mo_engine_claiming", "1 while the engine claims new runs (0: memory mark)",
                              registry=r)  # fmt: skip
        self.rss_bytes = Gauge("mo_process_resident_bytes", "Resident memory of this process", registry=r)
        self.webhooks = Counter("mo_webhooks_total", "Task Service webhooks", ["outcome"], registry=r)
        self.cpu_turns = Gauge(
            "mo_cpu_turns", "Runs of this process that may compute at once now", registry=r
        )
        self.cpu_waiting = Gauge("mo_cpu_gate_waiting", "Runs waiting for a CPU turn, by project (the 20 most)",
                                 ["project"], registry=r)  # fmt: skip
        self.quota_refusals = Counter("mo_quota_refusals_total", "Starts refused by a quota",
                                      ["scope", "quota"], registry=r)  # fmt: skip
        self.tenant_in_flight = Gauge("mo_tenant_in_flight", "Productions in flight, by project and by key "
                                      "(the 20 most of each)", ["scope", "tenant"], registry=r)  # fmt: skip
        self.jobs_lost = Counter("mo_jobs_lost_total", "Task Service jobs it lost, submitted again",
                                 ["reason"], registry=r)  # fmt: skip
        self.loop_lag = Histogram("mo_event_loop_lag_seconds", "How late the event loop runs a timer", registry=r,
                                  buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1))  # fmt: skip
