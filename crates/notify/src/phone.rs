//! Phone numbers in E.164: `+`, a country code and the subscriber number, 8 to 15 digits in
//! all, the first not 0. Spaces, dots, hyphens and parentheses between digits are accepted as
//! sent (`+998 (90) 123-45-67`) and dropped; a number without its `+` is refused, because
//! whether `8 …` or `0 …` is a trunk prefix or part of the number depends on the country.

use serde::{Deserialize, Serialize};

/// A phone number in E.164 form (`+998901234567`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

/// Why a phone number was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("must be an E.164 number: + then the country code and number, 8 to 15 digits (such as +998901234567)")]
pub struct PhoneError;

impl Phone {
    /// Parses and normalises `s`.
    pub fn parse(s: &str) -> Result<Phone, PhoneError> {
        let rest = s.trim().strip_prefix('+').ok_or(PhoneError)?;
        let mut digits = String::with_capacity(16);
        digits.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '.' | '-' | '(' | ')' => {}
                _ => return Err(PhoneError),
            }
        }
        let n = digits.len() - 1;
        if !(8..=15).contains(&n) || digits.as_bytes()[1] == b'0' {
            return Err(PhoneError);
        }
        Ok(Phone(digits))
    }

    /// `+998901234567`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without `+` (`998901234567`), as Eskiz and PlayMobile want them.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }
}

impl TryFrom<String> for Phone {
    type Error = PhoneError;
    fn try_from(s: String) -> Result<Phone, PhoneError> {
        Phone::parse(&s)
    }
}

impl From<Phone> for String {
    fn from(p: Phone) -> String {
        p.0
    }
}

impl std::fmt::Display for Phone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_e164_with_separators_and_normalises() {
        let p = Phone::parse("+998 (90) 123-45-67").unwrap();
        assert_eq!(p.as_str(), "+998901234567");
        assert_eq!(p.digits(), "998901234567");
        assert_eq!(
            Phone::parse("+14155550123").unwrap().to_string(),
            "+14155550123"
        );
        assert_eq!(
            Phone::parse(" +7.495.123.45.67 ").unwrap().as_str(),
            "+74951234567"
        );
    }

    #[test]
    fn refuses_what_is_not_e164() {
        for bad in [
            "998901234567",      // no +
            "+0998901234567",    // country code cannot start with 0
            "+1234567",          // 7 digits
            "+1234567890123456", // 16 digits
            "+99890123456a",
            "+998 90 123 45 67 ext 2",
            "",
            "+",
        ] {
            assert_eq!(Phone::parse(bad), Err(PhoneError), "{bad}");
        }
    }

    #[test]
    fn serde_goes_through_the_check() {
        let p: Phone = serde_json::from_str("\"+998 90 1234567\"").unwrap();
        assert_eq!(serde_json::to_string(&p).unwrap(), "\"+998901234567\"");
        assert!(serde_json::from_str::<Phone>("\"12345\"").is_err());
    }
}
