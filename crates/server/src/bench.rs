//! `switchboard bench queue`: the queue engine against whatever `DATABASE_URL` names.
//!
//! 1. enqueue N no-op jobs in batches (one commit per batch, as `POST /v1/jobs/batch`);
//! 2. drain them with the in-process runtime at concurrency C (claims and completions
//!    batched as in production);
//! 3. offer a paced load at half the measured drain rate and record enqueue→start latency.
//!
//! Prints jobs/s per phase, latency percentiles and commits per job (each durable commit is
//! one WAL flush; on PostgreSQL the WAL syncs from `pg_stat_wal` are printed as well).

use crate::app;
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchboard_core::audit;
use switchboard_core::config::Config;
use switchboard_core::db::{self, Db};
use switchboard_core::id::ProjectId;
use switchboard_core::time;
use switchboard_queue::runtime::{JobContext, Runtime};
use switchboard_queue::{store, JobKind, NewJob, QueueName, QueueSettings};
use tokio::sync::watch;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    /// Jobs to enqueue and drain.
    pub jobs: u64,
    /// Jobs run at once.
    pub concurrency: i32,
    /// Jobs per enqueue transaction.
    pub batch: usize,
    /// Keep completed jobs for an hour rather than deleting them on completion.
    pub keep_completed: bool,
    /// Run only phase 4, the store alone.
    pub store_only: bool,
    /// Jobs/s offered in the latency phase (default: half the single-job peak or of the
    /// drain rate, whichever is lower).
    pub rate: Option<f64>,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>9} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_owned());
    pb
}

async fn bench_project(db: &Db) -> anyhow::Result<ProjectId> {
    let mut conn = db.read().await?;
    let found = crate::platform::projects::repo::find_by_name(conn.ex(), "bench").await?;
    drop(conn);
    if let Some(id) = found {
        return Ok(id);
    }
    let project = crate::platform::projects::Project {
        id: ProjectId::generate(),
        name: "bench".into(),
        created_at: time::now(),
    };
    let mut tx = db.begin().await?;
    crate::platform::projects::repo::insert(tx.ex(), &project).await?;
    audit::init_chain(tx.ex(), &project.id).await?;
    tx.commit().await?;
    Ok(project.id)
}

/// Jobs of the queue no longer waiting or running (completed, whether kept or deleted).
async fn finished(
    db: &Db,
    project: &ProjectId,
    queue: &QueueName,
    enqueued: u64,
) -> anyhow::Result<u64> {
    use switchboard_queue::JobState;
    let mut conn = db.read().await?;
    let q = store::queues(conn.ex(), project, Some(queue)).await?;
    let pending: i64 = q
        .first()
        .map(|q| {
            [
                JobState::Scheduled,
                JobState::Available,
                JobState::Running,
                JobState::Retryable,
            ]
            .iter()
            .map(|s| q.counts.get(s).copied().unwrap_or(0))
            .sum()
        })
        .unwrap_or(0);
    Ok(enqueued.saturating_sub(pending.max(0) as u64))
}

fn job(queue: &QueueName, run_at: time::Timestamp) -> NewJob {
    NewJob {
        run_at,
        ..NewJob::local(
            queue.clone(),
            JobKind::from_db("bench.noop".into()),
            serde_json::Value::Null,
        )
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Waits until `expected` jobs of the bench queue have finished.
async fn wait_finished(
    db: &Db,
    project: &ProjectId,
    queue: &QueueName,
    expected: u64,
) -> anyhow::Result<()> {
    while finished(db, project, queue, expected).await? < expected {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Concurrent single-job producers in the latency phases.
const PRODUCERS: u64 = 16;

/// PRODUCERS tasks each enqueue `per_producer` jobs, one per call as one API request each
/// would, at `rate` jobs/s in all (spread evenly) or as fast as they can; returns the rate
/// reached and how long each enqueue took until committed (ms, sorted).
async fn produce(
    project: &ProjectId,
    queue: &QueueName,
    runtime: &Runtime,
    per_producer: u64,
    rate: Option<f64>,
) -> anyhow::Result<(f64, Vec<f64>)> {
    let pb = bar(
        per_producer * PRODUCERS,
        if rate.is_some() { "paced" } else { "peak" },
    );
    let interval = rate.map(|r| Duration::from_secs_f64(PRODUCERS as f64 / r));
    let start = Instant::now();
    let calls: Arc<Mutex<Vec<f64>>> = Arc::default();
    let mut producers = tokio::task::JoinSet::new();
    for p in 0..PRODUCERS {
        let (project, queue, pb, runtime, calls) = (
            project.clone(),
            queue.clone(),
            pb.clone(),
            runtime.clone(),
            calls.clone(),
        );
        producers.spawn(async move {
            // Spread the producers' ticks over one interval.
            let mut next =
                interval.map(|i| Instant::now() + i.mul_f64(p as f64 / PRODUCERS as f64));
            for _ in 0..per_producer {
                if let (Some(at), Some(i)) = (next.as_mut(), interval) {
                    if let Some(wait) = at.checked_duration_since(Instant::now()) {
                        tokio::time::sleep(wait).await;
                    }
                    *at += i;
                }
                let t0 = Instant::now();
                runtime
                    .enqueue(&project, &[job(&queue, time::now())])
                    .await?;
                calls
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(t0.elapsed().as_secs_f64() * 1000.0);
                pb.inc(1);
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(done) = producers.join_next().await {
        done??;
    }
    pb.finish();
    let rate = (per_producer * PRODUCERS) as f64 / start.elapsed().as_secs_f64();
    let mut calls = calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
    calls.sort_by(|a, b| a.total_cmp(b));
    Ok((rate, calls))
}

/// Enqueues `opts.jobs` jobs in batches of `opts.batch`, each committed on its own as
/// `POST /v1/jobs/batch` does.
async fn enqueue_all(
    db: &Db,
    project: &ProjectId,
    queue: &QueueName,
    opts: BenchOptions,
) -> anyhow::Result<()> {
    let pb = bar(opts.jobs, "enqueue");
    let mut left = opts.jobs;
    while left > 0 {
        let n = left.min(opts.batch as u64);
        let now = time::now();
        let batch: Vec<NewJob> = (0..n).map(|_| job(queue, now)).collect();
        store::enqueue_now(db, project, &batch).await?;
        left -= n;
        pb.inc(n);
    }
    pb.finish();
    Ok(())
}

/// Claims and completes `opts.jobs` jobs through the store API alone; returns the seconds.
async fn claim_complete_all(
    db: &Db,
    project: &ProjectId,
    queue: &QueueName,
    opts: BenchOptions,
) -> anyhow::Result<f64> {
    let pb = bar(opts.jobs, "claim+done");
    let kinds = vec!["bench.noop".to_owned()];
    let hints = store::Hints::default();
    let start = Instant::now();
    let mut left = opts.jobs;
    while left > 0 {
        let claim = store::Claim {
            project,
            queue,
            who: store::ClaimFor::Runtime(&kinds, &hints),
            worker: "bench",
            max: 1000,
            lease_ms: 60_000,
        };
        let claimed = store::claim_now(db, &claim, true).await?;
        if claimed.is_empty() {
            anyhow::bail!("{left} jobs were not claimable");
        }
        let done: Vec<store::Completion> = claimed
            .into_iter()
            .map(|c| store::Completion {
                project: project.clone(),
                queue: queue.clone(),
                id: c.job.id,
                token: c.lease_token,
                result: None,
                remove: !opts.keep_completed,
            })
            .collect();
        let n = done.len() as u64;
        for r in store::complete_now(db, &done).await? {
            r?;
        }
        left = left.saturating_sub(n);
        pb.inc(n);
    }
    pb.finish();
    Ok(start.elapsed().as_secs_f64())
}

/// What phases 1–3 measured.
struct RuntimePhases {
    enqueue_secs: f64,
    drain_secs: f64,
    commits: u64,
    wal_syncs: Option<i64>,
    peak: f64,
    offered: f64,
    calls: Vec<f64>,
    lat: Vec<f64>,
}

/// Gives PostgreSQL's planner the statistics of the enqueued jobs, as autovacuum would on a
/// production database (this machine's cluster runs with autovacuum off); untimed, and
/// done for every PostgreSQL-backed system of `bench/run.sh` alike. SQLite needs none.
async fn analyze(db: &Db) -> anyhow::Result<()> {
    store::analyze(db)
        .await
        .context("ANALYZE after the enqueue")
}

/// Phases 1–3: enqueue, drain with the runtime, paced latency.
async fn runtime_phases(
    db: &Db,
    project: &ProjectId,
    queue: &QueueName,
    opts: BenchOptions,
) -> anyhow::Result<RuntimePhases> {
    let (commits0, wal0) = (db::commits(), store::wal_syncs(db).await);
    // 1. Enqueue.
    let start = Instant::now();
    enqueue_all(db, project, queue, opts).await?;
    let enqueue_secs = start.elapsed().as_secs_f64();
    analyze(db).await?;

    // 2. Drain with the in-process runtime. The handler notes each job's enqueue→start
    // latency (claim time minus the time it became runnable) once the paced phase begins.
    let waits: Arc<Mutex<Vec<f64>>> = Arc::default();
    let pacing = Arc::new(AtomicBool::new(false));
    let (w, p) = (waits.clone(), pacing.clone());
    let runtime = Runtime::builder()
        .handler("bench.noop", move |ctx: JobContext| {
            if p.load(Ordering::Relaxed) {
                if let Some(started) = ctx.job.started_at {
                    let waited = (time::to_db(started) - time::to_db(ctx.job.run_at)).max(0);
                    w.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(waited as f64 / 1000.0);
                }
            }
            async { Ok(None) }
        })
        .build(db.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let pb = bar(opts.jobs, "drain");
    let start = Instant::now();
    let running = tokio::spawn(runtime.clone().run(stop_rx));
    loop {
        let done = finished(db, project, queue, opts.jobs).await?;
        pb.set_position(done.min(opts.jobs));
        if done >= opts.jobs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_secs = start.elapsed().as_secs_f64();
    pb.finish();
    let (commits1, wal1) = (db::commits(), store::wal_syncs(db).await);

    // 3. Latency at half of peak. Like application servers, PRODUCERS tasks each enqueue one
    // job per call; first flat out for a second (the peak rate of single-job enqueues
    // while the runtime runs them), then paced at half of that peak, or of the drain rate if
    // lower, for three seconds, while the handler records enqueue→start latency.
    let drain_rate = opts.jobs as f64 / drain_secs;
    let mut expected = opts.jobs;
    let burst = (drain_rate as u64 / PRODUCERS).max(1);
    let (peak, _) = produce(project, queue, &runtime, burst, None).await?;
    expected += burst * PRODUCERS;
    wait_finished(db, project, queue, expected).await?;
    let rate = opts.rate.unwrap_or((peak.min(drain_rate) / 2.0).max(10.0));
    let per_producer = ((rate * 3.0) as u64 / PRODUCERS).max(1);
    pacing.store(true, Ordering::Relaxed);
    let (offered, calls) = produce(project, queue, &runtime, per_producer, Some(rate)).await?;
    expected += per_producer * PRODUCERS;
    wait_finished(db, project, queue, expected).await?;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(15), running).await;

    let mut lat: Vec<f64> = waits.lock().unwrap_or_else(|e| e.into_inner()).clone();
    lat.sort_by(|a, b| a.total_cmp(b));

    Ok(RuntimePhases {
        enqueue_secs,
        drain_secs,
        commits: commits1 - commits0,
        wal_syncs: wal0.zip(wal1).map(|(a, b)| b - a),
        peak,
        offered,
        calls,
        lat,
    })
}

/// Runs the benchmark and prints its report.
pub async fn run(config: &Config, opts: BenchOptions) -> anyhow::Result<()> {
    let (db, _) = app::connect(config).await?;
    let project = bench_project(&db).await?;
    let queue = QueueName::parse(&format!(
        "bench-{}",
        &uuid::Uuid::now_v7().simple().to_string()[20..]
    ))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tx = db.begin().await?;
    let settings = QueueSettings {
        concurrency: opts.concurrency,
        keep_completed_secs: if opts.keep_completed { 3600 } else { 0 },
        ..QueueSettings::default()
    };
    store::save_settings(&mut tx, &project, &queue, &settings).await?;
    tx.commit().await?;
    println!(
        "switchboard bench queue: {} jobs, concurrency {}, batches of {}, completed jobs {}, {} backend",
        opts.jobs,
        opts.concurrency,
        opts.batch,
        if opts.keep_completed { "kept" } else { "deleted" },
        db.backend().name()
    );

    let report = if opts.store_only {
        None
    } else {
        Some(runtime_phases(&db, &project, &queue, opts).await?)
    };

    // 4. The store alone: the same number of jobs, claimed 1,000 at a time by one claimer and
    // completed as soon as claimed (no runtime, no handlers).
    enqueue_all(&db, &project, &queue, opts).await?;
    analyze(&db).await?;
    let claim_complete_secs = claim_complete_all(&db, &project, &queue, opts).await?;

    // Leave nothing behind.
    let mut tx = db.begin().await?;
    store::drop_queue(&mut tx, &project, &queue)
        .await
        .context("cleaning up the bench queue")?;
    tx.commit().await?;

    let jobs = opts.jobs as f64;
    if let Some(r) = &report {
        println!("enqueue      {:>10.0} jobs/s", jobs / r.enqueue_secs);
        println!("drain        {:>10.0} jobs/s", jobs / r.drain_secs);
        println!(
            "end to end   {:>10.0} jobs/s",
            jobs / (r.enqueue_secs + r.drain_secs)
        );
        println!("commits/job  {:>10.4}", r.commits as f64 / jobs);
        if let Some(w) = r.wal_syncs {
            println!("WAL syncs/job{:>10.4}", w as f64 / jobs);
        }
        println!(
            "single-job enqueue peak ({PRODUCERS} producers) {:.0} jobs/s",
            r.peak
        );
        let how = match opts.rate {
            Some(_) => "as --rate asked",
            None => "half of that peak or of the drain rate",
        };
        println!(
            "enqueue→start at {:.0} jobs/s offered ({how}): p50 {:.2} ms, p99 {:.2} ms",
            r.offered,
            percentile(&r.lat, 0.50),
            percentile(&r.lat, 0.99)
        );
        println!(
            "  of which the enqueue until committed: p50 {:.2} ms, p99 {:.2} ms",
            percentile(&r.calls, 0.50),
            percentile(&r.calls, 0.99)
        );
    }
    println!(
        "store alone: claim + complete {:>10.0} jobs/s (claims of 1,000, completed at once)",
        jobs / claim_complete_secs
    );
    db.close().await;
    Ok(())
}
