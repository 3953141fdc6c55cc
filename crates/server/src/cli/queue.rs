//! `switchboard queue list|stats|pause|resume|retry-failed|clean`, through the queue service.

use super::open::{open_existing, project_for};
use super::{api_err, cli_actor, QueueCommand};
use anyhow::Context;
use switchboard_core::config::Config;
use switchboard_core::time;

fn queue_arg(name: &str) -> anyhow::Result<switchboard_queue::QueueName> {
    switchboard_queue::QueueName::parse(name).map_err(|e| anyhow::anyhow!("{e}"))
}

pub(super) async fn queue_cmd(config: &Config, cmd: QueueCommand) -> anyhow::Result<()> {
    use crate::queue::service::{self, BulkOp};
    use switchboard_queue::{store, JobState, QueueSettings};
    let db = open_existing(config).await?;
    let (project, name) = match &cmd {
        QueueCommand::List { project } => (project.clone(), None),
        QueueCommand::Stats { name, project }
        | QueueCommand::Pause { name, project }
        | QueueCommand::Resume { name, project }
        | QueueCommand::RetryFailed { name, project }
        | QueueCommand::Clean { name, project, .. } => (project.clone(), Some(queue_arg(name)?)),
    };
    let project = project_for(&db, project).await?;
    let ctx = cli_actor(&project);
    let known = match &name {
        Some(n) => {
            let mut conn = db.read().await?;
            let found = store::queues(conn.ex(), &project, Some(n)).await?;
            Some(
                found
                    .into_iter()
                    .next()
                    .with_context(|| format!("no queue {n}"))?,
            )
        }
        None => None,
    };
    match (cmd, name, known) {
        (QueueCommand::List { .. }, ..) => {
            let mut conn = db.read().await?;
            let states: Vec<String> = JobState::ALL
                .iter()
                .map(|s| format!("{:>9}", s.as_str()))
                .collect();
            say!(
                "{:<24} {:>6} {}  running at most",
                "queue",
                "paused",
                states.join(" ")
            );
            for q in store::queues(conn.ex(), &project, None).await? {
                let counts: Vec<String> = JobState::ALL
                    .iter()
                    .map(|s| format!("{:>9}", q.counts.get(s).copied().unwrap_or(0)))
                    .collect();
                say!(
                    "{:<24} {:>6} {}  {}",
                    q.name.as_str(),
                    q.settings.paused,
                    counts.join(" "),
                    q.settings.running_limit()
                );
            }
        }
        (QueueCommand::Stats { .. }, _, Some(info)) => {
            // The limits in words next to the counts, as the dashboard shows them.
            let mut v = serde_json::to_value(&info)?;
            v["running_limit"] = serde_json::json!(info.settings.running_limit());
            say!("{}", serde_json::to_string_pretty(&v)?)
        }
        (QueueCommand::Pause { .. }, Some(n), _) => {
            let pause = |s| Ok(QueueSettings { paused: true, ..s });
            service::save_settings(
                &db,
                &ctx,
                &n,
                "queue.pause",
                config.max_queues_per_project,
                pause,
            )
            .await
            .map_err(api_err)?;
            say!("paused {n}");
        }
        (QueueCommand::Resume { .. }, Some(n), _) => {
            let resume = |s| Ok(QueueSettings { paused: false, ..s });
            service::save_settings(
                &db,
                &ctx,
                &n,
                "queue.resume",
                config.max_queues_per_project,
                resume,
            )
            .await
            .map_err(api_err)?;
            say!("resumed {n}");
        }
        (QueueCommand::RetryFailed { .. }, Some(n), _) => {
            let count = service::bulk(&db, &ctx, &n, BulkOp::RetryFailed)
                .await
                .map_err(api_err)?;
            say!("retried {count} failed jobs of {n}");
        }
        (
            QueueCommand::Clean {
                state,
                older_than_ms,
                limit,
                ..
            },
            Some(n),
            _,
        ) => {
            // The API's rules for the same fields.
            let state = JobState::parse(&state)
                .filter(|s| s.is_final())
                .context("--state must be completed, failed or cancelled")?;
            anyhow::ensure!(older_than_ms >= 0, "--older-than-ms must not be negative");
            anyhow::ensure!(limit.is_none_or(|l| l >= 1), "--limit must be at least 1");
            let before =
                time::from_db(time::to_db(time::now()) - older_than_ms.saturating_mul(1000));
            let bar = indicatif::ProgressBar::new_spinner().with_message(format!("cleaning {n}"));
            let mut total = 0;
            loop {
                let batch = limit.map_or(10_000, |l| (l - total).min(10_000));
                if batch <= 0 {
                    break;
                }
                let op = BulkOp::Clean {
                    state,
                    before,
                    limit: batch,
                };
                let n_done = service::bulk(&db, &ctx, &n, op).await.map_err(api_err)?;
                total += n_done;
                bar.set_message(format!("cleaning {n}: {total} deleted"));
                bar.tick();
                if n_done < batch {
                    break;
                }
            }
            bar.finish_and_clear();
            say!("deleted {total} {} jobs of {n}", state.as_str());
        }
        _ => {}
    }
    db.close().await;
    Ok(())
}
