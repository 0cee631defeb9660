//! The IPC contract has three copies: the Rust types in `dto.rs` (what is sent), the
//! TypeScript shapes in `docs/app-ipc.md` (what is promised) and `ui/types.d.ts` (what the
//! UI's type check holds the code to). This test keeps them one (issue 9, item 5): every
//! shape the document names is in `ui/types.d.ts` with the same fields, and a sample of every
//! Rust type, serialised as the app sends it, has exactly those fields (each variant of a
//! tagged union, each value of a string union).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;
use shoal_node::Category;

use crate::dto::{
    AppState, Connection, Hashing, HostingInfo, HostingProblem, LiveTick, LogEntry, NetworkFile,
    PeerInfo, PieceMap, PlayerAction, Problem, Room, RoomMember, RoomTick, Share, Transfer,
    TransferState, UiEvent, Upload, Watch,
};
use crate::settings::{Settings, TurnServer};

/// A TypeScript shape, as far as the contract goes: field names, or variants by tag value,
/// or string literals.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    Object(BTreeSet<String>),
    /// Tag value -> the variant's fields (the tag included).
    Union(BTreeMap<String, BTreeSet<String>>),
    Literals(BTreeSet<String>),
}

/// Drops `// ...` and `/* ... */` comments.
fn strip_comments(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |end| &r[end + 2..]);
        } else if let Some(r) = rest.strip_prefix("//") {
            rest = r.find('\n').map_or("", |end| &r[end..]);
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Splits `s` at `sep` where no bracket is open.
fn split_top(s: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut start, mut parts) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' | '[' | '(' | '<' => depth += 1,
            '}' | ']' | ')' | '>' => depth -= 1,
            c if c == sep && depth == 0 => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The field names of an object body (`a: T; b?: U` or one per line).
fn fields(body: &str) -> BTreeSet<String> {
    split_top(body, ';')
        .into_iter()
        .flat_map(|part| split_top(part, '\n'))
        .filter_map(|member| {
            let (name, _) = member.split_once(':')?;
            let name = name.trim().trim_end_matches('?');
            (!name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_'))
                .then(|| name.to_owned())
        })
        .collect()
}

/// The text between the `{` at `open` and its matching `}`; and the index after it.
fn braced(s: &str, open: usize) -> (&str, usize) {
    let mut depth = 0;
    for (i, c) in s[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return (&s[open + 1..open + i], open + i + 1);
                }
            }
            _ => {}
        }
    }
    panic!("unbalanced braces after {}", &s[open..]);
}

/// Every top-level `interface X { }` and `type X = ...;` in `src`.
fn parse(src: &str) -> BTreeMap<String, Shape> {
    let src = strip_comments(src);
    let mut shapes = BTreeMap::new();
    let mut at = 0;
    while at < src.len() {
        let rest = &src[at..];
        let word_start = rest.starts_with("interface ") || rest.starts_with("type ");
        let line_start = at == 0 || src[..at].ends_with('\n');
        if !(word_start && line_start) {
            at += rest.chars().next().map_or(1, char::len_utf8);
            continue;
        }
        if let Some(r) = rest.strip_prefix("interface ") {
            let name: String = r.chars().take_while(|c| c.is_alphanumeric()).collect();
            let open = at + rest.find('{').expect("interface body");
            let (body, end) = braced(&src, open);
            shapes.insert(name, Shape::Object(fields(body)));
            at = end;
        } else {
            let r = &rest["type ".len()..];
            let name: String = r.chars().take_while(|c| c.is_alphanumeric()).collect();
            let eq = rest.find('=').expect("type =");
            let mut depth = 0;
            let end = rest[eq..]
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    c == ';' && depth == 0
                })
                .map_or(rest.len(), |(i, _)| eq + i);
            let body = &rest[eq + 1..end];
            let variants: Vec<&str> = split_top(body, '|')
                .into_iter()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            let shape = if variants.iter().all(|v| v.starts_with('{')) {
                let mut union = BTreeMap::new();
                for v in variants {
                    let inner = v.trim_start_matches('{').trim_end_matches('}');
                    let first = split_top(inner, ';')[0];
                    let tag = first
                        .split_once(':')
                        .map(|(_, t)| t.trim().trim_matches('"').to_owned())
                        .unwrap_or_default();
                    union.insert(tag, fields(inner));
                }
                Shape::Union(union)
            } else if variants.iter().all(|v| v.starts_with('"')) {
                Shape::Literals(
                    variants
                        .iter()
                        .map(|v| v.trim_matches('"').to_owned())
                        .collect(),
                )
            } else {
                at += end;
                continue; // an alias of another type: not part of the contract's shapes
            };
            shapes.insert(name, shape);
            at += end;
        }
    }
    shapes
}

/// The ```ts block of docs/app-ipc.md.
fn doc_shapes() -> BTreeMap<String, Shape> {
    let doc = include_str!("../../docs/app-ipc.md");
    let start = doc.find("```ts\n").expect("a ts block") + "```ts\n".len();
    let end = start + doc[start..].find("```").expect("closed");
    parse(&doc[start..end])
}

fn keys(value: &impl Serialize) -> BTreeSet<String> {
    match serde_json::to_value(value).expect("serialises") {
        serde_json::Value::Object(map) => map.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

fn union<T: Serialize>(tag: &str, samples: &[T]) -> Shape {
    Shape::Union(
        samples
            .iter()
            .map(|s| {
                let value = serde_json::to_value(s).expect("serialises");
                let name = value[tag].as_str().expect("tagged").to_owned();
                (name, keys(s))
            })
            .collect(),
    )
}

fn literals<T: Serialize>(samples: &[T]) -> Shape {
    Shape::Literals(
        samples
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .expect("serialises")
                    .as_str()
                    .expect("a string")
                    .to_owned()
            })
            .collect(),
    )
}

/// What the app sends, one sample of each shape (every optional field set).
fn rust_shapes() -> BTreeMap<String, Shape> {
    let upload = Upload::default();
    let share = Share {
        info_hash: "00".into(),
        name: "a".into(),
        path: PathBuf::from("/a"),
        size: 1,
        mime: "video/mp4".into(),
        category: Category::Video,
        missing: Some("gone".into()),
        upload: upload.clone(),
    };
    let hashing = Hashing {
        path: PathBuf::from("/a"),
        name: "a".into(),
        bytes_done: 0,
        len_bytes: 1,
    };
    let mut transfer = Transfer::new(1, "00".into(), "a.mp4".into(), 1);
    transfer.eta_secs = Some(1);
    transfer.path = Some(PathBuf::from("/a"));
    transfer.problem = Some(Problem::SharerGone);
    let member = RoomMember {
        id: "n".into(),
        name: "Ana".into(),
        is_host: false,
        is_me: true,
        state: Some("playing".into()),
        position_ms: 1.0,
        progress: 0.5,
        drift_ms: Some(3.0),
    };
    // What the page sends must be what the app reads.
    let report: crate::dto::PlayerReport = serde_json::from_value(serde_json::json!({
        "positionMs": 1.0, "playing": true, "seeking": false, "ready": true, "rate": 1.0
    }))
    .expect("a PlayerReport as docs/app-ipc.md shows it");
    assert!(report.playing);
    let live = LiveTick {
        hosting: false,
        url: Some("http://127.0.0.1:1/t/live".into()),
        summary: "VP8 video, Opus audio".into(),
    };
    let peer = PeerInfo {
        peer: "p".into(),
        candidate_type: "host".into(),
    };
    transfer.peers.push(peer.clone());
    let entry = LogEntry::new("info", "m");
    let hosting = HostingInfo {
        listening: "0.0.0.0:1".into(),
        share_urls: vec!["ws://10.0.0.1:1".into()],
    };
    let problem = HostingProblem {
        message: "m".into(),
        port: 1,
        free_port: Some(2),
    };
    let connection = Connection::Connecting {
        url: "ws://a".into(),
    };
    let settings = Settings::default();
    let state = AppState {
        settings: settings.clone(),
        connection: connection.clone(),
        hosting: Some(hosting.clone()),
        hosting_problem: Some(problem.clone()),
        shares: vec![share.clone()],
        hashing: vec![hashing.clone()],
        transfers: vec![transfer.clone()],
        log: vec![entry.clone()],
    };
    let network_file = NetworkFile {
        info_hash: "00".into(),
        name: "a".into(),
        size: 1,
        mime: "video/mp4".into(),
        category: Category::Video,
        holders: 1,
        partial_holders: 2,
        mine: false,
    };
    let events = [
        UiEvent::Connection {
            connection: connection.clone(),
        },
        UiEvent::Hosting {
            hosting: Some(hosting.clone()),
            problem: Some(problem.clone()),
        },
        UiEvent::Hashing {
            hashing: hashing.clone(),
        },
        UiEvent::Shared {
            share: share.clone(),
        },
        UiEvent::Unshared {
            info_hash: "00".into(),
            reason: Some("r".into()),
            path: Some(PathBuf::from("/a")),
        },
        UiEvent::IndexChanged,
        UiEvent::Upload {
            upload: upload.clone(),
        },
        UiEvent::Transfer {
            transfer: transfer.clone(),
        },
        UiEvent::Log {
            entry: entry.clone(),
        },
        UiEvent::Notice {
            entry: entry.clone(),
        },
        UiEvent::Settings {
            settings: settings.clone(),
        },
    ];
    let connections = [
        connection,
        Connection::Connected {
            url: "ws://a".into(),
            node_id: "n".into(),
            short_id: "n".into(),
        },
        Connection::Disconnected {
            url: "ws://a".into(),
            reason: "r".into(),
            retry_in_secs: 1,
        },
    ];
    let turn = TurnServer {
        url: "turn:a".into(),
        username: "u".into(),
        credential: "c".into(),
    };
    BTreeMap::from([
        ("AppState".into(), Shape::Object(keys(&state))),
        ("Settings".into(), Shape::Object(keys(&settings))),
        ("TurnServer".into(), Shape::Object(keys(&turn))),
        ("Share".into(), Shape::Object(keys(&share))),
        ("Upload".into(), Shape::Object(keys(&upload))),
        ("Hashing".into(), Shape::Object(keys(&hashing))),
        ("Hosting".into(), Shape::Object(keys(&hosting))),
        ("HostingProblem".into(), Shape::Object(keys(&problem))),
        ("NetworkFile".into(), Shape::Object(keys(&network_file))),
        (
            "Watch".into(),
            Shape::Object(keys(&Watch {
                url: "http://a".into(),
                transfer: Some(1),
                path: None,
            })),
        ),
        (
            "PieceMap".into(),
            Shape::Object(keys(&PieceMap {
                len_bytes: 2,
                have: vec![(0, 1)],
                in_flight: vec![(1, 2)],
            })),
        ),
        (
            "Room".into(),
            Shape::Object(keys(&Room {
                code: "K7M3-XQ9P".into(),
                link: "5d41402abc4b2a76b9719d911017c592".into(),
                info_hash: "ab".into(),
                name: "film.mp4".into(),
                is_host: true,
                watch: Watch {
                    url: "http://a".into(),
                    transfer: None,
                    path: None,
                },
            })),
        ),
        (
            "PlayerReport".into(),
            Shape::Object(
                ["positionMs", "playing", "seeking", "ready", "rate"]
                    .iter()
                    .map(|k| (*k).to_owned())
                    .collect(),
            ),
        ),
        (
            "PlayerAction".into(),
            union(
                "kind",
                &[
                    PlayerAction::Play,
                    PlayerAction::Pause,
                    PlayerAction::Seek { position_ms: 1.0 },
                    PlayerAction::Rate { rate: 1.0 },
                ],
            ),
        ),
        ("RoomMember".into(), Shape::Object(keys(&member))),
        (
            "RoomTick".into(),
            Shape::Object(keys(&RoomTick {
                actions: vec![PlayerAction::Play],
                members: vec![member.clone()],
                waiting_for: Some("Bob".into()),
                closed: None,
                host_position_ms: Some(1.0),
                drift_ms: None,
                playing: true,
                host_wants_playing: true,
                next_tick_ms: 100.0,
                live: Some(live.clone()),
            })),
        ),
        ("LiveTick".into(), Shape::Object(keys(&live))),
        ("PeerInfo".into(), Shape::Object(keys(&peer))),
        ("Transfer".into(), Shape::Object(keys(&transfer))),
        ("LogEntry".into(), Shape::Object(keys(&entry))),
        ("Connection".into(), union("state", &connections)),
        (
            "Problem".into(),
            union(
                "kind",
                &[
                    Problem::NoServer,
                    Problem::SharerGone,
                    Problem::NotResumed,
                    Problem::DiskFull,
                    Problem::Storage,
                    Problem::Other {
                        message: "m".into(),
                    },
                ],
            ),
        ),
        ("UiEvent".into(), union("kind", &events)),
        (
            "Category".into(),
            literals(&[
                Category::Audio,
                Category::Video,
                Category::Image,
                Category::Other,
            ]),
        ),
        (
            "TransferState".into(),
            literals(&[
                TransferState::Running,
                TransferState::Waiting,
                TransferState::Completed,
                TransferState::Failed,
                TransferState::Cancelled,
            ]),
        ),
    ])
}

#[test]
fn the_document_the_ui_types_and_the_rust_types_agree() {
    let doc = doc_shapes();
    let ui = parse(include_str!("../../ui/types.d.ts"));
    let rust = rust_shapes();
    assert!(
        doc.len() >= 10,
        "docs/app-ipc.md's ts block: {:?}",
        doc.keys()
    );
    for (name, shape) in &doc {
        assert_eq!(
            ui.get(name),
            Some(shape),
            "{name}: docs/app-ipc.md and ui/types.d.ts differ"
        );
        assert_eq!(
            rust.get(name),
            Some(shape),
            "{name}: docs/app-ipc.md and what the app sends (dto.rs) differ"
        );
    }
    for (name, shape) in &rust {
        if let Some(ui_shape) = ui.get(name) {
            assert_eq!(ui_shape, shape, "{name}: ui/types.d.ts and dto.rs differ");
        } else {
            panic!("{name} is sent by the app but ui/types.d.ts does not declare it");
        }
    }
}

#[test]
fn the_parser_reads_the_shapes_it_checks() {
    let shapes = parse(
        "interface A { a: string; b?: { c: number } | null; // d: x\n  e: F[] }\n\
         type U =\n  | { kind: \"x\"; y: number }\n  | { kind: \"z\" };\n\
         type L = \"p\" | \"q\";\n",
    );
    let set = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect();
    assert_eq!(shapes["A"], Shape::Object(set(&["a", "b", "e"])));
    assert_eq!(
        shapes["U"],
        Shape::Union(BTreeMap::from([
            ("x".into(), set(&["kind", "y"])),
            ("z".into(), set(&["kind"])),
        ]))
    );
    assert_eq!(shapes["L"], Shape::Literals(set(&["p", "q"])));
}

/// The names in `text` between each `open` and the next `close`.
fn names_between<'a>(text: &'a str, open: &str, close: char) -> BTreeSet<&'a str> {
    text.match_indices(open)
        .filter_map(|(at, _)| {
            let rest = &text[at + open.len()..];
            rest.find(close).map(|end| &rest[..end])
        })
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

#[test]
fn the_commands_the_app_registers_the_document_lists_and_the_ui_calls_agree() {
    let lib = include_str!("lib.rs");
    let list = lib
        .split("generate_handler![")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .expect("lib.rs registers its commands with generate_handler!");
    let registered: BTreeSet<&str> = list
        .split(',')
        .map(|c| c.trim().trim_start_matches("commands::"))
        .filter(|c| !c.is_empty())
        .collect();
    let doc = include_str!("../../docs/app-ipc.md");
    let commands_table = doc
        .split("## Commands")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/app-ipc.md has a Commands section");
    let documented = names_between(commands_table, "\n| `", '`');
    // Every script of the page (the command names are only in api.js today).
    let ui_src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui/src");
    let scripts: Vec<String> = std::fs::read_dir(&ui_src)
        .expect("ui/src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "js"))
        .map(|p| std::fs::read_to_string(p).expect("read a script"))
        .collect();
    let ui: BTreeSet<&str> = scripts
        .iter()
        .flat_map(|src| names_between(src, "call(\"", '"'))
        .collect();
    assert!(registered.len() >= 20, "{registered:?}");
    assert_eq!(
        documented, registered,
        "docs/app-ipc.md's Commands table and lib.rs's generate_handler! differ"
    );
    assert_eq!(
        ui, registered,
        "the commands ui/src calls and those lib.rs registers differ"
    );
}
