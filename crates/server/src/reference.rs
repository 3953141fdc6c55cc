//! Reference tables of docs/api.md generated from the code: the problem codes (from
//! [`crate::error::codes`]) and the scopes (from [`crate::auth::SCOPES`] and the operations
//! of the OpenAPI document that declare each). A test keeps the document equal to them;
//! `SWITCHBOARD_BLESS_DOCS=1 cargo test -p switchboard-server reference` rewrites it.

use crate::auth::{ALL, SCOPES};
use crate::error::codes;
use std::collections::BTreeMap;

/// Marks the start of a generated block in docs/api.md: `<!-- generated: NAME -->`.
pub const BEGIN: &str = "<!-- generated: ";
/// Marks its end.
pub const END: &str = "<!-- end generated -->";

/// The table of problem codes: status, code, when.
pub fn problem_codes() -> String {
    let mut rows: Vec<_> = codes::ALL.to_vec();
    // Stable: codes of one status keep the catalogue's order.
    rows.sort_by_key(|c| c.status().as_u16());
    let mut out = String::from("| status | code | when |\n|---|---|---|\n");
    for c in rows {
        out.push_str(&format!(
            "| {} | `{}` | {} |\n",
            c.status().as_u16(),
            c.name(),
            c.meaning()
        ));
    }
    out
}

/// The table of scopes with the operations that declare each.
pub fn scopes() -> String {
    let doc = serde_json::to_value(crate::app::openapi()).unwrap_or_default();
    let mut by_scope: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut any = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let Some(bearer) = op["security"]
                .as_array()
                .and_then(|reqs| reqs.iter().find_map(|r| r["bearer"].as_array()))
            else {
                continue;
            };
            let name = format!("`{} {path}`", method.to_uppercase());
            match bearer.first().and_then(|s| s.as_str()) {
                Some(scope) => by_scope.entry(scope.to_owned()).or_default().push(name),
                None => any.push(name),
            }
        }
    }
    let mut out = String::from("| scope | operations |\n|---|---|\n");
    out.push_str(&format!("| `{ALL}` | every operation |\n"));
    for scope in SCOPES {
        let ops = by_scope.remove(*scope).unwrap_or_default();
        let list = if ops.is_empty() {
            "none yet".to_owned()
        } else {
            ops.join(", ")
        };
        out.push_str(&format!("| `{scope}` | {list} |\n"));
    }
    if !any.is_empty() {
        out.push_str(&format!("| any credential | {} |\n", any.join(", ")));
    }
    out
}

/// Every generated block by name.
pub fn blocks() -> Vec<(&'static str, String)> {
    vec![("scopes", scopes()), ("problem codes", problem_codes())]
}

/// `text` with each generated block replaced by its current content; `Err` names a block
/// whose markers are missing.
pub fn regenerate(text: &str) -> Result<String, String> {
    let mut out = text.to_owned();
    for (name, body) in blocks() {
        let begin = format!("{BEGIN}{name} -->\n");
        let start = out
            .find(&begin)
            .map(|i| i + begin.len())
            .ok_or_else(|| format!("docs/api.md has no `{}` marker", begin.trim()))?;
        let end = out[start..]
            .find(END)
            .map(|i| start + i)
            .ok_or_else(|| format!("the `{name}` block of docs/api.md has no `{END}`"))?;
        out.replace_range(start..end, &body);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_tables_match_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api.md");
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let fresh = regenerate(&text).unwrap_or_else(|e| panic!("{e}"));
        if fresh != text && std::env::var_os("SWITCHBOARD_BLESS_DOCS").is_some() {
            std::fs::write(path, &fresh).unwrap_or_else(|e| panic!("{path}: {e}"));
            return;
        }
        assert!(
            fresh == text,
            "docs/api.md's generated tables differ from the code; run \
             `SWITCHBOARD_BLESS_DOCS=1 cargo test -p switchboard-server reference` \
             to regenerate them. Expected:\n{}",
            blocks()
                .into_iter()
                .map(|(n, b)| format!("{n}:\n{b}"))
                .collect::<String>()
        );
    }

    #[test]
    fn every_code_is_unique_and_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for c in codes::ALL {
            assert!(seen.insert(c.name()), "{} twice", c.name());
            assert!(
                c.name()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                c.name()
            );
            assert!(c.status().is_client_error() || c.status().is_server_error());
        }
    }

    #[test]
    fn every_scope_is_declared_by_an_operation() {
        let table = scopes();
        assert!(!table.contains("none yet"), "{table}");
    }
}
