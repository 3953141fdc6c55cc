//! Prefixed, sortable identifiers in the TypeID format: `prefix_` followed by a UUIDv7
//! written as 26 characters of Crockford base32 (lowercase).

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Why a string is not a valid id of the expected kind.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    /// The prefix before `_` is not the one this kind of id carries.
    #[error("expected an id starting with `{expected}_`")]
    WrongPrefix {
        /// The prefix the id should carry.
        expected: &'static str,
    },
    /// The part after the prefix is not 26 base32 characters encoding 128 bits.
    #[error("malformed id suffix")]
    Malformed,
}

/// Encodes 128 bits as 26 base32 characters (the first carries only 3 bits).
pub fn encode_suffix(value: u128) -> String {
    (0..26)
        .map(|i| {
            let shift = 125 - 5 * i;
            ALPHABET[((value >> shift) & 31) as usize] as char
        })
        .collect()
}

/// Decodes a 26-character base32 suffix back to 128 bits.
pub fn decode_suffix(suffix: &str) -> Result<u128, IdError> {
    let bytes = suffix.as_bytes();
    if bytes.len() != 26 {
        return Err(IdError::Malformed);
    }
    let mut value: u128 = 0;
    for (i, b) in bytes.iter().enumerate() {
        let digit = ALPHABET
            .iter()
            .position(|a| a == b)
            .ok_or(IdError::Malformed)? as u128;
        if i == 0 && digit > 7 {
            return Err(IdError::Malformed);
        }
        value = (value << 5) | digit;
    }
    Ok(value)
}

/// The pattern (ECMA-262 and Rust regex alike) of every id `parse` accepts with `prefix`.
pub fn pattern(prefix: &str) -> String {
    let alphabet: String = ALPHABET.iter().map(|b| *b as char).collect();
    format!("^{prefix}_[0-7][{alphabet}]{{25}}$")
}

/// A new suffix from a fresh UUIDv7: ids sort by creation time.
pub fn new_suffix() -> String {
    encode_suffix(uuid::Uuid::now_v7().as_u128())
}

/// Declares a typed id: a newtype over the full string with its own prefix.
#[macro_export]
macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn generate() -> Self {
                Self(format!("{}_{}", $prefix, $crate::id::new_suffix()))
            }

            /// Parses an id received from outside.
            pub fn parse(s: &str) -> Result<Self, $crate::id::IdError> {
                let suffix = s
                    .strip_prefix($prefix)
                    .and_then(|rest| rest.strip_prefix('_'))
                    .ok_or($crate::id::IdError::WrongPrefix { expected: $prefix })?;
                $crate::id::decode_suffix(suffix)?;
                Ok(Self(s.to_owned()))
            }

            /// Wraps a value read back from our own database.
            pub fn from_db(s: String) -> Self {
                Self(s)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// A project (tenant): every row belongs to one.
    ProjectId,
    "proj"
);
typed_id!(
    /// An API key.
    ApiKeyId,
    "key"
);
typed_id!(
    /// A dashboard / API user.
    UserId,
    "user"
);
typed_id!(
    /// An audit event.
    AuditEventId,
    "audit"
);
typed_id!(
    /// A family of rotating refresh tokens.
    TokenFamilyId,
    "tfam"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_round_trips_extremes() {
        for v in [
            0u128,
            1,
            u128::MAX,
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ] {
            let s = encode_suffix(v);
            assert_eq!(s.len(), 26);
            assert_eq!(decode_suffix(&s), Ok(v));
        }
        assert_eq!(encode_suffix(u128::MAX), "7zzzzzzzzzzzzzzzzzzzzzzzzz");
    }

    #[test]
    fn rejects_overflow_and_bad_chars() {
        assert_eq!(
            decode_suffix("8zzzzzzzzzzzzzzzzzzzzzzzzz"),
            Err(IdError::Malformed)
        );
        assert_eq!(
            decode_suffix("0000000000000000000000000u"),
            Err(IdError::Malformed)
        );
        assert_eq!(decode_suffix("short"), Err(IdError::Malformed));
    }

    #[test]
    fn typed_ids_check_prefix_and_sort_by_time() {
        let a = ProjectId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = ProjectId::generate();
        assert!(a < b);
        assert_eq!(ProjectId::parse(a.as_str()), Ok(a.clone()));
        assert!(matches!(
            ApiKeyId::parse(a.as_str()),
            Err(IdError::WrongPrefix { expected: "key" })
        ));
    }
}
