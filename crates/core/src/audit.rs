//! The audit trail: append-only, hash-chained per project, written in the same transaction as
//! the change it describes, so a change without its audit record cannot exist.
//!
//! Each event stores the hash of the project's previous event; the chain head lives in
//! `audit_heads` and is advanced with an `UPDATE … RETURNING`, which takes the row lock on
//! PostgreSQL (concurrent writers of one project queue up there instead of forking the
//! chain) and is serialised by the single writer on SQLite.

use crate::db::{Exec, Tx};
use crate::id::{AuditEventId, ProjectId};
use crate::on_db;
use crate::time::{self, Timestamp};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;

/// Who did something.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// `user`, `api_key` or `system`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The user or key id (or a component name for `system`).
    pub id: String,
}

impl Actor {
    /// The process itself (bootstrap, CLI).
    pub fn system(component: &str) -> Actor {
        Actor {
            kind: "system".into(),
            id: component.into(),
        }
    }
}

/// Where a change came from: stamped on every event it writes.
#[derive(Clone, Debug)]
pub struct AuditContext {
    /// The project the change belongs to.
    pub project_id: ProjectId,
    /// Who made it.
    pub actor: Actor,
    /// Client IP.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// `X-Request-Id` of the request.
    pub request_id: Option<String>,
}

/// What happened.
#[derive(Clone, Debug)]
pub struct Change<'a> {
    /// Dotted verb, e.g. `api_key.create`.
    pub action: &'a str,
    /// Kind of the entity changed, e.g. `api_key`.
    pub entity_type: &'a str,
    /// Its id.
    pub entity_id: &'a str,
    /// State before (never secrets).
    pub before: Option<serde_json::Value>,
    /// State after (never secrets).
    pub after: Option<serde_json::Value>,
}

/// A stored audit event.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AuditEvent {
    /// Event id.
    pub id: String,
    /// Position in the project's chain, from 1.
    pub seq: i64,
    /// Who.
    pub actor: Actor,
    /// What.
    pub action: String,
    /// Entity kind.
    pub entity_type: String,
    /// Entity id.
    pub entity_id: String,
    /// Before.
    pub before: Option<serde_json::Value>,
    /// After.
    pub after: Option<serde_json::Value>,
    /// Client IP.
    pub ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// When (UTC).
    pub created_at: Timestamp,
    /// Hash of the previous event.
    pub prev_hash: String,
    /// This event's hash.
    pub hash: String,
}

/// The columns an event's hash covers, in a fixed order.
struct Stored {
    id: String,
    seq: i64,
    actor_type: String,
    actor_id: String,
    action: String,
    entity_type: String,
    entity_id: String,
    before_json: Option<String>,
    after_json: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    created_at: i64,
    prev_hash: String,
    hash: String,
}

impl Stored {
    fn compute_hash(&self, project_id: &str) -> String {
        let mut h = Sha256::new();
        let fields: [Option<&str>; 13] = [
            Some(project_id),
            Some(&self.id),
            Some(&self.actor_type),
            Some(&self.actor_id),
            Some(&self.action),
            Some(&self.entity_type),
            Some(&self.entity_id),
            self.before_json.as_deref(),
            self.after_json.as_deref(),
            self.ip.as_deref(),
            self.user_agent.as_deref(),
            self.request_id.as_deref(),
            Some(&self.prev_hash),
        ];
        h.update(self.seq.to_be_bytes());
        h.update(self.created_at.to_be_bytes());
        for f in fields {
            match f {
                // Length-prefixed so that no two different field lists hash the same bytes.
                Some(v) => {
                    h.update([1u8]);
                    h.update((v.len() as u64).to_be_bytes());
                    h.update(v.as_bytes());
                }
                None => h.update([0u8]),
            }
        }
        hex::encode(h.finalize())
    }

    fn into_event(self) -> AuditEvent {
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        AuditEvent {
            id: self.id,
            seq: self.seq,
            actor: Actor {
                kind: self.actor_type,
                id: self.actor_id,
            },
            action: self.action,
            entity_type: self.entity_type,
            entity_id: self.entity_id,
            before: parse(self.before_json),
            after: parse(self.after_json),
            ip: self.ip,
            user_agent: self.user_agent,
            request_id: self.request_id,
            created_at: time::from_db(self.created_at),
            prev_hash: self.prev_hash,
            hash: self.hash,
        }
    }
}

const COLUMNS: &str = "id, seq, actor_type, actor_id, action, entity_type, entity_id, \
     before_json, after_json, ip, user_agent, request_id, created_at, prev_hash, hash";

macro_rules! stored_from_row {
    ($r:expr) => {
        Stored {
            id: $r.try_get("id")?,
            seq: $r.try_get("seq")?,
            actor_type: $r.try_get("actor_type")?,
            actor_id: $r.try_get("actor_id")?,
            action: $r.try_get("action")?,
            entity_type: $r.try_get("entity_type")?,
            entity_id: $r.try_get("entity_id")?,
            before_json: $r.try_get("before_json")?,
            after_json: $r.try_get("after_json")?,
            ip: $r.try_get("ip")?,
            user_agent: $r.try_get("user_agent")?,
            request_id: $r.try_get("request_id")?,
            created_at: $r.try_get("created_at")?,
            prev_hash: $r.try_get("prev_hash")?,
            hash: $r.try_get("hash")?,
        }
    };
}

/// Starts the chain of a new project (call in the transaction that creates it).
pub async fn init_chain(ex: Exec<'_>, project: &ProjectId) -> Result<(), sqlx::Error> {
    on_db!(ex, c => sqlx::query(
        "INSERT INTO audit_heads (project_id, seq, hash) VALUES ($1, 0, '')",
    )
    .bind(project.as_str())
    .execute(c)
    .await
    .map(|_| ()))
}

/// Appends one event to the project's chain inside `tx`.
#[tracing::instrument(skip_all, fields(action = change.action, entity = change.entity_id))]
pub async fn record(
    tx: &mut Tx,
    ctx: &AuditContext,
    change: Change<'_>,
) -> Result<AuditEventId, sqlx::Error> {
    let project = ctx.project_id.as_str();
    let (seq, prev_hash): (i64, String) = on_db!(tx.ex(), c => {
        let row = sqlx::query(
            "UPDATE audit_heads SET seq = seq + 1 WHERE project_id = $1 RETURNING seq, hash",
        )
        .bind(project)
        .fetch_one(c)
        .await?;
        (row.try_get("seq")?, row.try_get("hash")?)
    });
    let id = AuditEventId::generate();
    let mut ev = Stored {
        id: id.to_string(),
        seq,
        actor_type: ctx.actor.kind.clone(),
        actor_id: ctx.actor.id.clone(),
        action: change.action.to_owned(),
        entity_type: change.entity_type.to_owned(),
        entity_id: change.entity_id.to_owned(),
        before_json: change.before.map(|v| v.to_string()),
        after_json: change.after.map(|v| v.to_string()),
        ip: ctx.ip.clone(),
        user_agent: ctx.user_agent.clone(),
        request_id: ctx.request_id.clone(),
        created_at: time::to_db(time::now()),
        prev_hash,
        hash: String::new(),
    };
    ev.hash = ev.compute_hash(project);
    on_db!(tx.ex(), c => {
        sqlx::query(&format!(
            "INSERT INTO audit_events (project_id, {COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(project)
        .bind(&ev.id)
        .bind(ev.seq)
        .bind(&ev.actor_type)
        .bind(&ev.actor_id)
        .bind(&ev.action)
        .bind(&ev.entity_type)
        .bind(&ev.entity_id)
        .bind(&ev.before_json)
        .bind(&ev.after_json)
        .bind(&ev.ip)
        .bind(&ev.user_agent)
        .bind(&ev.request_id)
        .bind(ev.created_at)
        .bind(&ev.prev_hash)
        .bind(&ev.hash)
        .execute(&mut *c)
        .await?;
        sqlx::query("UPDATE audit_heads SET hash = $2 WHERE project_id = $1")
            .bind(project)
            .bind(&ev.hash)
            .execute(&mut *c)
            .await?;
    });
    Ok(id)
}

/// How many events the project's chain holds (its head's sequence number): one row read,
/// for pages that show the trail's size without walking it.
pub async fn head_seq(ex: Exec<'_>, project: &ProjectId) -> Result<i64, sqlx::Error> {
    on_db!(ex, c => {
        let row = sqlx::query("SELECT seq FROM audit_heads WHERE project_id = $1")
            .bind(project.as_str())
            .fetch_optional(c)
            .await?;
        row.map(|r| r.try_get::<i64, _>("seq")).transpose().map(|s| s.unwrap_or(0))
    })
}

/// Filters for [`list`]; every field is optional.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Actor id (user or key).
    pub actor_id: Option<String>,
    /// Exact action, e.g. `api_key.revoke`.
    pub action: Option<String>,
    /// Entity kind.
    pub entity_type: Option<String>,
    /// Entity id.
    pub entity_id: Option<String>,
    /// Events at or after this time.
    pub since: Option<Timestamp>,
    /// Events before this time.
    pub until: Option<Timestamp>,
    /// Cursor: events with a lower `seq` than this (newest first).
    pub before_seq: Option<i64>,
}

/// The project's events, newest first, `limit` at most.
pub async fn list(
    ex: Exec<'_>,
    project: &ProjectId,
    f: &Filter,
    limit: i64,
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_events WHERE project_id = $1 \
         AND ($2 IS NULL OR actor_id = $2) AND ($3 IS NULL OR action = $3) \
         AND ($4 IS NULL OR entity_type = $4) AND ($5 IS NULL OR entity_id = $5) \
         AND ($6 IS NULL OR created_at >= $6) AND ($7 IS NULL OR created_at < $7) \
         AND ($8 IS NULL OR seq < $8) ORDER BY seq DESC LIMIT $9"
    );
    let rows: Vec<Stored> = on_db!(ex, c => {
        let rows = sqlx::query(&sql)
            .bind(project.as_str())
            .bind(&f.actor_id)
            .bind(&f.action)
            .bind(&f.entity_type)
            .bind(&f.entity_id)
            .bind(f.since.map(time::to_db))
            .bind(f.until.map(time::to_db))
            .bind(f.before_seq)
            .bind(limit)
            .fetch_all(c)
            .await?;
        rows.iter().map(|r| Ok(stored_from_row!(r))).collect::<Result<_, sqlx::Error>>()?
    });
    Ok(rows.into_iter().map(Stored::into_event).collect())
}

/// The outcome of walking a project's chain.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Verification {
    /// True when every event up to the chain head hashes correctly, links to its
    /// predecessor, and the last of them is the head.
    pub ok: bool,
    /// How many events were checked.
    pub checked: i64,
    /// The first event that does not verify, if any.
    pub first_broken: Option<BrokenLink>,
}

/// Where and why the chain breaks.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct BrokenLink {
    /// Sequence number of the event (of the first missing one, when events are missing at
    /// the end of the chain).
    pub seq: i64,
    /// Its id; null when the event is missing.
    pub id: Option<String>,
    /// What does not match.
    pub reason: String,
}

/// Why a chain whose every stored link verifies still does not match its head.
const MISSING_AT_END: &str = "events missing at the end of the chain";

/// Recomputes every hash of the project's chain, oldest first, up to the chain head read
/// before the walk (events appended meanwhile are left for the next run), and checks that
/// the last event is the head: the links alone cannot reveal events deleted from the end.
pub async fn verify(ex: Exec<'_>, project: &ProjectId) -> Result<Verification, sqlx::Error> {
    const PAGE: i64 = 1000;
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_events WHERE project_id = $1 AND seq > $2 AND seq <= $3 \
         ORDER BY seq LIMIT $4"
    );
    let (mut last_seq, mut prev_hash, mut checked) = (0i64, String::new(), 0i64);
    let mut last_id = String::new();
    let broken = |seq: i64, id: Option<&str>, reason: &str, checked: i64| Verification {
        ok: false,
        checked,
        first_broken: Some(BrokenLink {
            seq,
            id: id.map(str::to_owned),
            reason: reason.to_owned(),
        }),
    };
    on_db!(ex, c => {
        let head = sqlx::query("SELECT seq, hash FROM audit_heads WHERE project_id = $1")
            .bind(project.as_str())
            .fetch_optional(&mut *c)
            .await?;
        let Some(head) = head else {
            return Ok(broken(0, None, "the chain head is missing", 0));
        };
        let (head_seq, head_hash): (i64, String) = (head.try_get("seq")?, head.try_get("hash")?);
        loop {
            let rows = sqlx::query(&sql)
                .bind(project.as_str())
                .bind(last_seq)
                .bind(head_seq)
                .bind(PAGE)
                .fetch_all(&mut *c)
                .await?;
            for r in &rows {
                let s = stored_from_row!(r);
                checked += 1;
                let failure = if s.seq != last_seq + 1 {
                    Some("sequence gap: an event is missing before this one")
                } else if s.prev_hash != prev_hash {
                    Some("prev_hash does not match the previous event")
                } else if s.compute_hash(project.as_str()) != s.hash {
                    Some("content does not match its hash")
                } else {
                    None
                };
                if let Some(reason) = failure {
                    return Ok(broken(s.seq, Some(&s.id), reason, checked));
                }
                last_seq = s.seq;
                prev_hash = s.hash;
                last_id = s.id;
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        if last_seq != head_seq {
            return Ok(broken(last_seq + 1, None, MISSING_AT_END, checked));
        }
        if prev_hash != head_hash {
            let reason = "the last event does not match the chain head";
            return Ok(broken(last_seq, Some(&last_id), reason, checked));
        }
    });
    Ok(Verification {
        ok: true,
        checked,
        first_broken: None,
    })
}
