//! SIGTERM stops `shoal seed` and `shoal get` promptly at any moment of a transfer (issue 7,
//! item 13: the seeder re-created its signal listener on every event and could miss a
//! signal that arrived in between).

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use rand::Rng;
use shoal_e2e::{SignalServer, seed, shoal};

/// How long a process may take to exit after SIGTERM.
const EXIT_BOUND: Duration = Duration::from_secs(2);

/// 48 MiB of pseudo-random bytes: a transfer on loopback takes about a second, so random
/// moments fall in hashing, connecting and transferring.
fn payload(dir: &std::path::Path) -> std::path::PathBuf {
    use rand::{RngCore, SeedableRng};
    let path = dir.join("payload.bin");
    let mut rng = rand::rngs::StdRng::seed_from_u64(48);
    let mut data = vec![0u8; 48 << 20];
    rng.fill_bytes(&mut data);
    std::fs::write(&path, data).unwrap();
    path
}

/// Sends SIGTERM and waits at most [`EXIT_BOUND`]; returns the exit status.
fn terminate_and_time(
    proc: &mut shoal_e2e::Proc,
    what: &str,
    round: usize,
) -> std::process::ExitStatus {
    let sent = Instant::now();
    proc.terminate();
    let status = wait_timeout::ChildExt::wait_timeout(&mut proc.child, EXIT_BOUND)
        .unwrap()
        .unwrap_or_else(|| {
            panic!(
                "round {round}: {what} still running {EXIT_BOUND:?} after SIGTERM; stderr: {:#?}",
                proc.drain_stderr()
            )
        });
    eprintln!(
        "round {round}: {what} exited {status} in {} ms",
        sent.elapsed().as_millis()
    );
    status
}

#[test]
fn sigterm_at_random_moments_of_a_transfer_stops_within_two_seconds() {
    let server = SignalServer::start();
    let dir = tempfile::tempdir().unwrap();
    let file = payload(dir.path());
    let mut rng = rand::rng();
    for round in 0..20 {
        let (mut seeder, hashes) = seed(&server.url, &[&file]);
        let out = tempfile::tempdir().unwrap();
        let mut getter = shoal(
            &server.url,
            &[
                "get",
                &hashes[0],
                "--out",
                &out.path().display().to_string(),
            ],
        );
        // A random moment between the get's start and the end of a typical transfer.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..1500)));
        if round % 2 == 0 {
            let status = terminate_and_time(&mut seeder, "seed", round);
            assert_eq!(
                status.code(),
                Some(0),
                "round {round}: seed ends with success"
            );
        } else {
            let status = terminate_and_time(&mut getter, "get", round);
            // 143 when stopped; 0 when it had already finished; killed by the signal itself
            // only when it came in the first milliseconds, before any handler can exist.
            use std::os::unix::process::ExitStatusExt;
            assert!(
                matches!(status.code(), Some(143) | Some(0)) || status.signal() == Some(15),
                "round {round}: get exited {status}: {:#?}",
                getter.drain_stderr()
            );
        }
    }
}
