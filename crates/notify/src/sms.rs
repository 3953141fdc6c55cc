//! SMS encoding and segment count.
//!
//! A text that uses only the GSM 03.38 alphabet travels as 7-bit septets: 160 in one message,
//! 153 per part once it is split (the user data header takes 7). Characters of the extension
//! table (`€ [ ] { } \ ^ ~ |` and form feed) take two septets (escape + char), and a pair is
//! never split across parts. Anything else (Cyrillic, emoji) sends the whole text as UCS-2:
//! 70 UTF-16 code units in one message, 67 per part, a surrogate pair never split.

use serde::Serialize;

/// How a text is encoded on the air.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// The GSM 03.38 7-bit default alphabet (with its extension table).
    Gsm7,
    /// UTF-16 (what carriers call UCS-2), for any text outside GSM-7.
    Ucs2,
}

/// What a text costs to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Segments {
    /// The encoding the whole text needs.
    pub encoding: Encoding,
    /// Septets (GSM-7) or UTF-16 code units (UCS-2) in the text.
    pub units: usize,
    /// Messages the carrier bills (0 for an empty text).
    pub count: usize,
}

/// The GSM 03.38 basic alphabet, in code order (0x1B, the escape, is left out).
const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The extension table: each costs an escape septet plus its own.
const EXTENDED: &str = "\u{c}^{}\\[~]|€";

/// Septets `c` takes in GSM-7, or `None` if it has no GSM-7 form.
fn septets(c: char) -> Option<usize> {
    if BASIC.contains(c) {
        Some(1)
    } else if EXTENDED.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Splits `sizes` (each item's units, in order) into parts of at most `per_part` units,
/// never splitting an item, and returns how many parts it takes.
fn parts(sizes: impl Iterator<Item = usize>, per_part: usize) -> usize {
    let mut count = 0;
    let mut used = per_part;
    for size in sizes {
        if used + size > per_part {
            count += 1;
            used = 0;
        }
        used += size;
    }
    count
}

/// Counts the segments of `text`.
pub fn segments(text: &str) -> Segments {
    let gsm: Option<Vec<usize>> = text.chars().map(septets).collect();
    let (encoding, sizes, single, multi) = match gsm {
        Some(sizes) => (Encoding::Gsm7, sizes, 160, 153),
        None => (
            Encoding::Ucs2,
            text.chars().map(char::len_utf16).collect(),
            70,
            67,
        ),
    };
    let units: usize = sizes.iter().sum();
    let count = match units {
        0 => 0,
        n if n <= single => 1,
        _ => parts(sizes.into_iter(), multi),
    };
    Segments {
        encoding,
        units,
        count,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_basic_alphabet_has_127_characters_and_no_escape() {
        assert_eq!(BASIC.chars().count(), 127);
        assert!(!BASIC.contains('\u{1b}'));
    }

    #[test]
    fn plain_latin_fits_160_then_153_per_part() {
        assert_eq!(
            segments(""),
            Segments {
                encoding: Encoding::Gsm7,
                units: 0,
                count: 0
            }
        );
        assert_eq!(segments(&"a".repeat(160)).count, 1);
        assert_eq!(segments(&"a".repeat(161)).count, 2);
        assert_eq!(segments(&"a".repeat(306)).count, 2);
        assert_eq!(segments(&"a".repeat(307)).count, 3);
    }

    #[test]
    fn extension_characters_cost_two_septets_and_never_straddle_parts() {
        let s = segments("€");
        assert_eq!((s.encoding, s.units, s.count), (Encoding::Gsm7, 2, 1));
        assert_eq!(segments(&"{".repeat(80)).count, 1);
        assert_eq!(segments(&"{".repeat(81)).count, 2);
        // 152 plain septets then '€': 154 septets, but the pair cannot start at 153.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        let s = segments(&text);
        assert_eq!(s.units, 164);
        assert_eq!(s.count, 2);
        // 152 + '€' + 152 more: the pair moves to part two, which then holds 154 > 153.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(segments(&text).count, 3);
    }

    #[test]
    fn cyrillic_is_ucs2_70_then_67_per_part() {
        let s = segments("Привет");
        assert_eq!((s.encoding, s.units, s.count), (Encoding::Ucs2, 6, 1));
        assert_eq!(segments(&"ж".repeat(70)).count, 1);
        assert_eq!(segments(&"ж".repeat(71)).count, 2);
        assert_eq!(segments(&"ж".repeat(134)).count, 2);
        assert_eq!(segments(&"ж".repeat(135)).count, 3);
        // One Cyrillic letter turns an otherwise GSM-7 text into UCS-2.
        assert_eq!(segments(&format!("{}ж", "a".repeat(100))).count, 2);
    }

    #[test]
    fn emoji_take_two_units_and_are_never_split() {
        let s = segments("🙂");
        assert_eq!((s.encoding, s.units), (Encoding::Ucs2, 2));
        // 66 units then an emoji: 68 units, the pair moves whole to part two.
        let text = format!("{}🙂{}", "ж".repeat(66), "ж".repeat(10));
        let s = segments(&text);
        assert_eq!((s.units, s.count), (78, 2));
    }

    #[test]
    fn uzbek_latin_apostrophes_decide_the_encoding() {
        // O‘zbek with U+2018 is not GSM-7; with an ASCII apostrophe it is.
        assert_eq!(segments("O‘zbekiston").encoding, Encoding::Ucs2);
        assert_eq!(segments("O'zbekiston").encoding, Encoding::Gsm7);
    }
}
