//! Fuzzing on the stable toolchain (issue 9, item 7): `decode_client_message`, the signaling
//! server's only reader of network input, fed random text and mutations of every
//! client-to-server example in `docs/protocol.md`. `PROPTEST_CASES` cases per property (256
//! by default, well under a second); a longer run by hand:
//! `PROPTEST_CASES=200000 cargo test --release -p shoal-protocol --test fuzz_decode`.
//!
//! Properties: decoding never panics; a message it accepts passes validation and serialises
//! to JSON that decodes to the same message (what the server acts on is what it would relay
//! or store); a refusal always carries a code and a sentence.

use proptest::prelude::*;
use shoal_protocol::{ClientToServer, decode_client_message};

/// The client-to-server examples of docs/protocol.md.
fn examples() -> Vec<String> {
    let doc = include_str!("../../../docs/protocol.md");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```json client-to-server" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            out.push(body.join("\n"));
        }
    }
    assert!(!out.is_empty(), "docs/protocol.md has client examples");
    out
}

fn check(text: &str) -> Result<(), TestCaseError> {
    match decode_client_message(text) {
        Ok(message) => {
            prop_assert!(message.validate().is_ok());
            let again = serde_json::to_string(&message).expect("serialises");
            let decoded: ClientToServer = decode_client_message(&again).expect("decodes again");
            prop_assert_eq!(
                serde_json::to_value(&decoded).expect("value"),
                serde_json::to_value(&message).expect("value")
            );
        }
        Err(e) => prop_assert!(!e.reason.is_empty()),
    }
    Ok(())
}

/// Pieces of JSON that steer mutations toward the interesting parts of the grammar.
const SPLICES: &[&str] = &[
    "\"",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "-1",
    "1e999",
    "18446744073709551616",
    "\"type\"",
    "\"announce\"",
    "\"signal\"",
    "\\u0000",
    "\\ud800",
    "\u{202e}",
    "0.5",
    "true",
    "\"request_id\":",
    "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
];

proptest! {
    #[test]
    fn random_text_is_refused_or_accepted_whole(text in ".{0,200}") {
        check(&text)?;
    }

    #[test]
    fn mutated_examples_never_panic(
        pick in any::<usize>(),
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), 0u8..3), 1..6),
    ) {
        let examples = examples();
        let mut text: Vec<char> = examples[pick % examples.len()].chars().collect();
        for (at, which, op) in edits {
            let at = at % (text.len() + 1);
            match op {
                // Delete a run of characters.
                0 => {
                    let end = (at + which % 8).min(text.len());
                    text.drain(at..end);
                }
                // Splice in a JSON fragment.
                1 => {
                    let splice = SPLICES[which % SPLICES.len()];
                    text.splice(at..at, splice.chars());
                }
                // Duplicate a run (repeated keys, long strings).
                _ => {
                    let end = (at + which % 40).min(text.len());
                    let run: Vec<char> = text[at..end].to_vec();
                    text.splice(at..at, run.into_iter().cycle().take((which % 5) * (end - at)));
                }
            }
        }
        let text: String = text.into_iter().collect();
        check(&text)?;
    }
}
