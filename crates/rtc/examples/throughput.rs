//! Loopback throughput of one Shoal data channel: two `PeerLink`s in one process, 256 KiB
//! messages, SHA-256 on both ends (the set-up of docs/ARCHITECTURE.md "Measured facts").
//!
//! ```text
//! cargo run --release -p shoal-rtc --example throughput [-- MIB]   # default 512
//! ```
//!
//! Prints connection setup time, MiB/s and the sender's peak outstanding bytes. Judge speed
//! only in release builds.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use rand::RngCore;
use sha2::{Digest, Sha256};
use shoal_rtc::{MAX_MESSAGE_BYTES, OutgoingSignal, PeerLink, RtcConfig};
use tokio::sync::mpsc;
use tokio::time::timeout;

const MIB: usize = 1 << 20;
/// Distinct random data cycled through; slices of it are sent without copying.
const POOL_BYTES: usize = 64 * MIB;

fn forward(mut signals: mpsc::Receiver<OutgoingSignal>, to: Weak<PeerLink>) {
    tokio::spawn(async move {
        while let Some(signal) = signals.recv().await {
            let Some(link) = to.upgrade() else { return };
            if let Err(error) = link.apply_remote(signal.into_signal()).await {
                eprintln!("apply_remote: {error}");
            }
        }
    });
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let total_mib: usize = match std::env::args().nth(1) {
        Some(arg) => arg.parse().context("the argument is the size in MiB")?,
        None => 512,
    };
    let total_bytes = total_mib * MIB;
    ensure!(
        total_bytes.is_multiple_of(MAX_MESSAGE_BYTES),
        "size must be a multiple of 256 KiB"
    );

    let mut pool = vec![0u8; POOL_BYTES.min(total_bytes)];
    rand::rng().fill_bytes(&mut pool);
    let pool = Bytes::from(pool);

    let config = RtcConfig::loopback();
    let setup = Instant::now();
    let (offer_tx, mut offer_rx) = mpsc::channel(64);
    let offerer = Arc::new(PeerLink::offer(&config, "throughput", offer_tx).await?);
    let Some(OutgoingSignal::Offer(sdp)) = offer_rx.recv().await else {
        bail!("no offer");
    };
    let (answer_tx, answer_rx) = mpsc::channel(64);
    let answerer = Arc::new(PeerLink::answer(&config, &sdp, answer_tx).await?);
    forward(offer_rx, Arc::downgrade(&answerer));
    forward(answer_rx, Arc::downgrade(&offerer));
    let open = Duration::from_secs(15);
    let (sender, receiver) = tokio::join!(offerer.channel(open), answerer.channel(open));
    let (sender, receiver) = (sender?, receiver?);
    let setup = setup.elapsed();

    let started = Instant::now();
    let reading = tokio::spawn(async move {
        let mut hasher = Sha256::new();
        let mut received = 0usize;
        while received < total_bytes {
            let message = receiver.recv().await.context("channel ended early")?;
            received += message.len();
            hasher.update(&message);
        }
        anyhow::Ok(hasher.finalize())
    });
    let mut hasher = Sha256::new();
    let mut peak_outstanding = 0usize;
    let mut sent = 0usize;
    while sent < total_bytes {
        let start = sent % pool.len();
        let message = pool.slice(start..start + MAX_MESSAGE_BYTES);
        hasher.update(&message);
        sender.send(message).await?;
        peak_outstanding = peak_outstanding.max(sender.outstanding_bytes().await);
        sent += MAX_MESSAGE_BYTES;
    }
    let received = timeout(Duration::from_secs(600), reading).await???;
    let elapsed = started.elapsed();
    ensure!(received == hasher.finalize(), "SHA-256 mismatch");

    let secs = elapsed.as_secs_f64();
    println!(
        "setup {:.0} ms; {total_mib} MiB in {secs:.2} s = {:.1} MiB/s; SHA-256 ok; peak outstanding {:.1} MiB (high watermark {:.1} MiB); path {:?}",
        setup.as_secs_f64() * 1000.0,
        total_mib as f64 / secs,
        peak_outstanding as f64 / MIB as f64,
        config.high_watermark_bytes as f64 / MIB as f64,
        sender.candidate_type().await,
    );
    offerer.close().await;
    answerer.close().await;
    Ok(())
}
