//! `switchboard doctor`: configuration, database, Redis and storage, one line each.

use super::open::sqlite_file;
use crate::app;
use std::process::ExitCode;
use switchboard_core::config::Config;
use switchboard_core::db::Db;

/// Prints one line per check; the exit code is 1 if any failed. Creates nothing: a SQLite
/// database or data folder that does not exist yet is reported as such (`serve` creates
/// them).
pub async fn doctor(config: &Config) -> anyhow::Result<ExitCode> {
    let mut lines: Vec<(bool, &str, String)> = Vec::new();
    let mut line = |ok: bool, name: &'static str, detail: &str| {
        lines.push((ok, name, detail.to_owned()));
    };
    line(
        true,
        "config",
        &format!(
            "listen {}, data dir {}",
            config.listen,
            config.data_dir.display()
        ),
    );
    let missing_file = match config.database_url.starts_with("sqlite:") {
        true => sqlite_file(&config.database_url)?.filter(|f| !f.exists()),
        false => None,
    };
    if let Some(file) = missing_file {
        line(
            true,
            "database",
            &format!(
                "sqlite {} does not exist yet (`switchboard serve` creates it)",
                file.display()
            ),
        );
    } else {
        match Db::connect(&config.database_url, 2).await {
            Ok(db) => {
                match db.ping().await {
                    Ok(()) => line(
                        true,
                        "database",
                        &format!(
                            "{} {}",
                            db.backend().name(),
                            app::redact(&config.database_url)
                        ),
                    ),
                    Err(e) => line(false, "database", &e.to_string()),
                }
                db.close().await;
            }
            Err(e) => line(
                false,
                "database",
                &format!("{}: {e}", app::redact(&config.database_url)),
            ),
        }
    }
    match &config.redis_url {
        None => line(
            true,
            "redis",
            "not configured (in-process rate limits and cache)",
        ),
        Some(url) => {
            let ping = async {
                let client = redis::Client::open(url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("PING").query_async::<String>(&mut conn).await
            };
            match tokio::time::timeout(std::time::Duration::from_secs(5), ping).await {
                Ok(Ok(_)) => line(true, "redis", &app::redact(url)),
                Ok(Err(e)) => line(false, "redis", &format!("{}: {e}", app::redact(url))),
                Err(_) => line(false, "redis", &format!("{}: timed out", app::redact(url))),
            }
        }
    }
    let probe = config.data_dir.join(".doctor-probe");
    if config.data_dir.is_dir() {
        let storage = std::fs::write(&probe, b"ok").and_then(|()| std::fs::remove_file(&probe));
        match storage {
            Ok(()) => line(
                true,
                "storage",
                &format!("{} writable", config.data_dir.display()),
            ),
            Err(e) => line(
                false,
                "storage",
                &format!("{}: {e}", config.data_dir.display()),
            ),
        }
    } else {
        line(
            true,
            "storage",
            &format!(
                "{} does not exist yet (`switchboard serve` creates it)",
                config.data_dir.display()
            ),
        );
    }
    let mut failed = false;
    for (ok, name, detail) in lines {
        failed |= !ok;
        say!("{:<4} {name:<9} {detail}", if ok { "ok" } else { "FAIL" });
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
