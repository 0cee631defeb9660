//! The app's settings: a JSON file in the OS config folder, saved atomically.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A TURN server with its credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TurnServer {
    /// `turn:host:port` (UDP).
    pub url: String,
    /// User name.
    #[serde(default)]
    pub username: String,
    /// Password.
    #[serde(default)]
    pub credential: String,
}

/// What the user can set (docs/app-ipc.md `Settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    /// Signaling server used when not hosting.
    pub server_url: String,
    /// Host the bundled signaling server in the app.
    pub host: bool,
    /// TCP port of the hosted server; 0 picks a free one.
    pub host_port: u16,
    /// STUN server URLs.
    pub stun_servers: Vec<String>,
    /// TURN servers.
    pub turn_servers: Vec<TurnServer>,
    /// Where downloads go.
    pub download_dir: PathBuf,
    /// Resume unfinished downloads when the app starts (and when their sharer comes back).
    pub resume_downloads: bool,
    /// Keep sharing a finished download (it joins My shares and serves other viewers).
    pub share_downloads: bool,
    /// Most MiB/s sent to peers over all transfers; `None` is no limit.
    #[serde(rename = "maxUploadMiBps")]
    pub max_upload_mibps: Option<f64>,
    /// Most MiB/s taken from peers over all transfers; `None` is no limit.
    #[serde(rename = "maxDownloadMiBps")]
    pub max_download_mibps: Option<f64>,
    /// The name room members see (issue 11); at most 64 bytes. Default: the user's login
    /// name.
    pub display_name: String,
}

/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;
/// The highest limit accepted, in MiB/s (far above what a data channel moves).
const MAX_LIMIT_MIBPS: f64 = 100_000.0;

impl Default for Settings {
    fn default() -> Self {
        let download_dir = directories::UserDirs::new()
            .and_then(|u| u.download_dir().map(Path::to_owned))
            .or_else(|| directories::BaseDirs::new().map(|b| b.home_dir().join("Downloads")))
            .unwrap_or_else(|| PathBuf::from("Downloads"))
            .join("Shoal");
        Self {
            server_url: "ws://127.0.0.1:7878".into(),
            host: true,
            host_port: 7878,
            stun_servers: Vec::new(),
            turn_servers: Vec::new(),
            download_dir,
            resume_downloads: true,
            share_downloads: true,
            max_upload_mibps: None,
            max_download_mibps: None,
            display_name: std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty() && u.len() <= shoal_node::MAX_MEMBER_NAME_BYTES)
                .unwrap_or_else(|| "Shoal user".into()),
        }
    }
}

/// Why settings were refused or could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value is not acceptable; the sentence says which and why.
    #[error("{0}")]
    Invalid(String),
    /// The file could not be written.
    #[error("cannot save settings in {path}: {source}")]
    Save {
        /// The folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl Settings {
    /// Checks what a user typed.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |m: String| Err(SettingsError::Invalid(m));
        if !self.host {
            check_server_url(&self.server_url).map_err(SettingsError::Invalid)?;
        }
        if let Some(bad) = self.stun_servers.iter().find(|u| !u.starts_with("stun:")) {
            return invalid(format!("STUN servers start with stun: (got \"{bad}\")"));
        }
        if let Some(bad) = self
            .turn_servers
            .iter()
            .find(|t| !t.url.starts_with("turn:"))
        {
            return invalid(format!(
                "TURN servers start with turn: (got \"{}\"); only UDP TURN is supported",
                bad.url
            ));
        }
        for server in self.ice_servers() {
            shoal_node::check_ice_server(&server).map_err(SettingsError::Invalid)?;
        }
        if self.display_name.len() > shoal_node::MAX_MEMBER_NAME_BYTES {
            return invalid(format!(
                "The name is at most {} bytes",
                shoal_node::MAX_MEMBER_NAME_BYTES
            ));
        }
        if !self.download_dir.is_absolute() {
            return invalid("The download folder must be a full path".into());
        }
        for (what, limit) in [
            ("upload", self.max_upload_mibps),
            ("download", self.max_download_mibps),
        ] {
            if let Some(mibps) = limit
                && !(0.01..=MAX_LIMIT_MIBPS).contains(&mibps)
            {
                return invalid(format!(
                    "The {what} limit must be from 0.01 to {MAX_LIMIT_MIBPS} MiB/s (got {mibps}); leave it empty for no limit"
                ));
            }
        }
        Ok(())
    }

    /// The node's limits from these settings (MiB/s to bytes per second).
    pub fn transfer_limits(&self) -> shoal_node::TransferLimits {
        let bytes = |mibps: Option<f64>| mibps.map(|m| (m * MIB).round() as u64);
        shoal_node::TransferLimits {
            max_upload_bytes_per_sec: bytes(self.max_upload_mibps),
            max_download_bytes_per_sec: bytes(self.max_download_mibps),
            share_completed: self.share_downloads,
        }
    }

    /// The STUN and TURN servers as the node takes them.
    pub fn ice_servers(&self) -> Vec<shoal_node::IceServer> {
        let stun = self.stun_servers.iter().map(|url| shoal_node::IceServer {
            urls: vec![url.clone()],
            username: None,
            credential: None,
        });
        let turn = self.turn_servers.iter().map(|t| shoal_node::IceServer {
            urls: vec![t.url.clone()],
            username: Some(t.username.clone()).filter(|u| !u.is_empty()),
            credential: Some(t.credential.clone()).filter(|c| !c.is_empty()),
        });
        stun.chain(turn).collect()
    }

    /// Checks that downloads can be written to the download folder: creates it when missing
    /// and writes (then removes) an empty file in it. Blocking file-system work.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] saying why the folder cannot be used.
    pub fn check_download_dir(&self) -> Result<(), SettingsError> {
        let dir = &self.download_dir;
        let unusable = |why: String| {
            Err(SettingsError::Invalid(format!(
                "Downloads cannot be saved in {}: {why}",
                dir.display()
            )))
        };
        if dir.exists() && !dir.is_dir() {
            return unusable("it is a file, not a folder".into());
        }
        if let Err(e) = std::fs::create_dir_all(dir) {
            return unusable(format!("the folder cannot be created ({})", io_words(&e)));
        }
        match tempfile::NamedTempFile::new_in(dir) {
            Ok(probe) => {
                let _ = probe.close();
                Ok(())
            }
            Err(e) => unusable(format!("nothing can be written there ({})", io_words(&e))),
        }
    }

    /// The file inside the config folder.
    fn file(config_dir: &Path) -> PathBuf {
        config_dir.join("settings.json")
    }

    /// Loads settings; a missing file gives the defaults, an unreadable one the defaults too
    /// (and the file is kept aside as `settings.json.bad`).
    pub fn load(config_dir: &Path) -> Self {
        let path = Self::file(config_dir);
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(settings) => settings,
                Err(e) => {
                    tracing::warn!(error = %e, path = %path.display(), "settings unreadable; using defaults");
                    let _ = std::fs::rename(&path, path.with_extension("json.bad"));
                    Self::default()
                }
            },
            Err(_) => Self::default(),
        }
    }

    /// Saves atomically: a temporary file in the same folder, fsync, rename.
    ///
    /// # Errors
    /// [`SettingsError::Save`].
    pub fn save(&self, config_dir: &Path) -> Result<(), SettingsError> {
        crate::library::save_json(config_dir, "settings.json", self).map_err(|source| {
            SettingsError::Save {
                path: config_dir.to_owned(),
                source,
            }
        })
    }
}

/// Checks a signaling server address: `ws://` or `wss://`, a host, nothing a WebSocket
/// handshake cannot use (RFC 6455 §3).
fn check_server_url(text: &str) -> Result<(), String> {
    const NO_HOST: &str = "names no computer, like ws://192.168.1.20:7878";
    let got = |why: &str| Err(format!("The server address {why} (got \"{text}\")"));
    if !(text.starts_with("ws://") || text.starts_with("wss://")) {
        return got("must start with ws:// or wss://");
    }
    let url = match url::Url::parse(text) {
        Ok(url) => url,
        Err(url::ParseError::EmptyHost) => return got(NO_HOST),
        Err(e) => return got(&format!("is not a valid address: {e}")),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return got(NO_HOST);
    }
    if url.port() == Some(0) {
        return got("cannot use port 0");
    }
    if url.fragment().is_some() {
        return got("cannot have a #fragment");
    }
    Ok(())
}

/// An I/O error in words: the kind a user can act on, else the system's text.
fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::PermissionDenied => "you are not allowed to write there".into(),
        ErrorKind::ReadOnlyFilesystem => "the disk is read-only".into(),
        ErrorKind::StorageFull => "the disk is full".into(),
        ErrorKind::NotADirectory => "part of the path is a file, not a folder".into(),
        _ => e.to_string(),
    }
}

/// Where the app keeps its files.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// `settings.json` (`~/.config/shoal` on Linux).
    pub config: PathBuf,
    /// `shares.json` and `transfers.json` (`~/.local/share/shoal`).
    pub data: PathBuf,
    /// Remembered manifests, `hash-cache/` (`~/.cache/shoal`); safe to delete.
    pub cache: PathBuf,
}

/// The OS folders, or all in `$SHOAL_CONFIG_DIR` (cache in its `cache/`) when that is set.
pub fn dirs() -> Dirs {
    if let Some(dir) = std::env::var_os("SHOAL_CONFIG_DIR") {
        let dir = PathBuf::from(dir);
        return Dirs {
            cache: dir.join("cache"),
            data: dir.clone(),
            config: dir,
        };
    }
    match directories::ProjectDirs::from("org", "shoal", "shoal") {
        Some(p) => Dirs {
            config: p.config_dir().to_owned(),
            data: p.data_local_dir().to_owned(),
            cache: p.cache_dir().to_owned(),
        },
        None => Dirs {
            config: PathBuf::from(".shoal"),
            data: PathBuf::from(".shoal"),
            cache: PathBuf::from(".shoal/cache"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(Settings::load(dir.path()), Settings::default());
        let settings = Settings {
            server_url: "ws://10.0.0.2:7878".into(),
            host: false,
            stun_servers: vec!["stun:stun.example.org:3478".into()],
            ..Settings::default()
        };
        settings.save(dir.path()).expect("save");
        assert_eq!(Settings::load(dir.path()), settings);
        let files: Vec<_> = std::fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(files.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_corrupt_file_falls_back_to_defaults_and_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("settings.json"), b"{not json").expect("write");
        assert_eq!(Settings::load(dir.path()), Settings::default());
        assert!(dir.path().join("settings.json.bad").exists());
    }

    #[test]
    fn validation_names_the_field() {
        let bad = Settings {
            host: false,
            server_url: "http://x".into(),
            ..Settings::default()
        };
        assert!(
            bad.validate()
                .is_err_and(|e| e.to_string().contains("ws://"))
        );
        let bad = Settings {
            stun_servers: vec!["stun.example.org".into()],
            ..Settings::default()
        };
        assert!(
            bad.validate()
                .is_err_and(|e| e.to_string().contains("stun:"))
        );
        assert!(Settings::default().validate().is_ok());
        for (upload, download) in [
            (Some(0.0), None),
            (None, Some(-1.0)),
            (Some(f64::NAN), None),
        ] {
            let bad = Settings {
                max_upload_mibps: upload,
                max_download_mibps: download,
                ..Settings::default()
            };
            assert!(
                bad.validate()
                    .is_err_and(|e| e.to_string().contains("limit must be from 0.01")),
                "{upload:?} {download:?}"
            );
        }
        let capped = Settings {
            max_upload_mibps: Some(0.5),
            max_download_mibps: Some(8.0),
            share_downloads: false,
            ..Settings::default()
        };
        assert!(capped.validate().is_ok());
        let limits = capped.transfer_limits();
        assert_eq!(limits.max_upload_bytes_per_sec, Some(524_288));
        assert_eq!(limits.max_download_bytes_per_sec, Some(8 << 20));
        assert!(!limits.share_completed);
    }

    #[test]
    fn settings_from_before_the_limits_load_with_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("settings.json"),
            br#"{"serverUrl":"ws://10.0.0.2:7878","host":false,"resumeDownloads":false}"#,
        )
        .expect("write");
        let loaded = Settings::load(dir.path());
        assert!(!loaded.resume_downloads);
        assert!(loaded.share_downloads);
        assert_eq!(loaded.max_upload_mibps, None);
        assert_eq!(loaded.max_download_mibps, None);
    }

    #[test]
    fn unusable_values_are_refused_in_words() {
        let said = |settings: Settings| settings.validate().expect_err("refused").to_string();
        let client = |url: &str| Settings {
            host: false,
            server_url: url.into(),
            ..Settings::default()
        };
        assert!(said(client("ws://")).contains("names no computer"));
        assert!(said(client("ws://a b:7878")).contains("not a valid address"));
        assert!(said(client("ws://10.0.0.2:99999")).contains("not a valid address"));
        assert!(said(client("ws://10.0.0.2:0")).contains("port 0"));
        assert!(client("wss://shoal.example.org/signal").validate().is_ok());
        let turn = Settings {
            turn_servers: vec![TurnServer {
                url: "turn:10.0.0.1:3478".into(),
                username: "user".into(),
                credential: String::new(),
            }],
            ..Settings::default()
        };
        assert_eq!(
            said(turn),
            "The TURN server “turn:10.0.0.1:3478” needs a user name and a credential"
        );
        let stun = Settings {
            stun_servers: vec!["stun:".into()],
            ..Settings::default()
        };
        assert!(said(stun).contains("“stun:”"));
    }

    #[test]
    fn a_download_folder_that_is_a_file_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        let settings = |download_dir: PathBuf| Settings {
            download_dir,
            ..Settings::default()
        };
        let e = settings(file.clone())
            .check_download_dir()
            .expect_err("a file");
        assert!(e.to_string().contains("it is a file, not a folder"), "{e}");
        let e = settings(file.join("below"))
            .check_download_dir()
            .expect_err("below a file");
        assert!(e.to_string().contains("cannot be created"), "{e}");
        let fresh = dir.path().join("new").join("downloads");
        settings(fresh.clone())
            .check_download_dir()
            .expect("created");
        assert!(fresh.is_dir());
        assert_eq!(
            std::fs::read_dir(&fresh).expect("list").count(),
            0,
            "no probe left"
        );
    }
}
