//! Configuration: built-in defaults, then an optional TOML file, then the environment.
//!
//! Every setting has one file key and one environment variable. A bad value is reported as
//! one line naming where it came from (the variable, or `file:key`) and what is wrong.
//!
//! Capabilities keep their settings in sections of their own (`[smtp]`,
//! `[providers.eskiz]`, `SWITCHBOARD_S3__BUCKET`): see [`sections`].

mod sections;

pub use sections::{Section, Sections};

use crate::crypto;
use secrecy::SecretString;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Text or JSON log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole, typed configuration of a node.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Folder for the embedded database and local files.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Most connections a node opens to PostgreSQL.
    pub db_max_connections: u32,
    /// Optional Redis for shared rate limits and cache.
    pub redis_url: Option<String>,
    /// Prefix for every Redis key this node writes.
    pub redis_prefix: String,
    /// Public base URL, used in printed links; defaults to `http://{listen}`.
    pub public_url: Option<String>,
    /// Log line format.
    pub log_format: LogFormat,
    /// `tracing` filter directives.
    pub log_level: String,
    /// Origins allowed by CORS (exact match); empty means no cross-origin access.
    pub cors_origins: Vec<String>,
    /// Largest accepted request body in bytes.
    pub body_limit: usize,
    /// Requests per minute per API key or user.
    pub rate_limit_per_minute: u32,
    /// Burst size of the per-key bucket.
    pub rate_limit_burst: u32,
    /// Requests per minute per client IP on `/v1/auth/*` and the dashboard login.
    pub auth_rate_limit_per_minute: u32,
    /// Lifetime of JWT access tokens, seconds.
    pub access_token_ttl_secs: i64,
    /// Lifetime of refresh tokens, seconds.
    pub refresh_token_ttl_secs: i64,
    /// HMAC secret for access tokens; when unset one is generated and kept in the database,
    /// so every node of a cluster shares it.
    pub jwt_secret: Option<SecretString>,
    /// Login of the owner created on first start.
    pub bootstrap_email: String,
    /// Password of the owner created on first start (random when unset).
    pub bootstrap_password: Option<SecretString>,
    /// API key created on first start (random when unset).
    pub bootstrap_api_key: Option<SecretString>,
    /// How many trusted proxies in front of this node append to `X-Forwarded-For`: the
    /// client IP is the entry that many places from the right (the right-most one the
    /// nearest proxies vouch for). 0 ignores the header (the default: anyone can send it).
    /// `trust_proxy = true` (the older setting) means 1.
    pub trusted_proxies: u32,
    /// Password hashes and checks (argon2, ~19 MiB each) run at once; 0 means one per CPU
    /// core.
    pub password_hash_concurrency: u32,
    /// Password hashes and checks that may wait for a free slot; beyond that a request is
    /// answered 503 `server-busy` at once, so a login flood cannot pile up work or memory.
    pub password_hash_queue: u32,
    /// How often jobs run by this node heartbeat, ms; their lease is twice that.
    pub job_heartbeat_ms: u64,
    /// Whether `serve` also runs jobs (set false for API-only nodes with separate workers).
    pub run_jobs: bool,
    /// Non-public destinations HTTP-push jobs may reach anyway (default: none, only public
    /// addresses).
    pub push_allow: PushAllow,
    /// Bearer token required for `/metrics`; without it (and without `metrics_listen`) the
    /// public listener does not serve metrics at all.
    pub metrics_token: Option<SecretString>,
    /// A separate address serving only `/metrics` (e.g. on an internal interface).
    pub metrics_listen: Option<SocketAddr>,
    /// Most distinct (project, queue) label sets this node exports; the rest are folded into
    /// `project="_other", queue="_other"`.
    pub metrics_max_queues: usize,
    /// Most queues one project may have (enqueues and settings that would create more are
    /// refused).
    pub max_queues_per_project: u32,
    /// Most cron schedules one project may have.
    pub max_schedules_per_project: u32,
    /// Most of one project's cron schedules that may fire more than once a minute.
    pub max_frequent_schedules_per_project: u32,
    /// Key sealing provider credentials and other secrets kept in the database; when unset
    /// one is generated and kept in the database, so every node of a cluster shares it.
    pub secret_key: Option<crypto::Key>,
    /// Earlier keys, still accepted for opening what they sealed (key rotation).
    pub secret_key_previous: Vec<crypto::Key>,
    /// Largest body accepted on `/hooks/*` (provider callbacks), in bytes.
    pub hooks_body_limit: usize,
    /// Provider callbacks per minute per client IP on `/hooks/*` (also the burst).
    pub hooks_rate_limit_per_minute: u32,
    /// Capabilities' sections (`[smtp]`, `SWITCHBOARD_S3__BUCKET`), read with
    /// [`Config::section`].
    pub sections: Sections,
}

/// Hosts, addresses and ranges that HTTP-push jobs may reach although they are not public
/// (loopback, private, link-local, …): the operator's exception to the SSRF guard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PushAllow {
    /// Host names (lower case, no trailing dot) whose every address is allowed.
    pub hosts: Vec<String>,
    /// Addresses (as /32 or /128) and CIDR ranges allowed whatever name led to them.
    pub nets: Vec<ipnet::IpNet>,
}

impl PushAllow {
    /// Parses a comma-separated list of host names, IP addresses and CIDR ranges.
    pub fn parse(s: &str) -> Result<PushAllow, String> {
        let mut allow = PushAllow::default();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bare = entry.trim_start_matches('[').trim_end_matches(']');
            if let Ok(net) = bare.parse::<ipnet::IpNet>() {
                allow.nets.push(net.trunc());
            } else if let Ok(ip) = bare.parse::<IpAddr>() {
                allow.nets.push(ipnet::IpNet::from(ip));
            } else if is_host_name(entry) {
                allow
                    .hosts
                    .push(entry.trim_end_matches('.').to_ascii_lowercase());
            } else {
                return Err(format!(
                    "`{entry}` is not a host name, IP address or CIDR range"
                ));
            }
        }
        Ok(allow)
    }

    /// Nothing is allowed beyond public addresses.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty()
    }

    /// Whether `host` (a name from a URL) is listed by name.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }

    /// Whether `ip` lies in a listed address or range (an IPv4-mapped IPv6 address counts
    /// as its IPv4 address).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let v4 = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        self.nets
            .iter()
            .any(|n| n.contains(&ip) || v4.is_some_and(|v4| n.contains(&v4)))
    }
}

/// Letters, digits, `-` and `.` (a DNS name as it appears in a URL), 1 to 253 characters.
fn is_host_name(s: &str) -> bool {
    let s = s.trim_end_matches('.');
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A setting that could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// Where the value came from: the environment variable or `file:key`.
    pub origin: String,
    /// What is wrong with it.
    pub message: String,
}

/// `(file key, environment variable)` for every setting.
const KEYS: &[(&str, &str)] = &[
    ("listen", "SWITCHBOARD_LISTEN"),
    ("data_dir", "SWITCHBOARD_DATA_DIR"),
    ("database_url", "DATABASE_URL"),
    ("db_max_connections", "SWITCHBOARD_DB_MAX_CONNECTIONS"),
    ("redis_url", "REDIS_URL"),
    ("redis_prefix", "SWITCHBOARD_REDIS_PREFIX"),
    ("public_url", "SWITCHBOARD_PUBLIC_URL"),
    ("log_format", "SWITCHBOARD_LOG_FORMAT"),
    ("log_level", "SWITCHBOARD_LOG"),
    ("cors_origins", "SWITCHBOARD_CORS_ORIGINS"),
    ("body_limit", "SWITCHBOARD_BODY_LIMIT"),
    ("rate_limit_per_minute", "SWITCHBOARD_RATE_LIMIT_PER_MINUTE"),
    ("rate_limit_burst", "SWITCHBOARD_RATE_LIMIT_BURST"),
    (
        "auth_rate_limit_per_minute",
        "SWITCHBOARD_AUTH_RATE_LIMIT_PER_MINUTE",
    ),
    ("access_token_ttl", "SWITCHBOARD_ACCESS_TOKEN_TTL"),
    ("refresh_token_ttl", "SWITCHBOARD_REFRESH_TOKEN_TTL"),
    ("jwt_secret", "SWITCHBOARD_JWT_SECRET"),
    ("bootstrap_email", "SWITCHBOARD_BOOTSTRAP_EMAIL"),
    ("bootstrap_password", "SWITCHBOARD_BOOTSTRAP_PASSWORD"),
    ("bootstrap_api_key", "SWITCHBOARD_BOOTSTRAP_API_KEY"),
    ("trust_proxy", "SWITCHBOARD_TRUST_PROXY"),
    ("trusted_proxies", "SWITCHBOARD_TRUSTED_PROXIES"),
    (
        "password_hash_concurrency",
        "SWITCHBOARD_PASSWORD_HASH_CONCURRENCY",
    ),
    ("password_hash_queue", "SWITCHBOARD_PASSWORD_HASH_QUEUE"),
    ("job_heartbeat_ms", "SWITCHBOARD_JOB_HEARTBEAT_MS"),
    ("run_jobs", "SWITCHBOARD_RUN_JOBS"),
    ("push_allow", "SWITCHBOARD_PUSH_ALLOW"),
    ("metrics_token", "SWITCHBOARD_METRICS_TOKEN"),
    ("metrics_listen", "SWITCHBOARD_METRICS_LISTEN"),
    ("metrics_max_queues", "SWITCHBOARD_METRICS_MAX_QUEUES"),
    (
        "max_queues_per_project",
        "SWITCHBOARD_MAX_QUEUES_PER_PROJECT",
    ),
    (
        "max_schedules_per_project",
        "SWITCHBOARD_MAX_SCHEDULES_PER_PROJECT",
    ),
    (
        "max_frequent_schedules_per_project",
        "SWITCHBOARD_MAX_FREQUENT_SCHEDULES_PER_PROJECT",
    ),
    ("secret_key", "SWITCHBOARD_SECRET_KEY"),
    ("secret_key_previous", "SWITCHBOARD_SECRET_KEY_PREVIOUS"),
    ("hooks_body_limit", "SWITCHBOARD_HOOKS_BODY_LIMIT"),
    (
        "hooks_rate_limit_per_minute",
        "SWITCHBOARD_HOOKS_RATE_LIMIT_PER_MINUTE",
    ),
];

/// The environment variable that names the config file.
pub const CONFIG_FILE_ENV: &str = "SWITCHBOARD_CONFIG";

struct Raw {
    values: HashMap<&'static str, (String, String)>,
    sections: Sections,
}

impl Raw {
    fn get(&self, key: &str) -> Option<(&str, &str)> {
        self.values
            .get(key)
            .map(|(v, origin)| (v.as_str(), origin.as_str()))
    }

    fn parse<T>(
        &self,
        key: &str,
        default: T,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.get(key) {
            None => Ok(default),
            Some((value, origin)) => parse(value).map_err(|message| ConfigError {
                origin: origin.to_owned(),
                message,
            }),
        }
    }

    fn string(&self, key: &str) -> Option<String> {
        self.get(key)
            .map(|(v, _)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }
}

fn number<T: std::str::FromStr>(what: &'static str) -> impl Fn(&str) -> Result<T, String> {
    move |s| {
        s.trim()
            .parse::<T>()
            .map_err(|_| format!("`{s}` is not {what}"))
    }
}

fn positive(what: &'static str) -> impl Fn(&str) -> Result<u32, String> {
    move |s| match number::<u32>(what)(s)? {
        0 => Err(format!("`{s}` must be at least 1")),
        n => Ok(n),
    }
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("`{s}` is not a boolean (true/false)")),
    }
}

fn database_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.starts_with("sqlite:") || s.starts_with("postgres://") || s.starts_with("postgresql://") {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a database URL (expected sqlite://path or postgres://…)"
        ))
    }
}

impl Config {
    /// Defaults for a node whose data lives in `data_dir` (what tests start from).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Config {
        let data_dir = data_dir.into();
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: default_database_url(&data_dir),
            data_dir,
            db_max_connections: 20,
            redis_url: None,
            redis_prefix: "sb:".into(),
            public_url: None,
            log_format: LogFormat::Text,
            log_level: "info".into(),
            cors_origins: Vec::new(),
            body_limit: 2 * 1024 * 1024,
            rate_limit_per_minute: 1200,
            rate_limit_burst: 200,
            auth_rate_limit_per_minute: 20,
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            jwt_secret: None,
            bootstrap_email: "owner@localhost".into(),
            bootstrap_password: None,
            bootstrap_api_key: None,
            trusted_proxies: 0,
            password_hash_concurrency: 0,
            password_hash_queue: 32,
            job_heartbeat_ms: 5_000,
            run_jobs: true,
            push_allow: PushAllow::default(),
            metrics_token: None,
            metrics_listen: None,
            metrics_max_queues: 1_000,
            max_queues_per_project: 1_000,
            max_schedules_per_project: 500,
            max_frequent_schedules_per_project: 20,
            secret_key: None,
            secret_key_previous: Vec::new(),
            hooks_body_limit: 1024 * 1024,
            hooks_rate_limit_per_minute: 1200,
            sections: Sections::default(),
        }
    }

    /// Loads defaults < `file` (if any) < `env`.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut raw = Raw {
            values: HashMap::new(),
            sections: Sections::default(),
        };
        if let Some(path) = file {
            read_file(path, &mut raw)?;
        }
        for (key, var) in KEYS {
            if let Some(v) = env.get(*var) {
                raw.values.insert(key, (v.clone(), (*var).to_owned()));
            }
        }
        raw.sections.add_env(env.iter())?;
        raw.sections.check_declared()?;

        let data_dir = raw
            .string("data_dir")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let d = Config::with_data_dir(data_dir);
        let log_format = raw.parse("log_format", d.log_format, |s| {
            match s.trim().to_ascii_lowercase().as_str() {
                "text" | "" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err(format!("`{s}` is not a log format (text or json)")),
            }
        })?;
        let redis_url = raw.parse("redis_url", None, |s| {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else if s.starts_with("redis://") || s.starts_with("rediss://") {
                Ok(Some(s.to_owned()))
            } else {
                Err(format!(
                    "`{s}` is not a Redis URL (expected redis://host:port)"
                ))
            }
        })?;
        let public_url = raw.parse("public_url", None, |s| {
            let s = s.trim().trim_end_matches('/');
            if s.is_empty() {
                return Ok(None);
            }
            url::Url::parse(s)
                .map(|_| Some(s.to_owned()))
                .map_err(|e| format!("`{s}` is not a URL ({e})"))
        })?;
        let secret = |s: &str| -> Result<Option<SecretString>, String> {
            Ok(Some(s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .map(SecretString::from))
        };
        let jwt_secret = raw.parse("jwt_secret", None, |s| match secret(s)? {
            Some(_) if s.trim().len() < 32 => Err("must be at least 32 characters".into()),
            other => Ok(other),
        })?;
        Ok(Config {
            listen: raw.parse("listen", d.listen, |s| {
                s.trim()
                    .parse()
                    .map_err(|_| format!("`{s}` is not a socket address (expected host:port)"))
            })?,
            database_url: raw.parse("database_url", d.database_url.clone(), database_url)?,
            db_max_connections: raw.parse(
                "db_max_connections",
                d.db_max_connections,
                positive("a number of connections"),
            )?,
            redis_url,
            redis_prefix: raw.string("redis_prefix").unwrap_or(d.redis_prefix),
            public_url,
            log_format,
            log_level: raw.string("log_level").unwrap_or(d.log_level),
            cors_origins: raw.parse("cors_origins", Vec::new(), |s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                    .map(|o| match url::Url::parse(o) {
                        Ok(u) if u.path() == "/" && o.starts_with(u.scheme()) => {
                            Ok(o.trim_end_matches('/').to_owned())
                        }
                        _ => Err(format!(
                            "`{o}` is not an origin (expected scheme://host[:port])"
                        )),
                    })
                    .collect()
            })?,
            body_limit: raw.parse("body_limit", d.body_limit, number("a size in bytes"))?,
            rate_limit_per_minute: raw.parse(
                "rate_limit_per_minute",
                d.rate_limit_per_minute,
                positive("a number of requests"),
            )?,
            rate_limit_burst: raw.parse(
                "rate_limit_burst",
                d.rate_limit_burst,
                positive("a number of requests"),
            )?,
            auth_rate_limit_per_minute: raw.parse(
                "auth_rate_limit_per_minute",
                d.auth_rate_limit_per_minute,
                positive("a number of requests"),
            )?,
            access_token_ttl_secs: raw.parse("access_token_ttl", d.access_token_ttl_secs, |s| {
                match number::<i64>("a number of seconds")(s)? {
                    n if n >= 10 => Ok(n),
                    _ => Err(format!("`{s}` must be at least 10 seconds")),
                }
            })?,
            refresh_token_ttl_secs: raw.parse(
                "refresh_token_ttl",
                d.refresh_token_ttl_secs,
                |s| match number::<i64>("a number of seconds")(s)? {
                    n if n >= 60 => Ok(n),
                    _ => Err(format!("`{s}` must be at least 60 seconds")),
                },
            )?,
            jwt_secret,
            bootstrap_email: raw.parse("bootstrap_email", d.bootstrap_email, |s| {
                let s = s.trim();
                if s.contains('@') && !s.contains(char::is_whitespace) {
                    Ok(s.to_ascii_lowercase())
                } else {
                    Err(format!("`{s}` is not an e-mail address"))
                }
            })?,
            bootstrap_password: raw.parse("bootstrap_password", None, |s| match secret(s)? {
                Some(_) if s.trim().chars().count() < 8 => {
                    Err("must be at least 8 characters".into())
                }
                other => Ok(other),
            })?,
            bootstrap_api_key: raw.parse("bootstrap_api_key", None, |s| match secret(s)? {
                Some(_)
                    if s.trim().len() < 24
                        || !s.trim().starts_with("sb_")
                        || s.trim().contains(char::is_whitespace) =>
                {
                    Err("must start with `sb_` and be at least 24 characters without spaces".into())
                }
                other => Ok(other),
            })?,
            // The older boolean means one proxy; an explicit count wins over it.
            trusted_proxies: match raw.get("trusted_proxies") {
                Some(_) => raw.parse("trusted_proxies", d.trusted_proxies, |s| {
                    match number::<u32>("a number of proxies")(s)? {
                        n if n <= 16 => Ok(n),
                        _ => Err(format!("`{s}` must be 0 to 16")),
                    }
                })?,
                None => u32::from(raw.parse("trust_proxy", false, boolean)?),
            },
            password_hash_concurrency: raw.parse(
                "password_hash_concurrency",
                d.password_hash_concurrency,
                |s| match number::<u32>("a number of hashes")(s)? {
                    n if n <= 1024 => Ok(n),
                    _ => Err(format!("`{s}` must be 0 (one per core) to 1024")),
                },
            )?,
            password_hash_queue: raw.parse("password_hash_queue", d.password_hash_queue, |s| {
                match number::<u32>("a number of waiting requests")(s)? {
                    n if n <= 100_000 => Ok(n),
                    _ => Err(format!("`{s}` must be 0 to 100000")),
                }
            })?,
            job_heartbeat_ms: raw.parse(
                "job_heartbeat_ms",
                d.job_heartbeat_ms,
                |s| match number::<u64>("a number of milliseconds")(s)? {
                    n if (200..=600_000).contains(&n) => Ok(n),
                    _ => Err(format!("`{s}` must be 200 to 600000")),
                },
            )?,
            run_jobs: raw.parse("run_jobs", d.run_jobs, boolean)?,
            push_allow: raw.parse("push_allow", d.push_allow, PushAllow::parse)?,
            metrics_token: raw.parse("metrics_token", None, |s| match secret(s)? {
                Some(_) if s.trim().len() < 16 || s.trim().contains(char::is_whitespace) => {
                    Err("must be at least 16 characters without spaces".into())
                }
                other => Ok(other),
            })?,
            metrics_listen: raw.parse("metrics_listen", None, |s| {
                let s = s.trim();
                if s.is_empty() {
                    return Ok(None);
                }
                s.parse()
                    .map(Some)
                    .map_err(|_| format!("`{s}` is not a socket address (expected host:port)"))
            })?,
            metrics_max_queues: raw.parse("metrics_max_queues", d.metrics_max_queues, |s| {
                match number::<usize>("a number of queues")(s)? {
                    n if (1..=1_000_000).contains(&n) => Ok(n),
                    _ => Err(format!("`{s}` must be 1 to 1000000")),
                }
            })?,
            max_queues_per_project: raw.parse(
                "max_queues_per_project",
                d.max_queues_per_project,
                positive("a number of queues"),
            )?,
            max_schedules_per_project: raw.parse(
                "max_schedules_per_project",
                d.max_schedules_per_project,
                positive("a number of schedules"),
            )?,
            max_frequent_schedules_per_project: raw.parse(
                "max_frequent_schedules_per_project",
                d.max_frequent_schedules_per_project,
                number("a number of schedules"),
            )?,
            // The messages never repeat a key: it is a secret.
            secret_key: raw.parse("secret_key", None, |s| match s.trim() {
                "" => Ok(None),
                key => crypto::Key::parse(key).map(Some),
            })?,
            secret_key_previous: raw.parse("secret_key_previous", Vec::new(), |s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|k| !k.is_empty())
                    .enumerate()
                    .map(|(i, k)| crypto::Key::parse(k).map_err(|e| format!("key {} {e}", i + 1)))
                    .collect()
            })?,
            hooks_body_limit: raw.parse(
                "hooks_body_limit",
                d.hooks_body_limit,
                |s| match number::<usize>("a size in bytes")(s)? {
                    n if n >= 1024 => Ok(n),
                    _ => Err(format!("`{s}` must be at least 1024 bytes")),
                },
            )?,
            hooks_rate_limit_per_minute: raw.parse(
                "hooks_rate_limit_per_minute",
                d.hooks_rate_limit_per_minute,
                positive("a number of requests"),
            )?,
            data_dir: d.data_dir,
            sections: raw.sections,
        })
    }

    /// Section `name` (`"smtp"`, `"providers.eskiz"`) read into `T`; `None` when the
    /// configuration does not mention it (see [`sections`]).
    pub fn section<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.sections.get(name)
    }

    /// The URL printed for people: the public URL, or one built from the listen address.
    pub fn base_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
    }
}

fn default_database_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("switchboard.db").display())
}

fn read_file(path: &Path, raw: &mut Raw) -> Result<(), ConfigError> {
    let file_origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        origin: file_origin.clone(),
        message: format!("cannot read config file ({e})"),
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError {
        origin: file_origin.clone(),
        message: format!("invalid TOML: {}", e.message()),
    })?;
    for (key, value) in table {
        let origin = format!("{file_origin}:{key}");
        let value = match value {
            // A table is a capability's section, checked against what it declares.
            toml::Value::Table(t) => {
                raw.sections.add_file_table(&file_origin, &key, t)?;
                continue;
            }
            other => other,
        };
        let Some((known, _)) = KEYS.iter().find(|(k, _)| *k == key) else {
            return Err(ConfigError {
                origin,
                message: "unknown setting".into(),
            });
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| i.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => {
                return Err(ConfigError {
                    origin,
                    message: format!("unsupported value `{other}`"),
                })
            }
        };
        raw.values.insert(known, (text, origin));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_put_sqlite_in_the_data_dir() {
        let c = Config::load(None, &env(&[("SWITCHBOARD_DATA_DIR", "/tmp/sb")])).unwrap();
        assert_eq!(c.database_url, "sqlite:///tmp/sb/switchboard.db");
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert!(c.redis_url.is_none());
    }

    #[test]
    fn environment_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sb.toml");
        std::fs::write(
            &path,
            "listen = \"0.0.0.0:9000\"\nrate_limit_per_minute = 60\ncors_origins = [\"https://app.example.com\"]\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&path),
            &env(&[("SWITCHBOARD_LISTEN", "127.0.0.1:7000")]),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7000");
        assert_eq!(c.rate_limit_per_minute, 60);
        assert_eq!(c.cors_origins, vec!["https://app.example.com".to_owned()]);
    }

    #[test]
    fn trusted_proxies_default_to_none_and_accept_the_older_boolean() {
        let c = Config::load(None, &HashMap::new()).unwrap();
        assert_eq!(c.trusted_proxies, 0);
        assert_eq!(c.password_hash_concurrency, 0);
        assert_eq!(c.password_hash_queue, 32);
        let c = Config::load(None, &env(&[("SWITCHBOARD_TRUST_PROXY", "true")])).unwrap();
        assert_eq!(c.trusted_proxies, 1);
        let c = Config::load(
            None,
            &env(&[
                ("SWITCHBOARD_TRUST_PROXY", "true"),
                ("SWITCHBOARD_TRUSTED_PROXIES", "2"),
                ("SWITCHBOARD_PASSWORD_HASH_CONCURRENCY", "3"),
                ("SWITCHBOARD_PASSWORD_HASH_QUEUE", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(c.trusted_proxies, 2);
        assert_eq!((c.password_hash_concurrency, c.password_hash_queue), (3, 0));
        let e = Config::load(None, &env(&[("SWITCHBOARD_TRUSTED_PROXIES", "-1")])).unwrap_err();
        assert_eq!(e.origin, "SWITCHBOARD_TRUSTED_PROXIES");
        let e = Config::load(None, &env(&[("SWITCHBOARD_TRUSTED_PROXIES", "99")])).unwrap_err();
        assert!(e.to_string().contains("0 to 16"), "{e}");
    }

    #[test]
    fn per_project_caps_parse_with_safe_defaults() {
        let c = Config::load(None, &HashMap::new()).unwrap();
        assert_eq!(
            (
                c.max_queues_per_project,
                c.max_schedules_per_project,
                c.max_frequent_schedules_per_project
            ),
            (1_000, 500, 20)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sb.toml");
        std::fs::write(&path, "max_schedules_per_project = 50\n").unwrap();
        let c = Config::load(
            Some(&path),
            &env(&[
                ("SWITCHBOARD_MAX_QUEUES_PER_PROJECT", "20000"),
                ("SWITCHBOARD_MAX_FREQUENT_SCHEDULES_PER_PROJECT", "0"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (
                c.max_queues_per_project,
                c.max_schedules_per_project,
                c.max_frequent_schedules_per_project
            ),
            (20_000, 50, 0)
        );
        let e =
            Config::load(None, &env(&[("SWITCHBOARD_MAX_QUEUES_PER_PROJECT", "0")])).unwrap_err();
        assert_eq!(e.origin, "SWITCHBOARD_MAX_QUEUES_PER_PROJECT");
        let e = Config::load(
            None,
            &env(&[("SWITCHBOARD_MAX_SCHEDULES_PER_PROJECT", "many")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("not a number of schedules"), "{e}");
    }

    #[test]
    fn bad_values_name_their_origin() {
        let e = Config::load(None, &env(&[("SWITCHBOARD_LISTEN", "nope")])).unwrap_err();
        assert_eq!(e.origin, "SWITCHBOARD_LISTEN");
        assert!(e.to_string().contains("not a socket address"), "{e}");
        let e = Config::load(None, &env(&[("DATABASE_URL", "mysql://x")])).unwrap_err();
        assert_eq!(e.origin, "DATABASE_URL");

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sb.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        let e = Config::load(Some(&path), &HashMap::new()).unwrap_err();
        assert!(e.origin.ends_with(":lisen"), "{e}");
    }

    #[test]
    fn push_allow_lists_hosts_addresses_and_ranges() {
        let c = Config::load(None, &HashMap::new()).unwrap();
        assert!(c.push_allow.is_empty(), "only public addresses by default");

        let c = Config::load(
            None,
            &env(&[(
                "SWITCHBOARD_PUSH_ALLOW",
                " Hooks.Internal. , 10.1.2.3, 192.168.0.0/16,[::1], fd00::1/8 ,",
            )]),
        )
        .unwrap();
        let a = &c.push_allow;
        assert_eq!(a.hosts, vec!["hooks.internal".to_owned()]);
        assert!(a.allows_host("HOOKS.internal."));
        assert!(!a.allows_host("other.internal"));
        for ip in [
            "10.1.2.3",
            "192.168.44.1",
            "::1",
            "fd12::5",
            "::ffff:192.168.1.1",
        ] {
            assert!(a.allows_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.1.2.4", "172.16.0.1", "::2", "fe80::1"] {
            assert!(!a.allows_ip(ip.parse().unwrap()), "{ip}");
        }

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sb.toml");
        std::fs::write(&path, "push_allow = [\"127.0.0.0/8\", \"localhost\"]\n").unwrap();
        let c = Config::load(Some(&path), &HashMap::new()).unwrap();
        assert!(c.push_allow.allows_ip("127.9.9.9".parse().unwrap()));
        assert!(c.push_allow.allows_host("localhost"));

        for bad in ["http://x.example", "10.0.0.0/33", "host:8080", "a b"] {
            let e = Config::load(None, &env(&[("SWITCHBOARD_PUSH_ALLOW", bad)])).unwrap_err();
            assert_eq!(e.origin, "SWITCHBOARD_PUSH_ALLOW");
            assert!(e.message.contains("not a host name"), "{e}");
        }
    }

    #[test]
    fn metrics_settings() {
        use secrecy::ExposeSecret;
        let c = Config::load(None, &HashMap::new()).unwrap();
        assert!(c.metrics_token.is_none() && c.metrics_listen.is_none());
        assert_eq!(c.metrics_max_queues, 1_000);
        let c = Config::load(
            None,
            &env(&[
                ("SWITCHBOARD_METRICS_TOKEN", "scrape-token-0123456789"),
                ("SWITCHBOARD_METRICS_LISTEN", "10.0.0.5:9100"),
                ("SWITCHBOARD_METRICS_MAX_QUEUES", "50"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.metrics_token.as_ref().unwrap().expose_secret(),
            "scrape-token-0123456789"
        );
        assert_eq!(c.metrics_listen.unwrap().to_string(), "10.0.0.5:9100");
        assert_eq!(c.metrics_max_queues, 50);
        for (var, bad) in [
            ("SWITCHBOARD_METRICS_TOKEN", "short"),
            ("SWITCHBOARD_METRICS_LISTEN", "nowhere"),
            ("SWITCHBOARD_METRICS_MAX_QUEUES", "0"),
        ] {
            let e = Config::load(None, &env(&[(var, bad)])).unwrap_err();
            assert_eq!(e.origin, var, "{e}");
        }
    }

    /// A capability's section, as a test declares it.
    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct S3 {
        bucket: String,
        #[serde(default = "default_region")]
        region: String,
        #[serde(default)]
        port: Option<u16>,
        #[serde(default)]
        path_style: bool,
        #[serde(default)]
        tags: Vec<String>,
    }

    fn default_region() -> String {
        "us-east-1".into()
    }

    #[derive(Debug, serde::Deserialize)]
    struct Eskiz {
        email: String,
        password: SecretString,
        #[serde(default)]
        retries: u32,
    }

    crate::config_section!("s3", S3);
    crate::config_section!("providers.eskiz", Eskiz);

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sb.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn sections_come_from_file_tables() {
        use secrecy::ExposeSecret;
        let (_dir, path) = file(
            "listen = \"127.0.0.1:9000\"\n[s3]\nbucket = \"media\"\nport = 9000\npath_style = true\ntags = [\"a\", \"b\"]\n\n[providers.eskiz]\nemail = \"ops@example.com\"\npassword = \"pw\"\n",
        );
        let c = Config::load(Some(&path), &HashMap::new()).unwrap();
        assert_eq!(
            c.listen.to_string(),
            "127.0.0.1:9000",
            "flat keys still work"
        );
        let s3: S3 = c.section("s3").unwrap().unwrap();
        assert_eq!(
            s3,
            S3 {
                bucket: "media".into(),
                region: "us-east-1".into(),
                port: Some(9000),
                path_style: true,
                tags: vec!["a".into(), "b".into()],
            }
        );
        let eskiz: Eskiz = c.section("providers.eskiz").unwrap().unwrap();
        assert_eq!(eskiz.email, "ops@example.com");
        assert_eq!(eskiz.password.expose_secret(), "pw");
        // Absent sections are None; nothing of a section shows in Debug output.
        let none: Option<S3> = Config::load(None, &HashMap::new())
            .unwrap()
            .section("s3")
            .unwrap();
        assert!(none.is_none());
        assert!(!format!("{c:?}").contains("\"pw\""), "{c:?}");
    }

    #[test]
    fn environment_overrides_one_key_of_a_table() {
        let (_dir, path) = file("[s3]\nbucket = \"media\"\nregion = \"eu-west-1\"\n");
        let c = Config::load(
            Some(&path),
            &env(&[
                ("SWITCHBOARD_S3__BUCKET", "other"),
                ("SWITCHBOARD_S3__PORT", " 9000 "),
                ("SWITCHBOARD_S3__PATH_STYLE", "yes"),
                ("SWITCHBOARD_S3__TAGS", "x, y,"),
            ]),
        )
        .unwrap();
        let s3: S3 = c.section("s3").unwrap().unwrap();
        assert_eq!(s3.bucket, "other", "the variable wins");
        assert_eq!(s3.region, "eu-west-1", "the file's other keys stay");
        assert_eq!((s3.port, s3.path_style), (Some(9000), true));
        assert_eq!(s3.tags, vec!["x".to_owned(), "y".to_owned()]);

        // The environment alone makes a section; nested paths too; empty means unset.
        let c = Config::load(
            None,
            &env(&[
                ("SWITCHBOARD_PROVIDERS__ESKIZ__EMAIL", "a@b.c"),
                ("SWITCHBOARD_PROVIDERS__ESKIZ__PASSWORD", "12345"),
                ("SWITCHBOARD_S3__BUCKET", "b"),
                ("SWITCHBOARD_S3__PORT", ""),
            ]),
        )
        .unwrap();
        let eskiz: Eskiz = c.section("providers.eskiz").unwrap().unwrap();
        assert_eq!(eskiz.email, "a@b.c");
        let s3: S3 = c.section("s3").unwrap().unwrap();
        assert_eq!((s3.bucket.as_str(), s3.port), ("b", None));
    }

    #[test]
    fn precedence_is_defaults_then_file_then_environment() {
        let (_dir, path) =
            file("[providers.eskiz]\nemail = \"file@x.y\"\npassword = \"p\"\nretries = \"3\"\n");
        let c = Config::load(Some(&path), &HashMap::new()).unwrap();
        let e: Eskiz = c.section("providers.eskiz").unwrap().unwrap();
        assert_eq!((e.email.as_str(), e.retries), ("file@x.y", 3));
        let c = Config::load(
            Some(&path),
            &env(&[("SWITCHBOARD_PROVIDERS__ESKIZ__RETRIES", "7")]),
        )
        .unwrap();
        let e: Eskiz = c.section("providers.eskiz").unwrap().unwrap();
        assert_eq!((e.email.as_str(), e.retries), ("file@x.y", 7));
        let (_dir, path) = file("[providers.eskiz]\nemail = \"file@x.y\"\npassword = \"p\"\n");
        let e: Eskiz = Config::load(Some(&path), &HashMap::new())
            .unwrap()
            .section("providers.eskiz")
            .unwrap()
            .unwrap();
        assert_eq!(e.retries, 0, "the struct's default");
        // Code can set sections too (tests build the config struct directly).
        let mut c = Config::with_data_dir("/tmp/x");
        c.sections.set("s3.bucket", "code").unwrap();
        let s3: S3 = c.section("s3").unwrap().unwrap();
        assert_eq!(s3.bucket, "code");
    }

    #[test]
    fn bad_section_values_name_the_variable_or_file_key() {
        let e = Config::load(
            None,
            &env(&[
                ("SWITCHBOARD_S3__BUCKET", "b"),
                ("SWITCHBOARD_S3__PORT", "lots"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.origin, "SWITCHBOARD_S3__PORT");
        assert!(e.message.contains("`lots` is not a whole number"), "{e}");
        let e = Config::load(
            None,
            &env(&[
                ("SWITCHBOARD_S3__BUCKET", "b"),
                ("SWITCHBOARD_S3__PORT", "70000"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.origin, "SWITCHBOARD_S3__PORT", "{e}");
        let e = Config::load(
            None,
            &env(&[
                ("SWITCHBOARD_S3__BUCKET", "b"),
                ("SWITCHBOARD_S3__PATH_STYLE", "maybe"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "SWITCHBOARD_S3__PATH_STYLE: `maybe` is not a boolean (true/false)"
        );

        let (_dir, path) = file("[s3]\nbucket = \"b\"\nport = true\n");
        let e = Config::load(Some(&path), &HashMap::new()).unwrap_err();
        assert!(e.origin.ends_with("sb.toml:s3.port"), "{e}");
        assert!(e.message.contains("expected u16"), "{e}");
        let (_dir, path) = file("[s3]\nregion = \"x\"\n");
        let e = Config::load(Some(&path), &HashMap::new()).unwrap_err();
        assert!(e.origin.ends_with("sb.toml:s3"), "{e}");
        assert_eq!(e.message, "the setting `bucket` is required");
        // The whole message is one line.
        assert_eq!(e.to_string().lines().count(), 1);
    }

    #[test]
    fn unknown_keys_and_sections_are_refused() {
        let (_dir, path) = file("[s3]\nbucket = \"b\"\nbukcet = \"typo\"\n");
        let e = Config::load(Some(&path), &HashMap::new()).unwrap_err();
        assert!(e.origin.ends_with("sb.toml:s3.bukcet"), "{e}");
        assert_eq!(
            e.message,
            "unknown setting of [s3] (known: bucket, region, port, path_style, tags)"
        );
        let e = Config::load(
            None,
            &env(&[
                ("SWITCHBOARD_S3__BUCKET", "b"),
                ("SWITCHBOARD_S3__REGOIN", "x"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.origin, "SWITCHBOARD_S3__REGOIN");
        assert!(e.message.starts_with("unknown setting of [s3]"), "{e}");

        let (_dir, path) = file("[smpt]\nhost = \"x\"\n");
        let e = Config::load(Some(&path), &HashMap::new()).unwrap_err();
        assert!(e.origin.ends_with("sb.toml:smpt"), "{e}");
        assert_eq!(
            e.message,
            "unknown section `smpt` (known: providers.eskiz, s3)"
        );
        let e =
            Config::load(None, &env(&[("SWITCHBOARD_PROVIDERS__ESKZ__EMAIL", "x")])).unwrap_err();
        assert_eq!(e.origin, "SWITCHBOARD_PROVIDERS__ESKZ__EMAIL");
        assert!(
            e.message.starts_with("unknown section `providers.eskz`"),
            "{e}"
        );
        for bad in [
            "SWITCHBOARD_S3__",
            "SWITCHBOARD___X",
            "SWITCHBOARD_S3__BUCKET__",
            "SWITCHBOARD_S-3__X",
        ] {
            let e = Config::load(None, &env(&[(bad, "x")])).unwrap_err();
            assert_eq!(e.origin, bad);
            assert!(e.message.starts_with("not a section setting"), "{e}");
        }
        // A value where a table is expected, and the other way round.
        let e = Config::load(
            None,
            &env(&[
                ("SWITCHBOARD_S3__BUCKET", "b"),
                ("SWITCHBOARD_S3__BUCKET__NAME", "x"),
            ]),
        )
        .unwrap_err();
        assert!(e.message.contains("not a table"), "{e}");
    }

    #[test]
    fn secret_key_settings() {
        let c = Config::load(None, &HashMap::new()).unwrap();
        assert!(c.secret_key.is_none() && c.secret_key_previous.is_empty());
        let (a, b) = (crypto::Key::generate(), crypto::Key::generate());
        let c = Config::load(
            None,
            &env(&[
                ("SWITCHBOARD_SECRET_KEY", &a.encode()),
                (
                    "SWITCHBOARD_SECRET_KEY_PREVIOUS",
                    &format!("{}, {}", b.encode(), a.encode()),
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.secret_key.as_ref().map(crypto::Key::id), Some(a.id()));
        assert_eq!(c.secret_key_previous.len(), 2);
        let e =
            Config::load(None, &env(&[("SWITCHBOARD_SECRET_KEY", "hunter2-hunter2")])).unwrap_err();
        assert_eq!(e.origin, "SWITCHBOARD_SECRET_KEY");
        assert!(e.message.contains("32 bytes"), "{e}");
        assert!(
            !e.to_string().contains("hunter2"),
            "a key is never echoed: {e}"
        );
        let e = Config::load(
            None,
            &env(&[(
                "SWITCHBOARD_SECRET_KEY_PREVIOUS",
                &format!("{},short", a.encode()),
            )]),
        )
        .unwrap_err();
        assert_eq!(e.origin, "SWITCHBOARD_SECRET_KEY_PREVIOUS");
        assert!(e.message.starts_with("key 2 must be 32 bytes"), "{e}");
    }

    #[test]
    fn hooks_settings() {
        let c = Config::load(None, &HashMap::new()).unwrap();
        assert_eq!(
            (c.hooks_body_limit, c.hooks_rate_limit_per_minute),
            (1024 * 1024, 1200)
        );
        let c = Config::load(
            None,
            &env(&[
                ("SWITCHBOARD_HOOKS_BODY_LIMIT", "65536"),
                ("SWITCHBOARD_HOOKS_RATE_LIMIT_PER_MINUTE", "30"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (c.hooks_body_limit, c.hooks_rate_limit_per_minute),
            (65536, 30)
        );
        for (var, bad) in [
            ("SWITCHBOARD_HOOKS_BODY_LIMIT", "10"),
            ("SWITCHBOARD_HOOKS_RATE_LIMIT_PER_MINUTE", "0"),
        ] {
            let e = Config::load(None, &env(&[(var, bad)])).unwrap_err();
            assert_eq!(e.origin, var, "{e}");
        }
    }
}
