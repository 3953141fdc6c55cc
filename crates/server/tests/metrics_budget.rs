//! The bound on per-queue label sets in `/metrics`. The budget is process-wide (one node per
//! process), so this test runs in a binary of its own instead of next to the `api` tests.

#[path = "common/harness.rs"]
mod harness;
#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use helpers::{json_of, spawn_with};
use serde_json::json;
use std::collections::HashSet;
use switchboard_core::db::Backend;

both!(queues_beyond_the_label_budget_share_one_label_set);

const BUDGET: usize = 5;

/// `(project, queue)` of every series of a per-queue metric.
fn label_sets(metrics: &str) -> HashSet<(String, String)> {
    let value = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let len = line[start..].find('"')?;
        Some(line[start..start + len].to_owned())
    };
    metrics
        .lines()
        .filter(|l| l.starts_with("queue_"))
        .filter_map(|l| Some((value(l, "project")?, value(l, "queue")?)))
        .collect()
}

async fn queues_beyond_the_label_budget_share_one_label_set(b: Backend) {
    let app = spawn_with(b, |c| {
        c.metrics_max_queues = BUDGET;
        c.metrics_token = Some("metrics-token-0123456789".to_owned().into());
    })
    .await;
    let jobs: Vec<_> = (0..BUDGET * 3)
        .map(|i| json!({"queue": format!("q{i}"), "kind": "k"}))
        .collect();
    json_of(
        app.post("/v1/jobs/batch", &json!({"jobs": jobs})).await,
        201,
    )
    .await;
    let metrics = app.scrape().await;
    let sets = label_sets(&metrics);
    assert!(
        sets.len() <= BUDGET + 1,
        "{} label sets for a budget of {BUDGET}: {sets:?}",
        sets.len()
    );
    assert!(
        sets.contains(&("_other".to_owned(), "_other".to_owned())),
        "{sets:?}"
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("queue_jobs_enqueued_total{project=\"_other\",queue=\"_other\"}")
        ),
        "the queues beyond the budget are counted together"
    );
    assert!(
        metrics.lines().any(|l| l
            .starts_with("queue_jobs{project=\"_other\",queue=\"_other\",state=\"available\"}")),
        "{metrics}"
    );
}

fn main() -> std::process::ExitCode {
    harness::main()
}
