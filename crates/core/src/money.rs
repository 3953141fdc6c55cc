//! Money is never a float: an `i64` amount in the currency's minor units plus an ISO-4217 code.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An ISO-4217 currency code with its minor-unit exponent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// Currencies the five backends use, with their minor-unit exponents (ISO-4217).
const KNOWN: &[(&str, u8)] = &[
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("RUB", 2),
    ("UZS", 2),
    ("KZT", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("CHF", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("CNY", 2),
    ("INR", 2),
    ("TRY", 2),
    ("AED", 2),
    ("KWD", 3),
    ("BHD", 3),
];

/// Why a value is not money.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    /// Not a supported ISO-4217 code.
    #[error("unknown currency `{0}` (expected an ISO-4217 code such as USD)")]
    UnknownCurrency(String),
    /// Arithmetic left the `i64` range.
    #[error("amount overflow")]
    Overflow,
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: {0} vs {1}")]
    Mismatch(Currency, Currency),
}

impl Currency {
    /// Parses an ISO-4217 code (case-insensitive).
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let upper = code.to_ascii_uppercase();
        KNOWN
            .iter()
            .find(|(c, _)| *c == upper)
            .map(|(c, e)| {
                let b = c.as_bytes();
                Currency {
                    code: [b[0], b[1], b[2]],
                    exponent: *e,
                }
            })
            .ok_or(MoneyError::UnknownCurrency(code.to_owned()))
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("XXX")
    }

    /// Digits after the decimal point.
    pub fn exponent(&self) -> u8 {
        self.exponent
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An exact amount of money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Minor units (cents, kopecks, tiyin).
    pub amount: i64,
    /// The currency.
    pub currency: Currency,
}

impl Money {
    /// `amount` minor units of `currency`.
    pub fn new(amount: i64, currency: Currency) -> Self {
        Money { amount, currency }
    }

    /// Adds two amounts of the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::Mismatch(self.currency, other.currency));
        }
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// A share in basis points (1/100 of a percent), rounded half away from zero.
    pub fn basis_points(self, bps: i64) -> Result<Money, MoneyError> {
        let product = i128::from(self.amount) * i128::from(bps);
        let rounded = (product + product.signum() * 5_000) / 10_000;
        let amount = i64::try_from(rounded).map_err(|_| MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = u32::from(self.currency.exponent());
        let scale = 10i128.pow(exp);
        let abs = i128::from(self.amount).abs();
        let sign = if self.amount < 0 { "-" } else { "" };
        if exp == 0 {
            write!(f, "{sign}{abs} {}", self.currency)
        } else {
            write!(
                f,
                "{sign}{}.{:0width$} {}",
                abs / scale,
                abs % scale,
                self.currency,
                width = exp as usize
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_minor_units_exactly() {
        let usd = Currency::parse("usd").unwrap();
        assert_eq!(Money::new(-1005, usd).to_string(), "-10.05 USD");
        assert_eq!(
            Money::new(7, Currency::parse("JPY").unwrap()).to_string(),
            "7 JPY"
        );
    }

    #[test]
    fn commission_rounds_half_away_from_zero() {
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(
            Money::new(1250, usd).basis_points(1000).unwrap().amount,
            125
        );
        assert_eq!(Money::new(5, usd).basis_points(1000).unwrap().amount, 1);
        assert_eq!(Money::new(-5, usd).basis_points(1000).unwrap().amount, -1);
    }

    #[test]
    fn refuses_mixing_and_overflow() {
        let usd = Currency::parse("USD").unwrap();
        let rub = Currency::parse("RUB").unwrap();
        assert!(matches!(
            Money::new(1, usd).checked_add(Money::new(1, rub)),
            Err(MoneyError::Mismatch(..))
        ));
        assert_eq!(
            Money::new(i64::MAX, usd).checked_add(Money::new(1, usd)),
            Err(MoneyError::Overflow)
        );
        assert!(Currency::parse("XYZ").is_err());
    }
}
