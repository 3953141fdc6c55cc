//! Configuration sections and the secret key through the real binary and the real node:
//! a bad key or an undeclared section stops `switchboard` with exit 2 and one line naming
//! it; nodes of one database share the generated secret key.

use crate::helpers::{spawn_config, test_config};
use crate::{both, plain};
use secrecy::ExposeSecret;
use std::process::{Command, Output};
use switchboard_core::crypto::Key;
use switchboard_core::db::Backend;

plain!(
    a_bad_secret_key_exits_2_without_echoing_it,
    an_undeclared_section_exits_2_naming_it
);
both!(nodes_of_one_database_share_the_generated_secret_key);

/// `switchboard doctor` with `env`, in an empty data folder.
fn doctor(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(args)
        .arg("doctor")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("SWITCHBOARD_CONFIG")
        .env("SWITCHBOARD_DATA_DIR", dir.path())
        .env("SWITCHBOARD_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run switchboard")
}

/// Exit 2 with one line on stderr, which it returns.
fn config_error(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    err
}

fn a_bad_secret_key_exits_2_without_echoing_it() {
    let err = config_error(&doctor(
        &[],
        &[("SWITCHBOARD_SECRET_KEY", "hunter2-hunter2")],
    ));
    assert!(
        err.contains("SWITCHBOARD_SECRET_KEY: must be 32 bytes"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let err = config_error(&doctor(
        &[],
        &[("SWITCHBOARD_SECRET_KEY_PREVIOUS", "not-a-key")],
    ));
    assert!(err.contains("SWITCHBOARD_SECRET_KEY_PREVIOUS"), "{err}");
    // A good one passes.
    let key = Key::generate().encode();
    let o = doctor(&[], &[("SWITCHBOARD_SECRET_KEY", &key)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn an_undeclared_section_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sb.toml");
    std::fs::write(&file, "body_limit = 4096\n\n[smtp]\nhost = \"mail\"\n").unwrap();
    let err = config_error(&doctor(&["--config", file.to_str().unwrap()], &[]));
    assert!(
        err.contains("sb.toml:smtp: unknown section `smtp`"),
        "{err}"
    );
    let err = config_error(&doctor(&[], &[("SWITCHBOARD_S3__BUCKET", "media")]));
    assert!(
        err.contains("SWITCHBOARD_S3__BUCKET: unknown section `s3`"),
        "{err}"
    );
    let err = config_error(&doctor(&[], &[("SWITCHBOARD_S3__", "x")]));
    assert!(err.contains("not a section setting"), "{err}");
}

async fn nodes_of_one_database_share_the_generated_secret_key(b: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(b, dir.path()).await;
    let a = spawn_config(config.clone(), None).await;
    let b_node = spawn_config(config.clone(), None).await;
    let context = "provider_accounts:pacc_1:credentials";
    let sealed = a.state.secrets.seal("api-token", context).unwrap();
    assert_eq!(
        a.state.secrets.current_id(),
        b_node.state.secrets.current_id()
    );
    let opened = b_node.state.secrets.open(&sealed, context).unwrap();
    assert_eq!(opened.expose_secret(), "api-token");

    // A node given a key of its own seals with it and still opens the generated key's values.
    let mut configured = config;
    configured.secret_key = Some(Key::generate());
    let c = spawn_config(configured, Some(dir)).await;
    assert_ne!(c.state.secrets.current_id(), a.state.secrets.current_id());
    let opened = c.state.secrets.open(&sealed, context).unwrap();
    assert_eq!(opened.expose_secret(), "api-token");
    assert!(!c.state.secrets.is_current(&sealed));
    let resealed = c.state.secrets.seal("api-token", context).unwrap();
    assert!(a.state.secrets.open(&resealed, context).is_err());
}
