//! `switchboard job enqueue|get|retry|cancel`, checked and done as the API does them.

use super::open::{open_existing, project_for};
use super::{api_err, cli_actor, EnqueueArgs, JobCommand};
use anyhow::Context;
use switchboard_core::config::Config;
use switchboard_core::time;

/// The `POST /v1/jobs` body `job enqueue`'s flags describe (checked as the API checks it
/// afterwards; here only what does not fit its JSON shape is refused).
fn enqueue_spec(a: &EnqueueArgs) -> anyhow::Result<switchboard_queue::JobSpec> {
    let json = |flag: &str, v: &str| -> anyhow::Result<serde_json::Value> {
        serde_json::from_str(v).with_context(|| format!("{flag} is not JSON"))
    };
    let mut spec = serde_json::json!({
        "queue": a.queue,
        "kind": a.kind,
        "payload": json("--payload", &a.payload)?,
        "delay_ms": a.delay_ms,
        "max_attempts": a.max_attempts,
        "timeout_ms": a.timeout_ms,
        "unique_key": a.unique_key,
        "unique_window_secs": a.unique_window_secs,
        "tags": a.tags,
    });
    if let Some(p) = &a.priority {
        spec["priority"] = p
            .parse::<i64>()
            .map(serde_json::Value::from)
            .unwrap_or(serde_json::Value::String(p.clone()));
    }
    if let Some(t) = &a.run_at {
        let at: time::Timestamp = t
            .parse()
            .with_context(|| format!("--run-at `{t}` is not an RFC 3339 time"))?;
        spec["run_at"] = serde_json::json!(at);
    }
    if let Some(b) = &a.backoff {
        spec["backoff"] = json("--backoff", b)?;
    }
    if let Some(url) = &a.target_url {
        let mut headers = serde_json::Map::new();
        for h in &a.target_headers {
            let (k, v) = h
                .split_once(':')
                .with_context(|| format!("--target-header `{h}` is not `Name: value`"))?;
            headers.insert(k.trim().to_owned(), serde_json::json!(v.trim()));
        }
        spec["target"] = serde_json::json!({
            "url": url,
            "method": a.target_method.as_deref().unwrap_or("POST"),
            "headers": headers,
        });
    }
    serde_json::from_value(spec).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(super) async fn job_cmd(config: &Config, cmd: JobCommand) -> anyhow::Result<()> {
    use crate::queue::service::{self, JobOp};
    use switchboard_queue::store;
    let db = open_existing(config).await?;
    match cmd {
        JobCommand::Enqueue(a) => {
            let project = project_for(&db, a.project.clone()).await?;
            let spec = enqueue_spec(&a)?;
            // The API's own checks, with this configuration's egress policy; the stock
            // binary has no in-process kinds, so the job goes to pull workers or is pushed.
            let egress = switchboard_queue::egress::Egress::new(config.push_allow.clone());
            let new =
                crate::queue::validate_with(&egress, &[], &spec, time::now()).map_err(|e| {
                    anyhow::anyhow!(e
                        .iter()
                        .map(|i| format!("--{}: {}", i.field.replace('_', "-"), i.message))
                        .collect::<Vec<_>>()
                        .join("; "))
                })?;
            let mut tx = db.begin().await?;
            store::create_queues(
                &mut tx,
                &project,
                &[&new.queue],
                config.max_queues_per_project,
            )
            .await?;
            let out = switchboard_queue::enqueue_in(&mut tx, &project, std::slice::from_ref(&new))
                .await?;
            tx.commit().await?;
            if !out[0].created {
                eprintln!("switchboard: the unique key is held by this existing job");
            }
            say!("{}", out[0].job.id);
        }
        JobCommand::Get { id, project } => {
            let project = project_for(&db, project).await?;
            let mut conn = db.read().await?;
            let job = match switchboard_queue::JobId::parse(&id) {
                Ok(job) => store::get(conn.ex(), &project, &job).await?,
                Err(_) => None,
            }
            .with_context(|| format!("no job {id}"))?;
            let errors = store::attempt_errors(conn.ex(), &job.id).await?;
            say!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({ "job": job, "errors": errors }))?
            );
        }
        JobCommand::Retry { id, project } => {
            let project = project_for(&db, project).await?;
            let id = crate::queue::job_id(&id).map_err(api_err)?;
            let job = service::job_op(&db, &cli_actor(&project), &id, JobOp::Retry)
                .await
                .map_err(api_err)?;
            say!("{} {}", job.id, job.state.as_str());
        }
        JobCommand::Cancel { id, project } => {
            let project = project_for(&db, project).await?;
            let id = crate::queue::job_id(&id).map_err(api_err)?;
            let job = service::job_op(&db, &cli_actor(&project), &id, JobOp::Cancel)
                .await
                .map_err(api_err)?;
            say!("{} {}", job.id, job.state.as_str());
        }
    }
    db.close().await;
    Ok(())
}
