//! Prometheus metrics: what this process counted (leases, results by what became of them,
//! credits, HTTP requests and their latency by route) and, read from the database at each
//! scrape, the grid's state (tasks by phase, leases out, runners online and flagged, what the
//! ledger granted).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::dashboard::Snapshot;

/// An HTTP request's route (the pattern, never the path, so that ids make no new series).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Route {
    /// GET, POST, ...
    pub method: String,
    /// `/v1/batches/{id}`, or `unmatched`.
    pub route: String,
}

/// A route and the status it answered with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Answered {
    /// GET, POST, ...
    pub method: String,
    /// As in [`Route`].
    pub route: String,
    /// The HTTP status code.
    pub status: String,
}

/// A label set of one label, for the families below.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Status {
    /// The label's value.
    pub status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Phase {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TierLabel {
    tier: String,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms to about 8 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Every metric `/metrics` shows.
pub struct Metrics {
    registry: Registry,
    /// Leases granted by this process.
    pub leases: Counter,
    /// Results reported to this process, by what became of them.
    pub results: Family<Status, Counter>,
    /// Health checks reported to this process, by what became of them.
    pub health_checks: Family<Status, Counter>,
    /// Micro-credits granted through this process.
    pub micro_credits: Counter,
    /// Authenticated runner requests served by this process.
    pub runner_requests: Counter,
    /// HTTP requests by route and status.
    pub requests: Family<Answered, Counter>,
    /// HTTP request latency by route.
    pub latency: Family<Route, Histogram, fn() -> Histogram>,
    /// Lease requests waiting for work now.
    pub lease_waits: Gauge,
    tasks: Family<Phase, Gauge>,
    leases_out: Gauge,
    runners_online: Family<TierLabel, Gauge>,
    runners_known: Gauge,
    runners_flagged: Gauge,
    ledger_micro_credits: Gauge,
    compute_seconds: Gauge,
}

impl Default for Metrics {
    // A flat table: one registration per metric, in the order `/metrics` lists them.
    fn default() -> Self {
        let mut registry = Registry::with_prefix("helio");
        let leases = Counter::default();
        let results = Family::<Status, Counter>::default();
        let health_checks = Family::<Status, Counter>::default();
        let micro_credits = Counter::default();
        let runner_requests = Counter::default();
        let requests = Family::<Answered, Counter>::default();
        let latency =
            Family::<Route, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        let tasks = Family::<Phase, Gauge>::default();
        let runners_online = Family::<TierLabel, Gauge>::default();
        let (runners_known, runners_flagged) = (Gauge::default(), Gauge::default());
        let (ledger_micro_credits, compute_seconds) = (Gauge::default(), Gauge::default());
        registry.register(
            "leases",
            "Leases granted by this scheduler process",
            leases.clone(),
        );
        registry.register(
            "results",
            "Results reported to this scheduler process, by what became of them \
             (accepted, disagreed, recorded, duplicate, refused)",
            results.clone(),
        );
        registry.register(
            "health_checks",
            "Health checks cold runners reported to this scheduler process, by what became \
             of them (accepted: passed, disagreed: failed, duplicate, refused)",
            health_checks.clone(),
        );
        registry.register(
            "micro_credits",
            "Micro-credits granted through this scheduler process",
            micro_credits.clone(),
        );
        registry.register(
            "runner_requests",
            "Authenticated runner requests (leases and results) served by this process",
            runner_requests.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests served by this process, by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route (streams: until the headers)",
            latency.clone(),
        );
        registry.register(
            "tasks",
            "Tasks across the grid by phase: open (of them running: a lease out), deciding \
             (the scheduler's own run), succeeded and failed (accepted), disputed (runners \
             reported different digests, whatever became of the task)",
            tasks.clone(),
        );
        let lease_waits = Gauge::default();
        registry.register(
            "lease_waits",
            "Lease requests from idle runners waiting for work now (their time counts in \
             the lease route's request duration)",
            lease_waits.clone(),
        );
        let leases_out = Gauge::default();
        registry.register("leases_out", "Leases out now", leases_out.clone());
        registry.register(
            "runners_online",
            "Runners online, by tier (offline after three heartbeats of silence)",
            runners_online.clone(),
        );
        registry.register(
            "runners_known",
            "Runners ever registered",
            runners_known.clone(),
        );
        registry.register(
            "runners_flagged",
            "Runners flagged for a result that disagreed with an accepted one",
            runners_flagged.clone(),
        );
        registry.register(
            "ledger_task_micro_credits",
            "Micro-credits the ledger granted for tasks, in all",
            ledger_micro_credits.clone(),
        );
        registry.register(
            "compute_seconds",
            "Wall-clock seconds of every run volunteers reported, in all",
            compute_seconds.clone(),
        );
        Metrics {
            registry,
            leases,
            results,
            health_checks,
            micro_credits,
            runner_requests,
            requests,
            latency,
            lease_waits,
            tasks,
            leases_out,
            runners_online,
            runners_known,
            runners_flagged,
            ledger_micro_credits,
            compute_seconds,
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub fn answered(&self, method: &str, route: &str, status: u16, took: Duration) {
        self.requests
            .get_or_create(&Answered {
                method: method.to_string(),
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&Route {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// The metrics in the OpenMetrics text format, with the grid's state from `grid`.
    pub fn render(&self, grid: &Snapshot) -> String {
        let t = &grid.tasks;
        for (phase, n) in [
            ("open", t.open),
            ("running", t.running),
            ("deciding", t.deciding),
            ("succeeded", t.succeeded),
            ("failed", t.failed),
            ("disputed", t.disputed),
            // The total accepted, as before these were split.
            ("accepted", t.succeeded + t.failed),
        ] {
            self.tasks.get_or_create(&Phase { phase }).set(n as i64);
        }
        for (tier, n) in &grid.runners_online {
            self.runners_online
                .get_or_create(&TierLabel { tier: tier.clone() })
                .set(*n as i64);
        }
        self.leases_out.set(t.leases as i64);
        self.runners_known.set(grid.runners_known as i64);
        self.runners_flagged.set(grid.flagged.len() as i64);
        self.ledger_micro_credits
            .set(grid.impact.micro_credits as i64);
        self.compute_seconds
            .set((grid.impact.compute_ms / 1000) as i64);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("metrics encode into a string");
        out
    }
}
