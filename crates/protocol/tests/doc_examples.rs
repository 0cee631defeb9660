//! Every JSON example in `docs/protocol.md` parses into the protocol types and serialises back
//! to the same JSON value, and every message type has at least one example.

use std::collections::BTreeSet;

use shoal_protocol::{ClientToServer, ServerToClient, decode_client_message};

/// Fenced blocks whose info string is `json client-to-server` or `json server-to-client`.
fn examples(direction: &str) -> Vec<String> {
    let doc = include_str!("../../../docs/protocol.md");
    let fence = format!("```json {direction}");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() == fence {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            out.push(body.join("\n"));
        }
    }
    out
}

fn type_of(json: &serde_json::Value) -> String {
    json["type"]
        .as_str()
        .expect("every example has a type")
        .to_owned()
}

#[test]
fn client_examples_round_trip() {
    let examples = examples("client-to-server");
    assert!(examples.len() >= 8, "found {} examples", examples.len());
    let mut seen = BTreeSet::new();
    for text in examples {
        let message = decode_client_message(&text)
            .unwrap_or_else(|e| panic!("example does not decode: {e}\n{text}"));
        let original: serde_json::Value = serde_json::from_str(&text).expect("example is JSON");
        let again = serde_json::to_value(&message).expect("serialises");
        assert_eq!(again, original, "round trip changed the example");
        seen.insert(type_of(&original));
    }
    let all: BTreeSet<String> = ClientToServer::TYPES
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(seen, all, "every client message type has an example");
}

#[test]
fn server_examples_round_trip() {
    let examples = examples("server-to-client");
    let mut seen = BTreeSet::new();
    for text in examples {
        let message: ServerToClient = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("example does not decode: {e}\n{text}"));
        let original: serde_json::Value = serde_json::from_str(&text).expect("example is JSON");
        let again = serde_json::to_value(&message).expect("serialises");
        assert_eq!(again, original, "round trip changed the example");
        seen.insert(type_of(&original));
    }
    for expected in [
        "welcome",
        "announced",
        "index_changed",
        "list_result",
        "search_result",
        "lookup_result",
        "signal",
        "status",
        "error",
    ] {
        assert!(seen.contains(expected), "no example of {expected}");
    }
}
