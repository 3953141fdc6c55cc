//! Switchboard notifications.
//!
//! Built up in pieces, pure logic first (issue 15):
//! - [`sms`]: GSM-7 or UCS-2, and how many segments a text costs.
//! - [`quiet`]: quiet hours and do-not-disturb in the recipient's IANA time zone.
//! - [`locale`]: language tags and the fallback chain (`uz-Latn` → `uz` → `ru` → `en`).
//! - [`status`]: a delivery's status, which only moves forward.
//! - [`template`]: Handlebars templates, checked at save, rendered strictly.
//! - [`otp`]: verification codes: generation, keyed digests, the check's rules.
//! - [`phone`]: E.164 phone numbers.
//! - [`provider`]: provider adapters (Twilio, Eskiz, PlayMobile so far) and what their errors mean.
//! - [`signature`]: provider callback signatures (Twilio, Standard Webhooks/Svix, SendGrid).
#![forbid(unsafe_code)]

pub mod locale;
pub mod otp;
pub mod phone;
pub mod provider;
pub mod quiet;
pub mod signature;
pub mod sms;
pub mod status;
pub mod template;
