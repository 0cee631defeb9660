//! A scriptable Shoal peer for tests, over the real signaling protocol and real webrtc: it
//! announces files under any name and serves them, optionally corrupting chosen pieces on the
//! wire (which an honest seeder never does: it checks every piece it reads).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shoal_protocol::{
    Category, ClientToServer, ConnectionId, FileAnnouncement, InfoHash, PROTOCOL_VERSION,
    ServerToClient, Signal,
};
use shoal_rtc::{DataLink, PeerLink, RtcConfig};
use shoal_storage::{Layout, Manifest, sha256};
use shoal_transfer::wire::{WIRE_VERSION, WireMessage, chunk_len};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// One file the test peer offers.
#[derive(Clone, Default)]
pub struct PeerFile {
    /// The name it announces (anything, hostile included).
    pub name: String,
    /// The bytes it serves.
    pub data: Arc<Vec<u8>>,
    /// Pieces it corrupts on the wire (first byte flipped).
    pub corrupt_pieces: Vec<u32>,
    /// Announces this size instead of the real one (index squatting).
    pub announced_size: Option<u64>,
    /// Serves this many pieces, then ignores every request (and keeps the channel open).
    pub stall_after_pieces: Option<u32>,
    /// Appends this many bytes past the end of every piece.
    pub extra_piece_bytes: usize,
    /// Never answers a manifest request.
    pub withhold_manifest: bool,
    /// Sends every chunk after a piece's first at one byte past its true offset.
    pub shift_offsets: bool,
    /// Announces itself as a partial holder (a viewer still downloading) while serving
    /// every piece.
    pub announce_partial: bool,
}

impl PeerFile {
    /// The file's manifest (what an honest node computes).
    pub fn manifest(&self) -> Manifest {
        let layout = Layout::standard(self.data.len() as u64).unwrap();
        let hashes = self
            .data
            .chunks(layout.piece_len() as usize)
            .map(sha256)
            .collect();
        Manifest::new(layout, hashes).unwrap()
    }
}

/// A running test peer; stops when dropped.
pub struct TestPeer {
    task: tokio::task::JoinHandle<()>,
    /// Info hash of each file, in the order given.
    pub info_hashes: Vec<InfoHash>,
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestPeer {
    /// Connects to `url`, announces `files` and serves them until dropped. Returns once the
    /// server confirmed the announcement.
    pub async fn start(url: &str, files: Vec<PeerFile>) -> Self {
        Self::start_with(url, files, true).await
    }

    /// Like [`TestPeer::start`], but the peer never answers an offer: a holder that is online
    /// on the signaling server and unreachable for peer connections.
    pub async fn start_mute(url: &str, files: Vec<PeerFile>) -> Self {
        Self::start_with(url, files, false).await
    }

    async fn start_with(url: &str, files: Vec<PeerFile>, answer: bool) -> Self {
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let send = |m: &ClientToServer| Message::text(serde_json::to_string(m).unwrap());
        ws.send(send(&ClientToServer::Hello {
            version: PROTOCOL_VERSION,
            agent: Some("test-peer".into()),
        }))
        .await
        .unwrap();
        let by_hash: HashMap<InfoHash, (PeerFile, Manifest)> = files
            .iter()
            .map(|f| {
                let m = f.manifest();
                (m.info_hash(), (f.clone(), m))
            })
            .collect();
        let info_hashes: Vec<InfoHash> = files.iter().map(|f| f.manifest().info_hash()).collect();
        let announce = ClientToServer::Announce {
            files: files
                .iter()
                .zip(&info_hashes)
                .map(|(f, h)| FileAnnouncement {
                    info_hash: *h,
                    name: f.name.clone(),
                    size: f.announced_size.unwrap_or(f.data.len() as u64),
                    mime: "video/mp4".into(),
                    category: Category::Video,
                    partial: f.announce_partial,
                })
                .collect(),
            request_id: Some(1),
        };
        ws.send(send(&announce)).await.unwrap();
        // Wait for welcome and announced.
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    match serde_json::from_str::<ServerToClient>(&t).unwrap() {
                        ServerToClient::Announced { .. } => break,
                        ServerToClient::Error { reason, .. } => {
                            panic!("announce refused: {reason}")
                        }
                        _ => {}
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("signaling ended: {other:?}"),
            }
        }
        let task = if answer {
            tokio::spawn(serve(ws, Arc::new(by_hash)))
        } else {
            tokio::spawn(async move {
                let mut ws = ws;
                while let Some(Ok(_)) = ws.next().await {}
            })
        };
        Self { task, info_hashes }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn serve(ws: Ws, files: Arc<HashMap<InfoHash, (PeerFile, Manifest)>>) {
    let (mut sink, mut stream) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<ClientToServer>(256);
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            let text = serde_json::to_string(&m).unwrap();
            if sink.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    });
    let mut connections: HashMap<ConnectionId, mpsc::Sender<Signal>> = HashMap::new();
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let Ok(ServerToClient::Signal {
            from,
            connection_id,
            signal,
        }) = serde_json::from_str(&text)
        else {
            continue;
        };
        if let Some(tx) = connections.get(&connection_id) {
            let _ = tx.try_send(signal);
            continue;
        }
        let Signal::Offer { sdp } = signal else {
            continue;
        };
        let (remote_tx, mut remote_rx) = mpsc::channel(64);
        connections.insert(connection_id, remote_tx);
        let out = out_tx.clone();
        let files = files.clone();
        tokio::spawn(async move {
            let (sig_tx, mut sig_rx) = mpsc::channel::<shoal_rtc::OutgoingSignal>(64);
            tokio::spawn(async move {
                while let Some(s) = sig_rx.recv().await {
                    let m = ClientToServer::Signal {
                        to: from,
                        connection_id,
                        signal: s.into(),
                    };
                    if out.send(m).await.is_err() {
                        break;
                    }
                }
            });
            let Ok(link) = PeerLink::answer(&RtcConfig::loopback(), &sdp, sig_tx).await else {
                return;
            };
            let data = {
                let open = link.channel(Duration::from_secs(20));
                tokio::pin!(open);
                loop {
                    tokio::select! {
                        r = &mut open => break r,
                        Some(s) = remote_rx.recv() => { let _ = link.apply_remote(s).await; }
                    }
                }
            };
            if let Ok(data) = data {
                serve_channel(&data, &files).await;
            }
            link.close().await;
        });
    }
}

async fn serve_channel(data: &DataLink, files: &HashMap<InfoHash, (PeerFile, Manifest)>) {
    let Ok(info_hash) = data.label().parse::<InfoHash>() else {
        return;
    };
    let Some((file, manifest)) = files.get(&info_hash) else {
        return;
    };
    let chunk = chunk_len(data.max_message_size());
    let send = |m: WireMessage<'_>| data.send(m.encode());
    if send(WireMessage::Handshake {
        version: WIRE_VERSION,
        info_hash,
    })
    .await
    .is_err()
    {
        return;
    }
    let full = shoal_storage::Bitfield::full(manifest.layout().piece_count());
    let _ = send(WireMessage::Bitfield(full.as_bytes())).await;
    let manifest_bytes = manifest.to_bytes();
    let mut served = 0u32;
    while let Some(message) = data.recv().await {
        match WireMessage::decode(&message) {
            Ok(WireMessage::ManifestRequest) if file.withhold_manifest => {}
            Ok(WireMessage::Request(_)) if file.stall_after_pieces.is_some_and(|n| served >= n) => {
            }
            Ok(WireMessage::ManifestRequest) => {
                for (i, part) in manifest_bytes.chunks(chunk).enumerate() {
                    let _ = send(WireMessage::ManifestData {
                        total_len: manifest_bytes.len() as u32,
                        offset: (i * chunk) as u32,
                        data: part,
                    })
                    .await;
                }
            }
            Ok(WireMessage::Request(piece)) => {
                let Some(index) = manifest.layout().piece_index(piece) else {
                    return;
                };
                let range = manifest.layout().piece_range(index);
                let mut bytes = file.data[range.start as usize..range.end as usize].to_vec();
                if file.corrupt_pieces.contains(&piece) {
                    bytes[0] ^= 0xff;
                }
                bytes.extend(std::iter::repeat_n(0x5a, file.extra_piece_bytes));
                served += 1;
                for (i, part) in bytes.chunks(chunk).enumerate() {
                    let shift = usize::from(file.shift_offsets && i > 0);
                    let m = WireMessage::Piece {
                        piece,
                        offset: (i * chunk + shift) as u32,
                        data: part,
                    };
                    if data.send(m.encode()).await.is_err() {
                        return;
                    }
                }
            }
            _ => {}
        }
    }
}
