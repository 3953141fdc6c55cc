//! Configuration sections: the tables of the config file (`[smtp]`, `[s3]`,
//! `[providers.eskiz]`) and the environment variables that map onto them, read by
//! capabilities into their own typed structs.
//!
//! The environment rule: `SWITCHBOARD_` followed by the section path and the key, joined by
//! double underscores, upper case. `SWITCHBOARD_S3__BUCKET` is `bucket` in `[s3]`;
//! `SWITCHBOARD_PROVIDERS__ESKIZ__EMAIL` is `email` in `[providers.eskiz]`. A variable
//! overrides that one key of the file's table and leaves the others.
//!
//! Environment values are text. Where a field wants a number or a boolean the text is
//! parsed (`587`, `true`), a list is written comma-separated (`a,b`), and an empty value
//! leaves an optional field unset. The file's values may be typed or text alike.
//!
//! A capability declares its section with [`crate::config_section!`] so that loading the
//! configuration checks it: an undeclared section, a key its struct does not have, or a
//! value of the wrong type stops the node at start (exit 2) with one line naming the
//! variable or `file:section.key`.

use super::ConfigError;
use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// The prefix of every section variable.
const ENV_PREFIX: &str = "SWITCHBOARD_";
/// What separates the parts of a section variable.
const ENV_SEPARATOR: &str = "__";

/// Every section value the file and the environment gave, with where each came from.
#[derive(Clone, Default)]
pub struct Sections {
    root: toml::Table,
    /// Dotted path (`s3.bucket`, `s3`) → the variable or `file:path` that set it.
    origins: BTreeMap<String, String>,
}

/// Values may be secrets: only the keys are shown.
impl fmt::Debug for Sections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.origins.keys()).finish()
    }
}

/// A section a capability reads, declared so that loading the configuration checks it.
pub struct Section {
    /// Its dotted path: `smtp`, `providers.eskiz`.
    pub name: &'static str,
    check: fn(&Sections, &str) -> Result<(), ConfigError>,
}

impl Section {
    /// The section `name`, read into `T`.
    pub const fn of<T: DeserializeOwned>(name: &'static str) -> Section {
        Section {
            name,
            check: check::<T>,
        }
    }
}

fn check<T: DeserializeOwned>(sections: &Sections, name: &str) -> Result<(), ConfigError> {
    sections.get::<T>(name).map(drop)
}

inventory::collect!(Section);

/// Declares configuration section `$name` (a dotted path such as `"smtp"` or
/// `"providers.eskiz"`) read into `$ty`, so that loading the configuration refuses a bad one:
///
/// ```ignore
/// #[derive(serde::Deserialize)]
/// pub struct SmtpConfig { pub host: String, #[serde(default = "port")] pub port: u16 }
/// switchboard_core::config_section!("smtp", SmtpConfig);
/// // later: let smtp: Option<SmtpConfig> = config.section("smtp")?;
/// ```
#[macro_export]
macro_rules! config_section {
    ($name:literal, $ty:ty) => {
        $crate::inventory::submit! {
            $crate::config::Section::of::<$ty>($name)
        }
    };
}

impl Sections {
    /// Section `name` (a dotted path) read into `T`; `None` when neither the file nor the
    /// environment mentions it. Keys `T` does not have are refused (a typo must not pass
    /// silently), so `T` should not use `#[serde(flatten)]`.
    pub fn get<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.lookup(name) else {
            return Ok(None);
        };
        let node = Node {
            value: value.clone(),
            path: name.to_owned(),
        };
        T::deserialize(node).map(Some).map_err(|e| {
            let path = e.path.unwrap_or_else(|| name.to_owned());
            ConfigError {
                origin: self.origin(&path),
                message: e.message,
            }
        })
    }

    /// Sets `path` (`s3.bucket`) to `value`, as a program (or a test) building its
    /// configuration in code does.
    pub fn set(&mut self, path: &str, value: impl Into<toml::Value>) -> Result<(), ConfigError> {
        let parts: Vec<&str> = path.split('.').collect();
        self.insert(&parts, value.into(), &|p| format!("set in code: {p}"))
    }

    fn lookup(&self, name: &str) -> Option<&toml::Value> {
        let mut parts = name.split('.');
        let mut value = self.root.get(parts.next()?)?;
        for part in parts {
            value = value.as_table()?.get(part)?;
        }
        Some(value)
    }

    /// Where `path` (or the nearest table above it) was set.
    fn origin(&self, path: &str) -> String {
        let mut p = path;
        loop {
            if let Some(o) = self.origins.get(p) {
                return o.clone();
            }
            match p.rsplit_once('.') {
                Some((parent, _)) => p = parent,
                None => return path.to_owned(),
            }
        }
    }

    /// Adds a table of the file (`name` at the top level), recording `file:path` origins.
    pub(super) fn add_file_table(
        &mut self,
        file: &str,
        name: &str,
        table: toml::Table,
    ) -> Result<(), ConfigError> {
        let value = toml::Value::Table(table);
        record_file_origins(&mut self.origins, file, name, &value);
        self.insert(&[name], value, &|p| format!("{file}:{p}"))
    }

    /// Adds every `SWITCHBOARD_…__…` variable of `env` (in name order, so errors are stable).
    pub(super) fn add_env<'a>(
        &mut self,
        env: impl Iterator<Item = (&'a String, &'a String)>,
    ) -> Result<(), ConfigError> {
        let mut vars: Vec<(&String, &String)> = env
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains(ENV_SEPARATOR))
            .collect();
        vars.sort();
        for (var, value) in vars {
            let parts = env_path(var).map_err(|message| ConfigError {
                origin: var.clone(),
                message,
            })?;
            let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
            self.insert(&parts, toml::Value::String(value.clone()), &|_| var.clone())?;
        }
        Ok(())
    }

    /// Puts `value` at `parts`, creating tables on the way; `origin_of(path)` names where
    /// each new part came from.
    fn insert(
        &mut self,
        parts: &[&str],
        value: toml::Value,
        origin_of: &dyn Fn(&str) -> String,
    ) -> Result<(), ConfigError> {
        let Some((last, tables)) = parts.split_last() else {
            return Ok(());
        };
        let mut table = &mut self.root;
        let mut path = String::new();
        for part in tables {
            path = join(&path, part);
            self.origins
                .entry(path.clone())
                .or_insert_with(|| origin_of(&path));
            let entry = table
                .entry((*part).to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(inner) = entry.as_table_mut() else {
                return Err(ConfigError {
                    origin: origin_of(&path),
                    message: format!(
                        "`{path}` is a value elsewhere in the configuration, not a table"
                    ),
                });
            };
            table = inner;
        }
        path = join(&path, last);
        // A table from the file is merged key by key; anything else replaces what was there.
        match (table.get_mut(*last), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(new)) => {
                existing.extend(new);
            }
            (Some(toml::Value::Table(_)), _) => {
                return Err(ConfigError {
                    origin: origin_of(&path),
                    message: format!(
                        "`{path}` is a table elsewhere in the configuration, not a value"
                    ),
                });
            }
            (_, value) => {
                table.insert((*last).to_owned(), value);
            }
        }
        self.origins.insert(path.clone(), origin_of(&path));
        Ok(())
    }

    /// Refuses sections nobody declared and checks every declared one that is present.
    pub(super) fn check_declared(&self) -> Result<(), ConfigError> {
        let declared: Vec<&Section> = inventory::iter::<Section>.into_iter().collect();
        self.check_tables(&self.root, "", &declared)?;
        for section in declared {
            (section.check)(self, section.name)?;
        }
        Ok(())
    }

    fn check_tables(
        &self,
        table: &toml::Table,
        prefix: &str,
        declared: &[&Section],
    ) -> Result<(), ConfigError> {
        for (key, value) in table {
            let path = join(prefix, key);
            if declared.iter().any(|s| s.name == path) {
                continue;
            }
            let inner = format!("{path}.");
            let under = declared.iter().any(|s| s.name.starts_with(&inner));
            match value.as_table() {
                Some(t) if under => self.check_tables(t, &path, declared)?,
                _ => {
                    let mut known: Vec<&str> = declared.iter().map(|s| s.name).collect();
                    known.sort_unstable();
                    let message = if known.is_empty() {
                        format!("unknown section `{path}` (this build reads none)")
                    } else {
                        format!("unknown section `{path}` (known: {})", known.join(", "))
                    };
                    return Err(ConfigError {
                        origin: self.origin(&path),
                        message,
                    });
                }
            }
        }
        Ok(())
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn record_file_origins(
    origins: &mut BTreeMap<String, String>,
    file: &str,
    path: &str,
    value: &toml::Value,
) {
    origins.insert(path.to_owned(), format!("{file}:{path}"));
    if let toml::Value::Table(t) = value {
        for (k, v) in t {
            record_file_origins(origins, file, &join(path, k), v);
        }
    }
}

/// `SWITCHBOARD_PROVIDERS__ESKIZ__EMAIL` → `["providers", "eskiz", "email"]`.
fn env_path(var: &str) -> Result<Vec<String>, String> {
    let rest = var.strip_prefix(ENV_PREFIX).unwrap_or(var);
    let parts: Vec<String> = rest
        .split(ENV_SEPARATOR)
        .map(str::to_ascii_lowercase)
        .collect();
    let valid = parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && !p.starts_with('_')
                && !p.ends_with('_')
                && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if valid {
        Ok(parts)
    } else {
        Err(format!(
            "not a section setting (expected {ENV_PREFIX}<SECTION>__<KEY>, parts of letters, \
             digits and single underscores)"
        ))
    }
}

/// A failure while reading a section, with the dotted path of the value at fault once known.
#[derive(Debug)]
struct DeError {
    path: Option<String>,
    message: String,
}

impl DeError {
    fn at(path: &str, message: String) -> DeError {
        DeError {
            path: Some(path.to_owned()),
            message,
        }
    }

    /// Gives a failure raised below `path` without a place of its own that place.
    fn within(mut self, path: &str) -> DeError {
        self.path.get_or_insert_with(|| path.to_owned());
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        let message = msg.to_string();
        // serde's "missing field `x`" in the words of a configuration.
        let message = match message
            .strip_prefix("missing field `")
            .and_then(|m| m.strip_suffix('`'))
        {
            Some(field) => format!("the setting `{field}` is required"),
            None => message,
        };
        DeError {
            path: None,
            message,
        }
    }
}

/// One value of the tree, read leniently: text becomes a number, boolean or list where the
/// target wants one (environment values are always text).
struct Node {
    value: toml::Value,
    path: String,
}

impl Node {
    fn text(&self) -> Option<&str> {
        self.value.as_str()
    }

    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<Option<T>, DeError> {
        match self.text() {
            None => Ok(None),
            Some(s) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| DeError::at(&self.path, format!("`{s}` is not {what}"))),
        }
    }
}

macro_rules! lenient_numbers {
    ($($method:ident $visit:ident $ty:ty, $what:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            match self.parse::<$ty>($what)? {
                Some(n) => visitor.$visit(n),
                None => self.deserialize_any(visitor),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Node {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path;
        match self.value {
            toml::Value::String(s) => visitor.visit_string(s),
            toml::Value::Integer(i) => visitor.visit_i64(i),
            toml::Value::Float(f) => visitor.visit_f64(f),
            toml::Value::Boolean(b) => visitor.visit_bool(b),
            toml::Value::Datetime(d) => visitor.visit_string(d.to_string()),
            toml::Value::Array(items) => visitor.visit_seq(Seq {
                items: items.into_iter().enumerate(),
                path: path.clone(),
            }),
            toml::Value::Table(t) => visitor.visit_map(Map {
                entries: t.into_iter(),
                pending: None,
                path: path.clone(),
            }),
        }
        .map_err(|e| e.within(&path))
    }

    lenient_numbers! {
        deserialize_i8 visit_i8 i8, "an integer";
        deserialize_i16 visit_i16 i16, "an integer";
        deserialize_i32 visit_i32 i32, "an integer";
        deserialize_i64 visit_i64 i64, "an integer";
        deserialize_u8 visit_u8 u8, "a whole number";
        deserialize_u16 visit_u16 u16, "a whole number from 0 to 65535";
        deserialize_u32 visit_u32 u32, "a whole number";
        deserialize_u64 visit_u64 u64, "a whole number";
        deserialize_f32 visit_f32 f32, "a number";
        deserialize_f64 visit_f64 f64, "a number";
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.text().map(|s| s.trim().to_ascii_lowercase()) {
            None => self.deserialize_any(visitor),
            Some(s) => match s.as_str() {
                "1" | "true" | "yes" | "on" => visitor.visit_bool(true),
                "0" | "false" | "no" | "off" => visitor.visit_bool(false),
                _ => Err(DeError::at(
                    &self.path,
                    format!("`{s}` is not a boolean (true/false)"),
                )),
            },
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &self.value {
            toml::Value::Integer(i) => visitor.visit_string(i.to_string()),
            toml::Value::Float(f) => visitor.visit_string(f.to_string()),
            toml::Value::Boolean(b) => visitor.visit_string(b.to_string()),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.text() {
            Some(s) if s.trim().is_empty() => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Some(s) = self.text() else {
            return self.deserialize_any(visitor);
        };
        let items = s
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(|i| toml::Value::String(i.to_owned()))
            .collect::<Vec<_>>();
        let path = self.path;
        visitor
            .visit_seq(Seq {
                items: items.into_iter().enumerate(),
                path: path.clone(),
            })
            .map_err(|e| e.within(&path))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if let toml::Value::Table(t) = &self.value {
            if let Some(unknown) = t.keys().find(|k| !fields.contains(&k.as_str())) {
                let section = if self.path.is_empty() {
                    String::new()
                } else {
                    format!(" of [{}]", self.path)
                };
                return Err(DeError::at(
                    &join(&self.path, unknown),
                    format!("unknown setting{section} (known: {})", fields.join(", ")),
                ));
            }
        } else {
            return Err(DeError::at(
                &self.path,
                "must be a table of settings".to_owned(),
            ));
        }
        self.deserialize_any(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.text() {
            Some(s) => visitor
                .visit_enum(s.trim().into_deserializer())
                .map_err(|_: DeError| {
                    DeError::at(
                        &self.path,
                        format!("`{s}` must be one of {}", variants.join(", ")),
                    )
                }),
            None => Err(DeError::at(
                &self.path,
                format!("must be one of {}", variants.join(", ")),
            )),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        char bytes byte_buf unit unit_struct tuple tuple_struct map identifier i128 u128
    }
}

/// The items of a list, each read as a [`Node`] at `path[i]`.
struct Seq {
    items: std::iter::Enumerate<std::vec::IntoIter<toml::Value>>,
    path: String,
}

impl<'de> de::SeqAccess<'de> for Seq {
    type Error = DeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some((i, value)) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{i}]", self.path);
        seed.deserialize(Node {
            value,
            path: path.clone(),
        })
        .map(Some)
        .map_err(|e| e.within(&path))
    }
}

/// The entries of a table, each value read as a [`Node`] at `path.key`.
struct Map {
    entries: toml::map::IntoIter,
    pending: Option<(String, toml::Value)>,
    path: String,
}

impl<'de> de::MapAccess<'de> for Map {
    type Error = DeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let read = seed.deserialize(key.as_str().into_deserializer()).map(Some);
        self.pending = Some((key, value));
        read
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, DeError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("a value was read before its key"));
        };
        let path = join(&self.path, &key);
        seed.deserialize(Node {
            value,
            path: path.clone(),
        })
        .map_err(|e| e.within(&path))
    }
}
