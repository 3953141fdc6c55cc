//! The test harness of the test binaries (`harness = false`, on `libtest-mimic`): tests
//! register themselves with `both!` (once per backend), `single!` (async) or `plain!`
//! (sync), each with what it needs beyond SQLite. A test whose need is missing is reported
//! **ignored**, with the variable that enables it, and one line after the summary says what
//! was skipped; the `SWITCHBOARD_TEST_REQUIRE_*` variables turn that skip into a failure.
//! PostgreSQL databases a test creates (`sbtest_…`) are dropped when it ends, passed or
//! failed.
#![allow(dead_code)]

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use switchboard_core::db::Backend;

/// A test's future.
pub type TestFuture = Pin<Box<dyn Future<Output = ()>>>;

/// How a registered test runs.
#[derive(Clone, Copy)]
pub enum Run {
    /// Once on SQLite and once on PostgreSQL (`name::sqlite`, `name::postgres`).
    Both(fn(Backend) -> TestFuture),
    /// Once, in a Tokio runtime.
    Single(fn() -> TestFuture),
    /// Once, without a runtime.
    Plain(fn()),
}

/// What a test needs beyond SQLite and a temporary folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// `SWITCHBOARD_TEST_DATABASE_URL`.
    Postgres,
    /// `SWITCHBOARD_TEST_REDIS_URL`.
    Redis,
    /// Chromium and playwright-core for the browser test.
    Browser,
    /// The `pgbouncer` binary.
    Pgbouncer,
    /// Permission to restart this machine's PostgreSQL.
    PgRestart,
}

impl Need {
    /// What it is, for people.
    fn what(self) -> &'static str {
        match self {
            Need::Postgres => "PostgreSQL",
            Need::Redis => "Redis",
            Need::Browser => "Chromium",
            Need::Pgbouncer => "PgBouncer",
            Need::PgRestart => "a PostgreSQL restart",
        }
    }

    /// How to enable it.
    fn enable(self) -> &'static str {
        match self {
            Need::Postgres => "set SWITCHBOARD_TEST_DATABASE_URL",
            Need::Redis => "set SWITCHBOARD_TEST_REDIS_URL",
            Need::Browser => "install /usr/bin/chromium and run `npm ci` in tests/browser",
            Need::Pgbouncer => {
                "install pgbouncer (or set SWITCHBOARD_TEST_PGBOUNCER) and SWITCHBOARD_TEST_DATABASE_URL"
            }
            Need::PgRestart => "set SWITCHBOARD_TEST_PG_RESTART=1",
        }
    }

    /// The variable that makes a missing one a failure, if any.
    fn required_by(self) -> Option<&'static str> {
        match self {
            Need::Postgres => Some("SWITCHBOARD_TEST_REQUIRE_POSTGRES"),
            Need::Redis => Some("SWITCHBOARD_TEST_REQUIRE_REDIS"),
            Need::Browser => Some("SWITCHBOARD_TEST_REQUIRE_BROWSER"),
            Need::Pgbouncer => Some("SWITCHBOARD_TEST_REQUIRE_PGBOUNCER"),
            Need::PgRestart => None,
        }
    }

    /// Whether this machine has it.
    fn present(self) -> bool {
        let set = |v: &str| std::env::var_os(v).is_some();
        match self {
            Need::Postgres => set("SWITCHBOARD_TEST_DATABASE_URL"),
            Need::Redis => set("SWITCHBOARD_TEST_REDIS_URL"),
            Need::Browser => {
                browser_dir().join("node_modules/playwright-core").exists()
                    && std::path::Path::new("/usr/bin/chromium").exists()
            }
            Need::Pgbouncer => std::path::Path::new(&pgbouncer_path()).exists(),
            Need::PgRestart => set("SWITCHBOARD_TEST_PG_RESTART"),
        }
    }
}

/// The browser test's folder (`tests/browser`).
pub fn browser_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

/// Where the PgBouncer binary is looked for.
pub fn pgbouncer_path() -> String {
    std::env::var("SWITCHBOARD_TEST_PGBOUNCER").unwrap_or_else(|_| "/usr/sbin/pgbouncer".into())
}

/// A registered test (see [`both!`], [`single!`], [`plain!`]).
pub struct Scenario {
    /// `module_path!()` of its file.
    pub module: &'static str,
    /// Its function's name.
    pub name: &'static str,
    /// How it runs.
    pub run: Run,
    /// What it needs besides what its backend needs.
    pub needs: &'static [Need],
}

inventory::collect!(Scenario);

/// Registers `async fn name(backend: Backend)` tests, each run on SQLite and PostgreSQL;
/// `both!(needs(Redis): name)` for tests that need more.
#[macro_export]
macro_rules! both {
    (needs $needs:tt: $($name:ident),* $(,)?) => {$( $crate::both!(@one $needs $name); )*};
    (@one ($($need:ident),*) $name:ident) => {
        mod $name {
            pub(super) fn run(b: switchboard_core::db::Backend) -> $crate::harness::TestFuture {
                Box::pin(super::$name(b))
            }
        }
        inventory::submit! {
            $crate::harness::Scenario {
                module: module_path!(),
                name: stringify!($name),
                run: $crate::harness::Run::Both($name::run),
                needs: &[$($crate::harness::Need::$need),*],
            }
        }
    };
    ($($name:ident),* $(,)?) => { $crate::both!(needs(): $($name),*); };
}

/// Registers `async fn name()` tests, run once each.
#[macro_export]
macro_rules! single {
    (needs $needs:tt: $($name:ident),* $(,)?) => {$( $crate::single!(@one $needs $name); )*};
    (@one ($($need:ident),*) $name:ident) => {
        mod $name {
            pub(super) fn run() -> $crate::harness::TestFuture {
                Box::pin(super::$name())
            }
        }
        inventory::submit! {
            $crate::harness::Scenario {
                module: module_path!(),
                name: stringify!($name),
                run: $crate::harness::Run::Single($name::run),
                needs: &[$($crate::harness::Need::$need),*],
            }
        }
    };
    ($($name:ident),* $(,)?) => { $crate::single!(needs(): $($name),*); };
}

/// Registers plain `fn name()` tests.
#[macro_export]
macro_rules! plain {
    (needs $needs:tt: $($name:ident),* $(,)?) => {$( $crate::plain!(@one $needs $name); )*};
    (@one ($($need:ident),*) $name:ident) => {
        inventory::submit! {
            $crate::harness::Scenario {
                module: module_path!(),
                name: stringify!($name),
                run: $crate::harness::Run::Plain($name),
                needs: &[$($crate::harness::Need::$need),*],
            }
        }
    };
    ($($name:ident),* $(,)?) => { $crate::plain!(needs(): $($name),*); };
}

tokio::task_local! {
    /// The databases the running test created: `(admin URL, name)`.
    static CREATED: Arc<Mutex<Vec<(String, String)>>>;
}

/// Records a database the running test created, to drop it when the test ends. Outside a
/// test run by this harness the database is left (`.ci/run` sweeps `sbtest_*`).
pub fn created_database(admin: &str, name: &str) {
    let _ = CREATED.try_with(|c| {
        if let Ok(mut list) = c.lock() {
            list.push((admin.to_owned(), name.to_owned()));
        }
    });
}

/// Drops the databases, closing whatever connections remain to them.
fn drop_databases(list: Vec<(String, String)>) {
    if list.is_empty() {
        return;
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return eprintln!("cannot drop test databases: {e}"),
    };
    rt.block_on(async {
        use sqlx::Connection;
        for (admin, name) in list {
            let dropped = async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            };
            if let Err(e) = dropped.await {
                eprintln!("cannot drop test database {name}: {e}");
            }
        }
    });
}

/// Runs a test's future in a runtime of its own (as `#[tokio::test]` with two workers did),
/// then drops the databases it created, also when it panicked.
fn run_async(test: TestFuture) {
    let created: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(CREATED.scope(created.clone(), test))
    }));
    // The node's tasks and pools go with the runtime, before their databases.
    drop(rt);
    let list = created.lock().map(|mut l| std::mem::take(&mut *l));
    drop_databases(list.unwrap_or_default());
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// The first of `needs` this machine lacks.
fn missing(needs: &[Need]) -> Option<Need> {
    needs.iter().copied().find(|n| !n.present())
}

/// A trial that runs `body` unless a need is missing: then it is ignored with the reason,
/// or fails if a `SWITCHBOARD_TEST_REQUIRE_*` variable demands the need.
fn trial(name: String, needs: Vec<Need>, body: impl FnOnce() + Send + 'static) -> Trial {
    Trial::ignorable_test(name, move || match missing(&needs) {
        None => {
            body();
            Ok(Completion::Completed)
        }
        Some(n) => match n.required_by().filter(|v| std::env::var_os(v).is_some()) {
            Some(var) => Err(Failed::from(format!(
                "{} is required ({var} is set) but missing: {}",
                n.what(),
                n.enable()
            ))),
            None => Ok(Completion::ignored_with(format!(
                "needs {}: {}",
                n.what(),
                n.enable()
            ))),
        },
    })
}

/// Runs every registered test as the command line says (the usual `cargo test` filters
/// and flags), then prints what was skipped and how to enable it.
pub fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let mut trials = Vec::new();
    let mut needs_of: Vec<Vec<Need>> = Vec::new();
    let mut all: Vec<&Scenario> = inventory::iter::<Scenario>.into_iter().collect();
    all.sort_by_key(|s| (s.module, s.name));
    for s in all {
        // `api::e2e_jobs` → `e2e_jobs::name`; a test at a binary's root is just `name`.
        let base = match s.module.split_once("::") {
            Some((_, file)) => format!("{file}::{}", s.name),
            None => s.name.to_owned(),
        };
        match s.run {
            Run::Both(f) => {
                for (b, variant) in [(Backend::Sqlite, "sqlite"), (Backend::Postgres, "postgres")] {
                    let mut needs = s.needs.to_vec();
                    if b == Backend::Postgres {
                        needs.insert(0, Need::Postgres);
                    }
                    needs_of.push(needs.clone());
                    trials.push(trial(format!("{base}::{variant}"), needs, move || {
                        run_async(f(b))
                    }));
                }
            }
            Run::Single(f) => {
                needs_of.push(s.needs.to_vec());
                trials.push(trial(base, s.needs.to_vec(), move || run_async(f())));
            }
            Run::Plain(f) => {
                needs_of.push(s.needs.to_vec());
                trials.push(trial(base, s.needs.to_vec(), f));
            }
        }
    }
    // What will be skipped among the tests this run selects.
    let mut skipped: BTreeMap<Need, usize> = BTreeMap::new();
    for (t, needs) in trials.iter().zip(&needs_of) {
        if args.is_filtered_out(t) {
            continue;
        }
        if let Some(n) = missing(needs).filter(|n| {
            n.required_by()
                .is_none_or(|v| std::env::var_os(v).is_none())
        }) {
            *skipped.entry(n).or_default() += 1;
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    if !skipped.is_empty() && !args.list {
        let parts: Vec<String> = skipped
            .iter()
            .map(|(n, k)| {
                let tests = if *k == 1 { "test needs" } else { "tests need" };
                format!("{k} {tests} {} ({})", n.what(), n.enable())
            })
            .collect();
        println!("skipped (shown as ignored): {}\n", parts.join("; "));
    }
    conclusion.exit_code()
}
