//! Logs (`tracing`, text or JSON) and the Prometheus recorder.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use std::sync::OnceLock;
use switchboard_core::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber (once; later calls are ignored).
pub fn init_logs(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour codes only for a terminal: in a file, a pipe or a log collector they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Logs for tests, when `SWITCHBOARD_TEST_LOG` names a filter (e.g. `warn`): written to
/// stderr, since the server's tasks run on threads the test harness does not capture.
pub fn init_test_logs() {
    if let Ok(filter) = std::env::var("SWITCHBOARD_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// The process-wide Prometheus recorder (installed on first use).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Series not updated for a while are dropped, so label sets of queues that are
            // gone disappear; as long as the label budget keeps unused pairs (see
            // `switchboard_queue::labels`), so a freed place never leaves its series behind.
            let builder = || {
                PrometheusBuilder::new()
                    .idle_timeout(MetricKindMask::ALL, Some(switchboard_queue::labels::IDLE))
            };
            let recorder = builder()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0, 10.0,
                    ],
                )
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| builder().build_recorder());
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding apps): keep ours rendering.
            let _ = metrics::set_global_recorder(recorder);
            let collector = process_collector();
            collector.describe();
            describe_metrics();
            handle
        })
        .clone()
}

/// Help text of every metric this process records (Prometheus `# HELP`), by kind. A metric
/// added anywhere needs its line here: a test scrapes `/metrics` and requires HELP for every
/// family.
pub const METRICS: &[(&str, &str, &str)] = &[
    (
        "counter",
        "http_requests_total",
        "HTTP requests answered, by method, route template and status",
    ),
    (
        "histogram",
        "http_request_duration_seconds",
        "Time to answer HTTP requests, by method, route template and status",
    ),
    (
        "gauge",
        "queue_jobs",
        "Jobs per project, queue and state (from the maintained counters)",
    ),
    (
        "counter",
        "queue_jobs_enqueued_total",
        "Jobs enqueued, by project and queue",
    ),
    (
        "counter",
        "queue_jobs_completed_total",
        "Jobs completed, by project and queue",
    ),
    (
        "counter",
        "queue_jobs_failed_total",
        "Jobs failed for good (out of attempts or permanent), by project and queue",
    ),
    (
        "counter",
        "queue_jobs_retried_total",
        "Failed attempts that will be retried, by project and queue",
    ),
    (
        "counter",
        "queue_lease_expiries_total",
        "Running jobs whose lease ran out and were made available again",
    ),
    (
        "histogram",
        "queue_enqueue_to_start_seconds",
        "Time from a job's run_at to its claim, by project and queue",
    ),
    (
        "histogram",
        "queue_job_run_seconds",
        "Time jobs run by this node took, by project and queue",
    ),
];

fn describe_metrics() {
    for (kind, name, help) in METRICS {
        match *kind {
            "counter" => metrics::describe_counter!(*name, *help),
            "histogram" => metrics::describe_histogram!(*name, *help),
            _ => metrics::describe_gauge!(*name, *help),
        }
    }
}

fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Samples CPU, memory, file descriptors and threads of this process.
pub fn collect_process_metrics() {
    process_collector().collect();
}
