//! Input rules shared by validation and the OpenAPI document: one constant per rule (a
//! range, a text length and character set, a list size) is both what the server checks and
//! what the schema states, so the two cannot drift. Fields use them through
//! `#[schema(schema_with = …)]` functions that call [`Int::schema`], [`Text::schema`] and so on.
//!
//! Lengths count characters (Unicode scalar values), as JSON Schema's `minLength` and
//! `maxLength` do.

use utoipa::openapi::schema::{ArrayBuilder, Object, ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::RefOr;

/// An inclusive range of integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int {
    /// Smallest accepted.
    pub min: i64,
    /// Largest accepted.
    pub max: i64,
    /// How messages say the range (`1 ms to 24 hours`); `None` says `min to max`.
    pub phrase: Option<&'static str>,
}

impl Int {
    /// `min..=max`.
    pub const fn new(min: i64, max: i64) -> Int {
        Int {
            min,
            max,
            phrase: None,
        }
    }

    /// The same range, said in friendlier units in messages.
    pub const fn said(self, phrase: &'static str) -> Int {
        Int {
            phrase: Some(phrase),
            ..self
        }
    }

    /// Whether `v` is accepted.
    pub fn contains(&self, v: i64) -> bool {
        (self.min..=self.max).contains(&v)
    }

    /// `must be 1 to 1000`.
    pub fn message(&self) -> String {
        match self.phrase {
            Some(p) => format!("must be {p}"),
            None => format!("must be {} to {}", self.min, self.max),
        }
    }

    /// `Ok(v)` or the message.
    pub fn check(&self, v: i64) -> Result<i64, String> {
        if self.contains(v) {
            Ok(v)
        } else {
            Err(self.message())
        }
    }

    /// An integer schema with this range.
    pub fn schema(&self, description: &str) -> Object {
        self.builder(description, Type::Integer.into()).build()
    }

    /// The same, also accepting `null` (an optional field).
    pub fn nullable(&self, description: &str) -> Object {
        self.builder(description, nullable(Type::Integer)).build()
    }

    fn builder(&self, description: &str, ty: SchemaType) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(ty)
            .minimum(Some(self.min))
            .maximum(Some(self.max))
            .description(Some(describe(description, &self.message())))
    }
}

/// Characters of an e-mail address's local part besides letters and digits (WHATWG).
pub const EMAIL_LOCAL: &str = ".!#$%&'*+/=?^_`{|}~-";

/// Which characters a text may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chars {
    /// Anything.
    Any,
    /// Anything, with at least one character that is not white space.
    NotBlank,
    /// ASCII letters, digits and the given punctuation (each of it safe in a character class).
    Name(&'static str),
    /// Anything but these characters.
    Without(&'static str),
    /// An e-mail address as HTML defines a valid one (WHATWG): a local part of letters,
    /// digits and ``.!#$%&'*+/=?^_`{|}~-``, `@`, and a domain of dot-separated labels of
    /// letters, digits and inner hyphens, each 1 to 63 characters.
    Email,
}

impl Chars {
    fn allows(self, s: &str) -> bool {
        match self {
            Chars::Any => true,
            Chars::NotBlank => !s.trim().is_empty(),
            Chars::Name(extra) => s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c)),
            Chars::Without(banned) => !s.chars().any(|c| banned.contains(c)),
            Chars::Email => s.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty()
                    && local
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || EMAIL_LOCAL.contains(c))
                    && domain.split('.').all(|label| {
                        (1..=63).contains(&label.len())
                            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                            && !label.starts_with('-')
                            && !label.ends_with('-')
                    })
            }),
        }
    }

    /// The ECMA-262 pattern of this set (JSON Schema patterns are unanchored).
    fn pattern(self) -> Option<String> {
        let class = |s: &str| {
            s.replace('\\', "\\\\")
                .replace(']', "\\]")
                .replace('-', "\\-")
        };
        match self {
            Chars::Any => None,
            Chars::NotBlank => Some("\\S".to_owned()),
            Chars::Name(extra) => Some(format!("^[A-Za-z0-9{}]*$", class(extra))),
            Chars::Without(banned) => Some(format!("^[^{}]*$", class(banned))),
            Chars::Email => {
                let label = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
                Some(format!(
                    "^[A-Za-z0-9{}]+@{label}(?:\\.{label})*$",
                    class(EMAIL_LOCAL)
                ))
            }
        }
    }

    fn say(self) -> String {
        match self {
            Chars::Any => String::new(),
            Chars::NotBlank => ", not blank".to_owned(),
            Chars::Name(extra) => {
                let extra: Vec<String> = extra.chars().map(|c| format!("`{c}`")).collect();
                format!(" of a-z, A-Z, 0-9, {}", extra.join(", "))
            }
            Chars::Without(banned) => {
                let banned: Vec<String> = banned.chars().map(|c| format!("`{c}`")).collect();
                format!(" without {}", banned.join(", "))
            }
            Chars::Email => " of an e-mail address".to_owned(),
        }
    }
}

/// A text of `min..=max` characters from a set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Text {
    /// Fewest characters.
    pub min: usize,
    /// Most characters ([`usize::MAX`]: no limit).
    pub max: usize,
    /// Which characters.
    pub chars: Chars,
}

impl Text {
    /// `min..=max` characters of `chars`.
    pub const fn new(min: usize, max: usize, chars: Chars) -> Text {
        Text { min, max, chars }
    }

    /// Whether `s` is accepted.
    pub fn allows(&self, s: &str) -> bool {
        (self.min..=self.max).contains(&s.chars().count()) && self.chars.allows(s)
    }

    /// `must be 1 to 100 characters of a-z, …`.
    pub fn message(&self) -> String {
        if self.chars == Chars::Email {
            return format!(
                "must be an e-mail address (`name@example.com`) of at most {} characters",
                self.max
            );
        }
        if self.max == usize::MAX {
            return match (self.min, self.chars) {
                (0 | 1, Chars::NotBlank) => "must not be blank".to_owned(),
                (n, chars) => format!("must be at least {n} characters{}", chars.say()),
            };
        }
        let n = if self.min == self.max {
            format!("{}", self.max)
        } else if self.min == 0 {
            format!("at most {}", self.max)
        } else {
            format!("{} to {}", self.min, self.max)
        };
        format!("must be {n} characters{}", self.chars.say())
    }

    /// `Ok(())` or the message.
    pub fn check(&self, s: &str) -> Result<(), String> {
        if self.allows(s) {
            Ok(())
        } else {
            Err(self.message())
        }
    }

    /// A string schema with this rule.
    pub fn schema(&self, description: &str) -> Object {
        self.builder(description, Type::String.into()).build()
    }

    /// The same, also accepting `null`.
    pub fn nullable(&self, description: &str) -> Object {
        self.builder(description, nullable(Type::String)).build()
    }

    fn builder(&self, description: &str, ty: SchemaType) -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(ty)
            .min_length(Some(self.min))
            .max_length((self.max != usize::MAX).then_some(self.max))
            .pattern(self.chars.pattern())
            .description(Some(describe(description, &self.message())))
    }
}

/// How many items a list holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Items {
    /// Fewest.
    pub min: usize,
    /// Most.
    pub max: usize,
}

impl Items {
    /// `min..=max` items.
    pub const fn new(min: usize, max: usize) -> Items {
        Items { min, max }
    }

    /// Whether `n` items are accepted.
    pub fn allows(&self, n: usize) -> bool {
        (self.min..=self.max).contains(&n)
    }

    /// `must hold 1 to 10000 items`.
    pub fn message(&self, what: &str) -> String {
        if self.min == 0 {
            format!("must hold at most {} {what}", self.max)
        } else {
            format!("must hold {} to {} {what}", self.min, self.max)
        }
    }

    /// An array schema of `items` with this size.
    pub fn schema(&self, items: impl Into<RefOr<Schema>>, description: &str, what: &str) -> Schema {
        ArrayBuilder::new()
            .items(items.into())
            .min_items(Some(self.min))
            .max_items(Some(self.max))
            .description(Some(describe(description, &self.message(what))))
            .build()
            .into()
    }
}

/// `ty` or `null`.
pub fn nullable(ty: Type) -> SchemaType {
    SchemaType::from_iter([ty, Type::Null])
}

/// A string schema with one of `values` (an enum the server checks by name).
pub fn one_of(values: &[&str], description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description((!description.is_empty()).then_some(description))
        .build()
}

/// The description of a field: what it is, then its rule.
fn describe(what: &str, rule: &str) -> String {
    let what = what.trim_end_matches('.');
    if what.is_empty() {
        format!("{}.", capitalise(rule))
    } else {
        format!("{what}; {rule}.")
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_check_and_say_their_bounds() {
        let r = Int::new(1, 1000);
        assert!(r.contains(1) && r.contains(1000) && !r.contains(0) && !r.contains(1001));
        assert_eq!(r.check(0).unwrap_err(), "must be 1 to 1000");
        assert_eq!(
            Int::new(1, 86_400_000).said("1 ms to 24 hours").message(),
            "must be 1 ms to 24 hours"
        );
        let s = serde_json::to_value(r.nullable("Attempts")).unwrap();
        assert_eq!(s["minimum"], 1);
        assert_eq!(s["maximum"], 1000);
        assert_eq!(s["type"], serde_json::json!(["integer", "null"]));
        assert_eq!(s["description"], "Attempts; must be 1 to 1000.");
    }

    #[test]
    fn texts_count_characters_and_match_their_pattern() {
        let name = Text::new(1, 5, Chars::Name("._:-"));
        assert!(name.allows("a.b:c"));
        assert!(!name.allows("") && !name.allows("abcdef") && !name.allows("a b"));
        let s = serde_json::to_value(name.schema("")).unwrap();
        assert_eq!(s["pattern"], "^[A-Za-z0-9._:\\-]*$");
        assert_eq!(s["maxLength"], 5);
        // Characters, not bytes: five two-byte letters fit.
        assert!(Text::new(1, 5, Chars::Any).allows("ééééé"));
        let tag = Text::new(1, 3, Chars::Without(","));
        assert!(tag.allows("a b") && !tag.allows("a,b"));
        assert_eq!(
            serde_json::to_value(tag.schema("")).unwrap()["pattern"],
            "^[^,]*$"
        );
        let email = Text::new(3, 254, Chars::Email);
        for ok in [
            "a@b",
            "first.last+tag@mail.example.com",
            "x!#$%&'*+/=?^_`{|}~-@a-b.c",
        ] {
            assert!(email.allows(ok), "{ok}");
        }
        for bad in [
            "a@", "@b", "a b@c", "a@b@c", "0@0.com*", "a@-b.c", "a@b-.c", "a@b..c", "é@b.c",
            "a@b.c ",
        ] {
            assert!(!email.allows(bad), "{bad}");
        }
        // The schema's pattern says the same as the check.
        let pattern = serde_json::to_value(email.schema("")).unwrap()["pattern"]
            .as_str()
            .map(|p| regex::Regex::new(p).unwrap())
            .unwrap();
        for s in [
            "a@b",
            "x!#$%&'*+/=?^_`{|}~-@a-b.c",
            "0@0.com*",
            "a@-b.c",
            "a@b..c",
            "é@b.c",
            "a@b.c ",
        ] {
            assert_eq!(pattern.is_match(s), email.allows(s), "{s}");
        }
        let blank = Text::new(1, 3, Chars::NotBlank);
        assert!(!blank.allows("  ") && blank.allows(" a"));
        assert_eq!(blank.message(), "must be 1 to 3 characters, not blank");
    }
}
