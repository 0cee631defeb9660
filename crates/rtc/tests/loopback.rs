//! Real webrtc-rs peer connections over 127.0.0.1, signaled through in-test channels.
//!
//! Properties asserted:
//! - the data channel opens on both sides with the offerer's label, a negotiated max message
//!   size of 262 144 bytes on both, over a host candidate pair;
//! - 262 144-byte messages go both ways; a 262 145-byte send fails with `MessageTooLarge`;
//! - 64 MiB sent as 256 KiB messages arrive complete and in order (SHA-256), and the sender
//!   never has more than high watermark + one message outstanding;
//! - closing either side ends the other side's `recv()` with `None` within the ICE timeouts,
//!   and so does dropping every handle of one side;
//! - signals that do not fit the role, malformed SDP and candidates are errors, not panics;
//! - `channel()` times out when no answer comes;
//! - against a peer whose SDP says nothing about max-message-size (RFC 8841 §6: assume
//!   65 536), both sides negotiate 65 536 and 64 KiB messages still work.
//!
//! No fixed ports (every socket binds 127.0.0.1:0) and no sleeps: every wait is bounded by a
//! timeout.

use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use rand::RngCore;
use sha2::{Digest, Sha256};
use shoal_protocol::{IceCandidateInit, Signal};
use shoal_rtc::{
    CandidateType, DataLink, MAX_MESSAGE_BYTES, OutgoingSignal, PeerLink, RtcConfig, RtcError,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
const LABEL: &str = "shoal-test";

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Forwards every signal from `signals` into `to.apply_remote`, until the channel closes or
/// `to` is gone. Holds `to` weakly so it does not keep the link alive.
fn forward(mut signals: mpsc::Receiver<OutgoingSignal>, to: Weak<PeerLink>) {
    tokio::spawn(async move {
        while let Some(signal) = signals.recv().await {
            let Some(link) = to.upgrade() else { return };
            if let Err(error) = link.apply_remote(signal.into_signal()).await {
                panic!("apply_remote failed: {error}");
            }
        }
    });
}

/// Two links wired together: (offerer, answerer).
async fn connect(config: &RtcConfig) -> anyhow::Result<(Arc<PeerLink>, Arc<PeerLink>)> {
    let (offer_tx, mut offer_rx) = mpsc::channel(64);
    let offerer = Arc::new(PeerLink::offer(config, LABEL, offer_tx).await?);
    let Some(OutgoingSignal::Offer(sdp)) = timeout(OPEN_TIMEOUT, offer_rx.recv()).await? else {
        bail!("the offerer's first signal is not an offer");
    };
    let (answer_tx, answer_rx) = mpsc::channel(64);
    let answerer = Arc::new(PeerLink::answer(config, &sdp, answer_tx).await?);
    forward(offer_rx, Arc::downgrade(&answerer));
    forward(answer_rx, Arc::downgrade(&offerer));
    Ok((offerer, answerer))
}

async fn open_channels(
    offerer: &PeerLink,
    answerer: &PeerLink,
) -> anyhow::Result<(DataLink, DataLink)> {
    let (a, b) = tokio::join!(
        offerer.channel(OPEN_TIMEOUT),
        answerer.channel(OPEN_TIMEOUT)
    );
    Ok((
        a.context("offerer channel")?,
        b.context("answerer channel")?,
    ))
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rng().fill_bytes(&mut data);
    data
}

/// Removes `a=max-message-size` from an SDP, as a peer that does not implement RFC 8841 sends.
fn without_max_message_size(sdp: &str) -> String {
    sdp.split_inclusive("\r\n")
        .filter(|line| !line.starts_with("a=max-message-size"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_does_not_say_its_max_message_size_gets_64_kib() -> anyhow::Result<()> {
    init_tracing();
    let config = RtcConfig::loopback();
    let (offer_tx, mut offer_rx) = mpsc::channel(64);
    let offerer = Arc::new(PeerLink::offer(&config, LABEL, offer_tx).await?);
    let Some(OutgoingSignal::Offer(sdp)) = timeout(OPEN_TIMEOUT, offer_rx.recv()).await? else {
        bail!("the offerer's first signal is not an offer");
    };
    ensure!(
        sdp.contains("a=max-message-size:262144"),
        "we advertise 256 KiB"
    );
    let (answer_tx, mut answer_rx) = mpsc::channel(64);
    let answerer =
        Arc::new(PeerLink::answer(&config, &without_max_message_size(&sdp), answer_tx).await?);
    forward(offer_rx, Arc::downgrade(&answerer));
    // The answer loses the attribute too; candidates pass unchanged.
    let to_offerer = Arc::downgrade(&offerer);
    tokio::spawn(async move {
        while let Some(signal) = answer_rx.recv().await {
            let signal = match signal {
                OutgoingSignal::Answer(sdp) => Signal::Answer {
                    sdp: without_max_message_size(&sdp),
                },
                other => other.into_signal(),
            };
            let Some(link) = to_offerer.upgrade() else {
                return;
            };
            if let Err(error) = link.apply_remote(signal).await {
                panic!("apply_remote failed: {error}");
            }
        }
    });
    let (left, right) = open_channels(&offerer, &answerer).await?;
    assert_eq!(left.max_message_size(), 65_536);
    assert_eq!(right.max_message_size(), 65_536);
    for (from, to) in [(&left, &right), (&right, &left)] {
        let message = Bytes::from(random_bytes(65_536));
        from.send(message.clone()).await?;
        let got = timeout(OPEN_TIMEOUT, to.recv())
            .await?
            .context("channel ended")?;
        assert!(got == message, "message changed in transit");
        match from.send(Bytes::from(vec![1u8; 65_537])).await {
            Err(RtcError::MessageTooLarge {
                max_bytes: 65_536, ..
            }) => {}
            other => bail!("expected MessageTooLarge, got {other:?}"),
        }
    }
    offerer.close().await;
    answerer.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_opens_and_carries_max_size_messages_both_ways() -> anyhow::Result<()> {
    init_tracing();
    let (offerer, answerer) = connect(&RtcConfig::loopback()).await?;
    let (left, right) = open_channels(&offerer, &answerer).await?;

    assert_eq!(left.label(), LABEL);
    assert_eq!(right.label(), LABEL);
    assert_eq!(left.max_message_size(), MAX_MESSAGE_BYTES);
    assert_eq!(right.max_message_size(), 262_144);
    assert_eq!(left.candidate_type().await, CandidateType::Host);
    assert_eq!(right.candidate_type().await, CandidateType::Host);

    for (from, to) in [(&left, &right), (&right, &left)] {
        let message = Bytes::from(random_bytes(MAX_MESSAGE_BYTES));
        from.send(message.clone()).await?;
        let got = timeout(OPEN_TIMEOUT, to.recv())
            .await?
            .context("channel ended")?;
        assert_eq!(got.len(), MAX_MESSAGE_BYTES);
        assert!(got == message, "message changed in transit");

        let too_large = Bytes::from(vec![7u8; MAX_MESSAGE_BYTES + 1]);
        match from.send(too_large).await {
            Err(RtcError::MessageTooLarge {
                len_bytes: 262_145,
                max_bytes: 262_144,
            }) => {}
            other => bail!("expected MessageTooLarge, got {other:?}"),
        }
    }
    // An empty message (RFC 8831 §6.6 "WebRTC Binary Empty") arrives as an empty message.
    left.send(Bytes::new()).await?;
    let got = timeout(OPEN_TIMEOUT, right.recv())
        .await?
        .context("channel ended")?;
    assert!(
        got.is_empty(),
        "empty message arrived as {} bytes",
        got.len()
    );
    // The refused messages were not sent: the next message received is the next one sent.
    left.send(Bytes::from_static(b"after")).await?;
    let got = timeout(OPEN_TIMEOUT, right.recv())
        .await?
        .context("channel ended")?;
    assert_eq!(&got[..], b"after");

    offerer.close().await;
    answerer.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_arrive_in_order_and_the_sender_stays_under_the_watermark()
-> anyhow::Result<()> {
    init_tracing();
    const TOTAL_BYTES: usize = 64 << 20;
    let config = RtcConfig::loopback();
    let high = config.high_watermark_bytes;
    let low = config.low_watermark_bytes;
    let (offerer, answerer) = connect(&config).await?;
    let (left, right) = open_channels(&offerer, &answerer).await?;

    let data = Bytes::from(random_bytes(TOTAL_BYTES));
    let expected = Sha256::digest(&data);

    let receiver = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut received = 0usize;
        while received < TOTAL_BYTES {
            let Some(message) = right.recv().await else {
                bail!("channel ended after {received} bytes");
            };
            ensure!(
                message.len() == MAX_MESSAGE_BYTES,
                "message of {} bytes",
                message.len()
            );
            received += message.len();
            hasher.update(&message);
        }
        Ok(hasher.finalize())
    });

    let sender = async {
        let mut max_outstanding = 0usize;
        for piece in 0..TOTAL_BYTES / MAX_MESSAGE_BYTES {
            let start = piece * MAX_MESSAGE_BYTES;
            left.send(data.slice(start..start + MAX_MESSAGE_BYTES))
                .await?;
            // Outstanding bytes only grow by sends, so the peak is right after one.
            let outstanding = left.outstanding_bytes().await;
            ensure!(
                outstanding <= high + MAX_MESSAGE_BYTES,
                "{outstanding} bytes outstanding after piece {piece}; limit {}",
                high + MAX_MESSAGE_BYTES
            );
            max_outstanding = max_outstanding.max(outstanding);
        }
        anyhow::Ok(max_outstanding)
    };
    let max_outstanding = timeout(Duration::from_secs(120), sender).await??;
    let digest = timeout(Duration::from_secs(120), receiver).await???;
    assert_eq!(digest, expected, "SHA-256 of received data differs");
    // The sender outran the network, so the pause was exercised, not just the fast path.
    assert!(
        max_outstanding > low,
        "outstanding peaked at {max_outstanding}; backpressure never engaged"
    );

    offerer.close().await;
    answerer.close().await;
    Ok(())
}

/// Bound for noticing the remote's close: the ICE timeouts plus a margin.
fn end_bound(config: &RtcConfig) -> Duration {
    config.ice_disconnected_timeout + config.ice_failed_timeout + Duration::from_secs(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_either_side_ends_the_other_sides_recv() -> anyhow::Result<()> {
    init_tracing();
    let config = RtcConfig::loopback();
    for offerer_closes in [true, false] {
        let (offerer, answerer) = connect(&config).await?;
        let (left, right) = open_channels(&offerer, &answerer).await?;
        let (closer, closer_data, other_data) = if offerer_closes {
            (&offerer, &left, &right)
        } else {
            (&answerer, &right, &left)
        };
        // A message sent before the close is still delivered first.
        closer_data.send(Bytes::from_static(b"last words")).await?;
        let got = timeout(OPEN_TIMEOUT, other_data.recv()).await?;
        assert_eq!(got.as_deref(), Some(&b"last words"[..]));

        closer.close().await;
        assert_eq!(timeout(end_bound(&config), other_data.recv()).await?, None);
        assert_eq!(timeout(OPEN_TIMEOUT, closer_data.recv()).await?, None);
        assert!(matches!(
            closer_data.send(Bytes::from_static(b"x")).await,
            Err(RtcError::Closed)
        ));
        assert!(matches!(
            other_data.send(Bytes::from_static(b"x")).await,
            Err(RtcError::Closed)
        ));
        assert!(matches!(
            closer.channel(OPEN_TIMEOUT).await,
            Err(RtcError::Closed)
        ));
        offerer.close().await;
        answerer.close().await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_of_one_side_closes_it() -> anyhow::Result<()> {
    init_tracing();
    let config = RtcConfig::loopback();
    let (offerer, answerer) = connect(&config).await?;
    let (left, right) = open_channels(&offerer, &answerer).await?;
    drop(offerer);
    // The DataLink alone keeps the connection up.
    left.send(Bytes::from_static(b"still here")).await?;
    let got = timeout(OPEN_TIMEOUT, right.recv()).await?;
    assert_eq!(got.as_deref(), Some(&b"still here"[..]));
    drop(left);
    assert_eq!(timeout(end_bound(&config), right.recv()).await?, None);
    answerer.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_that_do_not_fit_are_refused_without_panicking() -> anyhow::Result<()> {
    init_tracing();
    let config = RtcConfig::loopback();

    // Malformed offers.
    for sdp in [
        "",
        "not sdp at all",
        "v=0\r\no=- 0 0 IN IP4 0\r\n\u{0}\u{ffff}",
    ] {
        let (tx, _rx) = mpsc::channel(8);
        assert!(
            matches!(
                PeerLink::answer(&config, sdp, tx).await,
                Err(RtcError::InvalidSdp(_))
            ),
            "offer {sdp:?} accepted"
        );
    }

    let (offer_tx, mut offer_rx) = mpsc::channel(64);
    let offerer = PeerLink::offer(&config, LABEL, offer_tx).await?;
    let Some(OutgoingSignal::Offer(sdp)) = timeout(OPEN_TIMEOUT, offer_rx.recv()).await? else {
        bail!("no offer");
    };
    let (answer_tx, mut answer_rx) = mpsc::channel(64);
    let answerer = PeerLink::answer(&config, &sdp, answer_tx).await?;
    let Some(OutgoingSignal::Answer(answer_sdp)) = timeout(OPEN_TIMEOUT, answer_rx.recv()).await?
    else {
        bail!("no answer");
    };

    let offer = || Signal::Offer { sdp: sdp.clone() };
    let answer = || Signal::Answer {
        sdp: answer_sdp.clone(),
    };
    let candidate = |text: &str| Signal::IceCandidate {
        candidate: IceCandidateInit {
            candidate: text.into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        },
    };

    assert!(matches!(
        answerer.apply_remote(answer()).await,
        Err(RtcError::UnexpectedSignal {
            signal: "answer",
            ..
        })
    ));
    // An offer reaches an answerer again only as an ICE restart; the offerer takes none.
    assert!(matches!(
        offerer.apply_remote(offer()).await,
        Err(RtcError::UnexpectedSignal {
            signal: "offer",
            ..
        })
    ));
    assert!(matches!(
        offerer
            .apply_remote(Signal::Answer {
                sdp: "garbage".into()
            })
            .await,
        Err(RtcError::InvalidSdp(_))
    ));
    // Before the answer, candidates are kept (even malformed ones are only checked later).
    offerer.apply_remote(candidate("candidate:garbage")).await?;
    offerer.apply_remote(answer()).await?;
    assert!(matches!(
        offerer.apply_remote(answer()).await,
        Err(RtcError::UnexpectedSignal {
            signal: "answer",
            ..
        })
    ));
    for bad in [
        "candidate:garbage",
        "candidate:1 1 udp notanumber 127.0.0.1 9 typ host",
        "candidate:1 1 udp 1 999.0.0.1 9 typ host",
        "candidate:1 1 udp 1 127.0.0.1 99999 typ host",
        "\u{0}\u{ffff}",
    ] {
        assert!(
            matches!(
                answerer.apply_remote(candidate(bad)).await,
                Err(RtcError::InvalidCandidate(_))
            ),
            "candidate {bad:?} accepted"
        );
    }
    // End of candidates (RFC 8838) is accepted.
    answerer.apply_remote(candidate("")).await?;

    // The early candidate queue is bounded.
    let (tx, _rx) = mpsc::channel(8);
    let lonely = PeerLink::offer(&config, LABEL, tx).await?;
    let mut refused = false;
    for _ in 0..65 {
        if let Err(error) = lonely.apply_remote(candidate("candidate:x")).await {
            assert!(matches!(
                error,
                RtcError::TooManyEarlyCandidates { limit: 64 }
            ));
            refused = true;
        }
    }
    assert!(refused, "65 early candidates accepted");

    lonely.close().await;
    offerer.close().await;
    answerer.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_times_out_without_an_answer() -> anyhow::Result<()> {
    init_tracing();
    let (tx, _rx) = mpsc::channel(8);
    let offerer = PeerLink::offer(&RtcConfig::loopback(), LABEL, tx).await?;
    match offerer.channel(Duration::from_millis(300)).await {
        Err(RtcError::Timeout { timeout_ms: 300 }) => {}
        other => bail!("expected a timeout, got {other:?}"),
    }
    offerer.close().await;
    assert!(matches!(
        offerer.channel(OPEN_TIMEOUT).await,
        Err(RtcError::Closed)
    ));
    Ok(())
}

/// Short ICE timeouts so that failure tests finish quickly.
fn impatient() -> RtcConfig {
    RtcConfig {
        ice_disconnected_timeout: Duration::from_millis(500),
        ice_failed_timeout: Duration::from_secs(1),
        ..RtcConfig::loopback()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_reports_failure_when_ice_never_connects() -> anyhow::Result<()> {
    init_tracing();
    let config = impatient();
    // SDP goes across, candidates do not: ICE checks nothing and fails after the timeouts.
    let (offer_tx, mut offer_rx) = mpsc::channel(64);
    let offerer = PeerLink::offer(&config, LABEL, offer_tx).await?;
    let Some(OutgoingSignal::Offer(sdp)) = timeout(OPEN_TIMEOUT, offer_rx.recv()).await? else {
        bail!("no offer");
    };
    let (answer_tx, mut answer_rx) = mpsc::channel(64);
    let answerer = PeerLink::answer(&config, &sdp, answer_tx).await?;
    let Some(OutgoingSignal::Answer(answer_sdp)) = timeout(OPEN_TIMEOUT, answer_rx.recv()).await?
    else {
        bail!("no answer");
    };
    offerer
        .apply_remote(Signal::Answer { sdp: answer_sdp })
        .await?;
    match offerer.channel(end_bound(&config)).await {
        Err(RtcError::ConnectionFailed) => {}
        other => bail!("expected ConnectionFailed, got {other:?}"),
    }
    offerer.close().await;
    answerer.close().await;
    Ok(())
}

/// A UDP relay on 127.0.0.1 between one client and `target`; aborting the task silences the
/// path in both directions without any close message, as a vanished peer would.
async fn udp_relay(
    target: std::net::SocketAddr,
) -> anyhow::Result<(u16, tokio::task::JoinHandle<()>)> {
    let front = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let back = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let port = front.local_addr()?.port();
    let task = tokio::spawn(async move {
        let mut client = None;
        let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
        loop {
            tokio::select! {
                Ok((len, from)) = front.recv_from(&mut up) => {
                    client = Some(from);
                    let _ = back.send_to(&up[..len], target).await;
                }
                Ok((len, _)) = back.recv_from(&mut down) => {
                    if let Some(client) = client {
                        let _ = front.send_to(&down[..len], client).await;
                    }
                }
            }
        }
    });
    Ok((port, task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_peer_ends_recv_after_the_ice_timeouts() -> anyhow::Result<()> {
    init_tracing();
    let config = impatient();
    let (offer_tx, mut offer_rx) = mpsc::channel(64);
    let offerer = Arc::new(PeerLink::offer(&config, LABEL, offer_tx).await?);
    let Some(OutgoingSignal::Offer(sdp)) = timeout(OPEN_TIMEOUT, offer_rx.recv()).await? else {
        bail!("no offer");
    };
    let (answer_tx, mut answer_rx) = mpsc::channel(64);
    let answerer = Arc::new(PeerLink::answer(&config, &sdp, answer_tx).await?);

    // Offerer → answerer: the answer learns the offerer only from its checks (via the relay).
    let to_answerer = Arc::downgrade(&answerer);
    tokio::spawn(async move {
        while let Some(signal) = offer_rx.recv().await {
            if matches!(&signal, OutgoingSignal::IceCandidate(c) if !c.candidate.is_empty()) {
                continue;
            }
            let Some(link) = to_answerer.upgrade() else {
                return;
            };
            let _ = link.apply_remote(signal.into_signal()).await;
        }
    });
    // Answerer → offerer: host candidates are rewritten to point at a relay.
    let (relay_tx, mut relay_rx) = mpsc::channel(4);
    let to_offerer = Arc::downgrade(&offerer);
    tokio::spawn(async move {
        while let Some(signal) = answer_rx.recv().await {
            let signal = match signal {
                OutgoingSignal::IceCandidate(mut c) if !c.candidate.is_empty() => {
                    let mut fields: Vec<String> =
                        c.candidate.split_whitespace().map(str::to_owned).collect();
                    let Ok(target) = format!("{}:{}", fields[4], fields[5]).parse() else {
                        continue;
                    };
                    let Ok((port, relay)) = udp_relay(target).await else {
                        return;
                    };
                    fields[5] = port.to_string();
                    c.candidate = fields.join(" ");
                    let _ = relay_tx.send(relay).await;
                    OutgoingSignal::IceCandidate(c)
                }
                other => other,
            };
            let Some(link) = to_offerer.upgrade() else {
                return;
            };
            let _ = link.apply_remote(signal.into_signal()).await;
        }
    });

    let (left, right) = open_channels(&offerer, &answerer).await?;
    let relay = timeout(OPEN_TIMEOUT, relay_rx.recv())
        .await?
        .context("no relay started")?;
    left.send(Bytes::from_static(b"via relay")).await?;
    let got = timeout(OPEN_TIMEOUT, right.recv()).await?;
    assert_eq!(got.as_deref(), Some(&b"via relay"[..]));

    relay.abort();
    let started = tokio::time::Instant::now();
    let (l, r) = tokio::join!(
        timeout(end_bound(&config), left.recv()),
        timeout(end_bound(&config), right.recv())
    );
    assert_eq!(l?, None);
    assert_eq!(r?, None);
    // Not before the disconnected timeout: a silent second is not yet a vanished peer.
    assert!(started.elapsed() >= config.ice_disconnected_timeout);
    assert!(matches!(
        left.send(Bytes::from_static(b"x")).await,
        Err(RtcError::Closed)
    ));
    offerer.close().await;
    answerer.close().await;
    Ok(())
}
