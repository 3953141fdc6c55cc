//! Reading the project's audit trail and checking its hash chain.

use crate::platform::PlatformResult;
use switchboard_core::audit::{self, AuditEvent, Filter, Verification};
use switchboard_core::db::Db;
use switchboard_core::id::ProjectId;

/// The project's events matching `filter`, newest first, `limit` at most.
#[tracing::instrument(skip_all, fields(project = %project))]
pub async fn list(
    db: &Db,
    project: &ProjectId,
    filter: &Filter,
    limit: i64,
) -> PlatformResult<Vec<AuditEvent>> {
    let mut conn = db.read().await?;
    Ok(audit::list(conn.ex(), project, filter, limit).await?)
}

/// The sequence number of the project's latest event (0 for none).
#[tracing::instrument(skip_all, fields(project = %project))]
pub async fn head(db: &Db, project: &ProjectId) -> PlatformResult<i64> {
    let mut conn = db.read().await?;
    Ok(audit::head_seq(conn.ex(), project).await?)
}

/// Recomputes the project's whole hash chain (it reads every event: on request only) and
/// reports the first broken link, if any.
#[tracing::instrument(skip_all, fields(project = %project))]
pub async fn verify(db: &Db, project: &ProjectId) -> PlatformResult<Verification> {
    let mut conn = db.read().await?;
    Ok(audit::verify(conn.ex(), project).await?)
}
