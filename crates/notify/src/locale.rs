//! Locales and the fallback chain that picks a template's variant for a recipient.
//!
//! A recipient asks for `uz-Latn-UZ`; the template has `uz`, `ru` and `en`. The chain is the
//! requested tag, then the tag with its last subtag dropped until only the language is left
//! (`uz-Latn`, `uz`), then the project's fallbacks in order (e.g. `ru`, `en`), then the
//! template's default locale. Tags compare case-insensitively and are stored lowercase.

/// Why a locale tag was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("must be a language tag such as en, uz, ru or pt-BR: a 2–3 letter language, then optional subtags of 1–8 letters or digits, joined by '-'")]
pub struct LocaleError;

/// A language tag (lowercase): `uz`, `uz-latn`, `pt-br`.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Locale(String);

impl Locale {
    /// Checks and lowercases `tag` (`_` is accepted for `-`, as in `pt_BR`).
    pub fn parse(tag: &str) -> Result<Locale, LocaleError> {
        let tag = tag.trim().replace('_', "-").to_ascii_lowercase();
        let mut parts = tag.split('-');
        let language = parts.next().unwrap_or_default();
        let language_ok =
            (2..=3).contains(&language.len()) && language.bytes().all(|b| b.is_ascii_lowercase());
        let rest_ok = parts
            .all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
        if language_ok && rest_ok && tag.len() <= 35 {
            Ok(Locale(tag))
        } else {
            Err(LocaleError)
        }
    }

    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag, then each shorter prefix down to the language: `uz-latn-uz`, `uz-latn`, `uz`.
    fn narrowing(&self) -> impl Iterator<Item = &str> {
        let s = self.0.as_str();
        std::iter::successors(Some(s), |t| t.rfind('-').map(|i| &t[..i]))
    }
}

impl TryFrom<String> for Locale {
    type Error = LocaleError;
    fn try_from(s: String) -> Result<Locale, LocaleError> {
        Locale::parse(&s)
    }
}

impl From<Locale> for String {
    fn from(l: Locale) -> String {
        l.0
    }
}

impl std::fmt::Display for Locale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Picks which of `available` serves a recipient who asked for `requested`: see the module
/// documentation for the chain. `None` only when `available` is empty.
pub fn pick<'a>(
    requested: Option<&Locale>,
    fallbacks: &[Locale],
    default: &Locale,
    available: &'a [Locale],
) -> Option<&'a Locale> {
    let find = |tag: &str| available.iter().find(|a| a.as_str() == tag);
    requested
        .into_iter()
        .flat_map(Locale::narrowing)
        .chain(fallbacks.iter().map(Locale::as_str))
        .chain(std::iter::once(default.as_str()))
        .find_map(find)
        .or_else(|| available.first())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(s: &str) -> Locale {
        Locale::parse(s).unwrap()
    }

    #[test]
    fn tags_are_checked_and_lowercased() {
        assert_eq!(l("pt_BR").as_str(), "pt-br");
        assert_eq!(l("uz-Latn-UZ").as_str(), "uz-latn-uz");
        assert_eq!(l(" EN ").as_str(), "en");
        for bad in [
            "",
            "e",
            "engl",
            "en-",
            "en--us",
            "1a",
            "en-toolongsubtag",
            "рус",
            "en us",
        ] {
            assert_eq!(Locale::parse(bad), Err(LocaleError), "{bad}");
        }
    }

    #[test]
    fn the_chain_narrows_then_falls_back_then_defaults() {
        let available = [l("en"), l("ru"), l("uz")];
        let fallbacks = [l("ru"), l("en")];
        let default = l("en");
        let pick_for = |req: Option<&str>| {
            pick(req.map(l).as_ref(), &fallbacks, &default, &available)
                .map(|x| x.as_str().to_string())
        };
        assert_eq!(pick_for(Some("uz-Latn-UZ")).as_deref(), Some("uz"));
        assert_eq!(pick_for(Some("uz")).as_deref(), Some("uz"));
        // Kazakh is not there: the project's chain says Russian before English.
        assert_eq!(pick_for(Some("kk")).as_deref(), Some("ru"));
        assert_eq!(pick_for(None).as_deref(), Some("ru"));
        // Only English left: the default.
        let only_en = [l("en")];
        assert_eq!(
            pick(Some(&l("uz")), &fallbacks, &default, &only_en),
            Some(&l("en"))
        );
        // Nothing in the chain matches at all: the first variant rather than nothing.
        let only_de = [l("de")];
        assert_eq!(
            pick(Some(&l("uz")), &fallbacks, &default, &only_de),
            Some(&l("de"))
        );
        assert_eq!(pick(Some(&l("uz")), &fallbacks, &default, &[]), None);
    }

    #[test]
    fn a_regional_variant_wins_over_its_language() {
        let available = [l("pt"), l("pt-br")];
        assert_eq!(
            pick(Some(&l("pt-BR")), &[], &l("en"), &available),
            Some(&l("pt-br"))
        );
        assert_eq!(
            pick(Some(&l("pt-PT")), &[], &l("en"), &available),
            Some(&l("pt"))
        );
    }
}
