//! Node-wide values kept in the `settings` table (name → text), such as secrets generated on
//! first start that every node of a cluster must share.

use crate::db::Db;
use crate::on_db;
use sqlx::Row;

/// The value of setting `name`, creating it with `generate()` if it does not exist yet.
///
/// Safe when several nodes start at once: each inserts its candidate only if the name is
/// absent (`ON CONFLICT DO NOTHING`) and then reads what is stored, in one transaction, so
/// every node ends up with the first value written. `generate` runs on every call that finds
/// the transaction open (its candidate is thrown away when another is already stored): make
/// it cheap and free of side effects.
pub async fn get_or_create(
    db: &Db,
    name: &str,
    generate: impl FnOnce() -> String,
) -> Result<String, sqlx::Error> {
    let candidate = generate();
    let mut tx = db.begin().await?;
    let value: String = on_db!(tx.ex(), c => {
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(&candidate)
            .execute(&mut *c)
            .await?;
        sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *c)
            .await?
            .try_get("value")?
    });
    tx.commit().await?;
    Ok(value)
}

/// The value of setting `name`, if it exists.
pub async fn get(db: &Db, name: &str) -> Result<Option<String>, sqlx::Error> {
    let mut conn = db.read().await?;
    on_db!(conn.ex(), c => {
        sqlx::query("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(c)
            .await?
            .map(|r| r.try_get("value"))
            .transpose()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_value_written_wins_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let db = Db::connect(&url, 4).await.unwrap();
        db.migrate().await.unwrap();
        assert_eq!(get(&db, "token").await.unwrap(), None);
        // Several "nodes" at once, each with its own candidate: all get the same value.
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    get_or_create(&db, "token", || format!("candidate-{i}")).await
                })
            })
            .collect();
        let mut values = Vec::new();
        for t in tasks {
            values.push(t.await.unwrap().unwrap());
        }
        values.dedup();
        assert_eq!(values.len(), 1, "{values:?}");
        assert!(values[0].starts_with("candidate-"));
        let again = get_or_create(&db, "token", || "late".into()).await.unwrap();
        assert_eq!(again, values[0]);
        assert_eq!(get(&db, "token").await.unwrap(), Some(again));
        db.close().await;
    }
}
