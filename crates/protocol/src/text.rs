//! Rendering untrusted text inert: names and messages from the network reach terminals, logs
//! and the app's window only through [`inert`].
//!
//! A file name is whatever a peer announced (up to [`crate::MAX_NAME_BYTES`] bytes of UTF-8).
//! Printed raw it can drive a terminal (ECMA-48 escape and control sequences: clear the
//! screen, set the window title, OSC 52 writes the clipboard), draw a forged row (a carriage
//! return or a newline followed by a fake info hash), or reorder what a reader sees (the
//! Unicode bidirectional overrides and isolates, UAX #9, the "Trojan Source" attack,
//! CVE-2021-42574) and hide characters (zero-width and other default-ignorable code points,
//! Unicode §5.21).

use std::borrow::Cow;
use std::fmt::Write as _;

/// `s` made safe to show: nothing in the result is a control character, a bidirectional
/// formatting character or an invisible format character, and it holds at most `max_chars`
/// characters (`usize::MAX` for no cap).
///
/// - C0 and C1 controls and DEL (Unicode category Cc) become visible escapes: `\t`, `\n`,
///   `\r`, and `\x1b` style for the others;
/// - bidirectional formatting characters (U+061C, U+200E, U+200F, U+202A..U+202E,
///   U+2066..U+2069), line and paragraph separators, zero-width and other invisible format
///   characters (Cf, the Hangul fillers, tag characters) become `<U+202E>` style markers;
/// - a longer result is cut at `max_chars - 1` characters and ends with `…`.
///
/// Everything else, including every script's letters, emoji and their variation selectors,
/// is kept. Borrows `s` when nothing changes.
pub fn inert(s: &str, max_chars: usize) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) && s.chars().nth(max_chars).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut count = 0usize;
    // Where `out` ends while it holds fewer than `max_chars` characters: room for the `…`.
    let mut cut = 0usize;
    for c in s.chars() {
        let before = out.len();
        render(c, &mut out);
        count += out[before..].chars().count();
        if count < max_chars {
            cut = out.len();
        } else if count > max_chars {
            out.truncate(cut);
            out.push('…');
            break;
        }
    }
    Cow::Owned(out)
}

fn render(c: char, out: &mut String) {
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c if c.is_control() => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c if is_invisible_format(c) => {
            let _ = write!(out, "<U+{:04X}>", u32::from(c));
        }
        c => out.push(c),
    }
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_invisible_format(c)
}

/// Bidirectional formatting, separators and invisible format characters (Unicode general
/// category Cf and the default-ignorable fillers), except variation selectors.
fn is_invisible_format(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x08E2
            | 0x115F
            | 0x1160
            | 0x17B4
            | 0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFEFF
            | 0xFFA0
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE007F
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_are_borrowed_unchanged() {
        for name in [
            "holiday.mp4",
            "Ünïcödé – 日本語の動画 📹.webm",
            "שלום.mp3",
            "مرحبا.ogg",
        ] {
            assert!(matches!(inert(name, usize::MAX), Cow::Borrowed(n) if n == name));
            assert!(matches!(inert(name, 200), Cow::Borrowed(n) if n == name));
        }
    }

    #[test]
    fn escape_sequences_and_row_forgery_become_visible_text() {
        assert_eq!(
            inert("a\x1b[2Jb\x1b]52;c;ZXZpbA==\x07.mp4", usize::MAX),
            "a\\x1b[2Jb\\x1b]52;c;ZXZpbA==\\x07.mp4"
        );
        assert_eq!(
            inert("x.mp4\r0000000000  1 KiB  video  1 holder  y", usize::MAX),
            "x.mp4\\r0000000000  1 KiB  video  1 holder  y"
        );
        assert_eq!(
            inert("a\nb\tc\u{7f}\u{9b}", usize::MAX),
            "a\\nb\\tc\\x7f\\x9b"
        );
    }

    #[test]
    fn bidi_and_invisible_characters_are_marked() {
        assert_eq!(
            inert("photo\u{202e}4pm.exe", usize::MAX),
            "photo<U+202E>4pm.exe"
        );
        assert_eq!(
            inert("a\u{200b}b\u{2066}c\u{feff}\u{e0041}", usize::MAX),
            "a<U+200B>b<U+2066>c<U+FEFF><U+E0041>"
        );
        // Emoji presentation selectors stay.
        assert_eq!(inert("\u{2764}\u{fe0f}", usize::MAX), "\u{2764}\u{fe0f}");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        let long = "a".repeat(300);
        let cut = inert(&long, 100);
        assert_eq!(cut.chars().count(), 100);
        assert!(cut.ends_with('…'));
        assert_eq!(inert(&"a".repeat(100), 100), "a".repeat(100));
        // Escapes count as what they render to, and are never cut in half.
        let escapes = "\x1b".repeat(50);
        assert_eq!(inert(&escapes, 10), "\\x1b\\x1b…");
        assert_eq!(inert("", 0), "");
    }
}
