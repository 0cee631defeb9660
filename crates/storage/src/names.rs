//! Safe file names: turns a name announced by a peer into one harmless file name.
//!
//! A peer's announcement says what the file is called; that text is untrusted. It must never
//! name a path outside the download folder (`../../.bashrc`, `/etc/passwd`), a hidden file, a
//! device (`CON`, `NUL` on Windows), or carry characters that make a name lie on screen
//! (U+202E RIGHT-TO-LEFT OVERRIDE turns `gpj.exe` into what looks like `exe.jpg`).

/// Longest name [`safe_file_name`] returns, in bytes of UTF-8. Leaves room under the usual
/// 255-byte limit for a ` (12)` suffix and the `.part.resume` of the resume file.
pub(crate) const MAX_NAME_BYTES: usize = 200;

/// Longest extension (after the last `.`, in bytes) kept when a long name is shortened.
const MAX_EXT_BYTES: usize = 16;

/// The name used when nothing usable is left.
const FALLBACK_NAME: &str = "download";

/// Turns an untrusted file name (from the network) into one harmless file name for the
/// download folder.
///
/// The result:
/// - is a single path component: no `/` or `\` (each path component of the input is kept,
///   joined with `_`, and the components `.`, `..` and empty ones are dropped, so `../../x`
///   gives `x` and `/etc/passwd` gives `etc_passwd`), never `.` or `..`;
/// - has no control characters (Unicode `Cc`, which includes U+0000–U+001F, U+007F–U+009F)
///   and no invisible formatting or bidirectional characters (U+200B–U+200F, U+2028–U+202E,
///   U+2060–U+206F, U+061C, U+FEFF, U+FFF9–U+FFFB): they are removed;
/// - has the characters Windows forbids (`<>:"|?*`) replaced by `_`, does not end with a dot
///   or a space, and is not a reserved device name (`CON`, `nul.txt`, `COM1` … get a leading
///   `_`; [`sanitize_filename`] checks again);
/// - does not start with a dot (no hidden files) or with white space;
/// - is at most 200 bytes of UTF-8, cut on a character boundary, keeping
///   an extension of up to 16 bytes (`.mp4`);
/// - is never empty: `download` when nothing usable is left.
///
/// It is idempotent: `safe_file_name(&safe_file_name(x)) == safe_file_name(x)`.
pub fn safe_file_name(untrusted: &str) -> String {
    let mut name = clean(untrusted);
    // `clean` and `shorten` each leave the other's work intact except at the edges (a cut can
    // end on a space, a trimmed name can still be long), so run them until nothing changes.
    // Two rounds reach that fixpoint; the bound is only a guard.
    for _ in 0..4 {
        let next = clean(&shorten(&name));
        if next == name {
            break;
        }
        name = next;
    }
    if name.is_empty() {
        FALLBACK_NAME.to_owned()
    } else {
        name
    }
}

/// Whether `c` is removed outright: control characters and invisible formatting or
/// bidirectional-override characters.
fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// Whether `name` is a Windows device name: its stem (up to the first dot) is `CON`, `NUL`,
/// `COM1`, … in any case.
fn is_windows_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    let lower = stem.to_ascii_lowercase();
    match lower.as_str() {
        "con" | "prn" | "aux" | "nul" | "conin$" | "conout$" => true,
        _ => {
            let port = lower
                .strip_prefix("com")
                .or_else(|| lower.strip_prefix("lpt"));
            port.is_some_and(|digit| {
                let mut chars = digit.chars();
                matches!(
                    (chars.next(), chars.next()),
                    (Some('0'..='9' | '¹' | '²' | '³'), None)
                )
            })
        }
    }
}

/// One pass of every rule but the length limit.
fn clean(untrusted: &str) -> String {
    let without_controls: String = untrusted
        .chars()
        .filter(|c| !is_forbidden_char(*c))
        .collect();
    let joined = without_controls
        .split(['/', '\\'])
        .filter(|part| !matches!(part.trim(), "" | "." | ".."))
        .collect::<Vec<_>>()
        .join("_");
    let replaced: String = joined
        .chars()
        .map(|c| match c {
            '<' | '>' | ':' | '"' | '|' | '?' | '*' => '_',
            c => c,
        })
        .collect();
    let trimmed = replaced
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    let prefixed = if is_windows_reserved(trimmed) {
        format!("_{trimmed}")
    } else {
        trimmed.to_owned()
    };
    // Belt and braces: the crate's Windows rules (reserved names, trailing dots and spaces)
    // find nothing left to do here; if they ever did, they remove rather than replace.
    sanitize_filename::sanitize_with_options(
        prefixed,
        sanitize_filename::Options {
            windows: true,
            truncate: false,
            replacement: "",
        },
    )
}

/// Cuts `name` to at most [`MAX_NAME_BYTES`], keeping a short extension.
fn shorten(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_owned();
    }
    let (stem, ext) = split_extension(name);
    if !ext.is_empty() && ext.len() <= MAX_EXT_BYTES && !stem.is_empty() {
        let stem = cut_at_char_boundary(stem, MAX_NAME_BYTES - ext.len());
        let stem = stem.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
        if !stem.is_empty() {
            return format!("{stem}{ext}");
        }
    }
    cut_at_char_boundary(name, MAX_NAME_BYTES).to_owned()
}

/// The longest prefix of `s` of at most `max_bytes` bytes that ends on a character boundary.
fn cut_at_char_boundary(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Splits `name` before its last dot: `("movie", ".mp4")`; `("name", "")` without a dot. A
/// leading dot does not start an extension.
pub(crate) fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    }
}

/// The `n`th alternative to `name` when it is taken: `movie (1).mp4`, `movie (2).mp4`, …
/// A `(k)` already at the end of the stem is replaced rather than stacked, and the stem is
/// shortened so the result stays within [`MAX_NAME_BYTES`]. For a name from
/// [`safe_file_name`] the result is one too (`safe_file_name` leaves it unchanged).
pub(crate) fn numbered_name(name: &str, n: u32) -> String {
    let (stem, ext) = match split_extension(name) {
        (stem, ext) if ext.len() <= MAX_EXT_BYTES => (stem, ext),
        _ => (name, ""),
    };
    let suffix = format!(" ({n})");
    let base = strip_number_suffix(stem);
    let base = cut_at_char_boundary(
        base,
        MAX_NAME_BYTES.saturating_sub(suffix.len() + ext.len()),
    );
    format!("{base}{suffix}{ext}")
}

/// `movie (3)` -> `movie`; anything else unchanged.
fn strip_number_suffix(stem: &str) -> &str {
    if let Some(open) = stem.strip_suffix(')').and_then(|s| s.rfind(" (")) {
        let digits = &stem[open + 2..stem.len() - 1];
        if !digits.is_empty() && digits.len() <= 9 && digits.bytes().all(|b| b.is_ascii_digit()) {
            return &stem[..open];
        }
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hostile or awkward input, and what it must become.
    const CASES: &[(&str, &str)] = &[
        ("movie.mp4", "movie.mp4"),
        ("résumé 2024.pdf", "résumé 2024.pdf"),
        ("../../x", "x"),
        ("..\\..\\x", "x"),
        ("/etc/passwd", "etc_passwd"),
        (
            "C:\\Windows\\system32\\cmd.exe",
            "C__Windows_system32_cmd.exe",
        ),
        ("a/../b", "a_b"),
        ("./././foobar", "foobar"),
        ("..", "download"),
        (".", "download"),
        ("", "download"),
        ("   ", "download"),
        ("/", "download"),
        ("...", "download"),
        (".bashrc", "bashrc"),
        ("..hidden", "hidden"),
        (" . leading", "leading"),
        ("trailing. . ", "trailing"),
        ("hello\nworld\0.txt", "helloworld.txt"),
        ("bell\u{7}\u{7f}\u{85}.txt", "bell.txt"),
        ("evil\u{202E}4pm.exe", "evil4pm.exe"),
        ("zero\u{200B}width\u{FEFF}.mkv", "zerowidth.mkv"),
        ("iso\u{2066}late\u{2069}.mkv", "isolate.mkv"),
        ("what?*<>|\":.mp3", "what_______.mp3"),
        ("CON", "_CON"),
        ("con.txt", "_con.txt"),
        ("nul", "_nul"),
        ("LPT9.asdf", "_LPT9.asdf"),
        ("com1.tar.gz", "_com1.tar.gz"),
        ("console.log", "console.log"),
        ("COM10", "COM10"),
        ("\u{202E}", "download"),
        ("\u{0}\u{1}\u{1f}", "download"),
        ("~/.ssh/authorized_keys", "~_.ssh_authorized_keys"),
        ("movie (1).mp4", "movie (1).mp4"),
    ];

    #[test]
    fn hostile_names_become_harmless() {
        for (input, expected) in CASES {
            assert_eq!(safe_file_name(input), *expected, "input {input:?}");
        }
    }

    /// What every result must satisfy, whatever the input.
    fn assert_harmless(input: &str, out: &str) {
        assert!(!out.is_empty(), "{input:?} gave an empty name");
        assert!(
            out.len() <= MAX_NAME_BYTES,
            "{input:?} gave {} bytes",
            out.len()
        );
        assert!(
            !out.contains(['/', '\\']),
            "{input:?} -> {out:?} has a separator"
        );
        assert!(!out.starts_with('.'), "{input:?} -> {out:?} is hidden");
        assert!(
            !out.starts_with(char::is_whitespace),
            "{input:?} -> {out:?}"
        );
        assert!(!out.ends_with([' ', '.']), "{input:?} -> {out:?}");
        assert!(!out.chars().any(is_forbidden_char), "{input:?} -> {out:?}");
        assert!(
            !is_windows_reserved(out),
            "{input:?} -> {out:?} is reserved"
        );
        let path = std::path::Path::new(out);
        assert_eq!(path.components().count(), 1, "{input:?} -> {out:?}");
        assert!(matches!(
            path.components().next(),
            Some(std::path::Component::Normal(_))
        ));
        assert_eq!(safe_file_name(out), out, "not idempotent for {input:?}");
    }

    #[test]
    fn table_results_are_harmless_and_idempotent() {
        for (input, _) in CASES {
            assert_harmless(input, &safe_file_name(input));
        }
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.mp4", "a".repeat(500));
        let out = safe_file_name(&long);
        assert_eq!(out.len(), MAX_NAME_BYTES);
        assert!(out.ends_with(".mp4"));
        assert_harmless(&long, &out);

        // Multi-byte characters are never cut in half.
        let wide = format!("{}.mkv", "é".repeat(300));
        let out = safe_file_name(&wide);
        assert!(
            out.len() <= MAX_NAME_BYTES && out.ends_with(".mkv"),
            "{out}"
        );
        assert_harmless(&wide, &out);

        // A cut that would leave trailing spaces or dots before the extension trims them.
        let spaced = format!("{}{}.mp4", "a".repeat(190), " ".repeat(100));
        let out = safe_file_name(&spaced);
        assert_eq!(out, format!("{}.mp4", "a".repeat(190)));

        // An extension too long to be one is cut like the rest.
        let odd = format!("name.{}", "x".repeat(300));
        let out = safe_file_name(&odd);
        assert_eq!(out.len(), MAX_NAME_BYTES);
        assert!(out.starts_with("name.x"));
        assert_harmless(&odd, &out);
    }

    #[test]
    fn random_hostile_input_is_always_harmless() {
        // A fixed xorshift stream over an alphabet of troublesome characters: deterministic,
        // so a failure reproduces.
        const ALPHABET: &[char] = &[
            'a', 'Z', '0', '.', '.', '/', '\\', ' ', ' ', '\t', '\n', '\0', '\u{7f}', '\u{85}',
            '\u{202E}', '\u{200B}', '\u{FEFF}', 'é', '日', '🎬', ':', '*', '?', '"', '<', '|', '(',
            ')', '1', 'C', 'O', 'N', '\u{3000}', '\u{A0}',
        ];
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let len = (next() % 300) as usize;
            let input: String = (0..len)
                .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
                .collect();
            assert_harmless(&input, &safe_file_name(&input));
        }
    }

    #[test]
    fn numbered_names() {
        assert_eq!(numbered_name("movie.mp4", 1), "movie (1).mp4");
        assert_eq!(numbered_name("movie (1).mp4", 2), "movie (2).mp4");
        assert_eq!(numbered_name("archive.tar.gz", 3), "archive.tar (3).gz");
        assert_eq!(numbered_name("README", 1), "README (1)");
        assert_eq!(numbered_name("notes (draft)", 1), "notes (draft) (1)");
        assert_eq!(numbered_name("_x", 1), "_x (1)");
        assert_eq!(split_extension(".hidden"), (".hidden", ""));
    }

    #[test]
    fn numbered_long_names_stay_safe_and_short() {
        for long in [
            format!("{}.mp4", "a".repeat(500)),
            format!("{}.mkv", "é".repeat(300)),
            format!("n.{}", "x".repeat(500)),
            "b".repeat(500),
        ] {
            let safe = safe_file_name(&long);
            for n in [1, 12, 9_999] {
                let numbered = numbered_name(&safe, n);
                assert!(numbered.len() <= MAX_NAME_BYTES, "{numbered}");
                assert!(numbered.contains(&format!(" ({n})")), "{numbered}");
                assert_eq!(safe_file_name(&numbered), numbered);
            }
        }
        assert!(
            numbered_name(&safe_file_name(&format!("{}.mp4", "a".repeat(500))), 3)
                .ends_with("a (3).mp4")
        );
    }
}
