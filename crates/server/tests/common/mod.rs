//! Set-up shared by the test binaries that run whole nodes against PostgreSQL (the `api`
//! binary has its own harness).

pub mod harness;

use sqlx::Connection;
use switchboard_core::config::Config;

/// Creates an empty database `sbtest_…` next to the admin URL's, dropped when the test
/// ends; returns its name and URL.
pub async fn create_database(admin: &str) -> (String, url::Url) {
    let name = format!("sbtest_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    harness::created_database(admin, &name);
    conn.close().await.unwrap();
    let mut url = url::Url::parse(admin).unwrap();
    url.set_path(&format!("/{name}"));
    (name, url)
}

/// A node's configuration for `database_url`, listening on a free port, with a bootstrap
/// API key (returned) to call it with.
pub fn node_config(database_url: &str, dir: &std::path::Path) -> (Config, String) {
    switchboard_server::telemetry::init_test_logs();
    let mut config = Config::with_data_dir(dir);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.database_url = database_url.to_owned();
    config.db_max_connections = 8;
    // Push targets in tests are local fake servers, which the default egress policy refuses.
    config.push_allow = switchboard_core::config::PushAllow::parse("127.0.0.0/8").unwrap();
    let key = format!("sb_test_{}", uuid::Uuid::now_v7().simple());
    config.bootstrap_api_key = Some(key.clone().into());
    (config, key)
}
