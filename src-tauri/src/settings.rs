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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
}

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
        let websocket_url =
            self.server_url.starts_with("ws://") || self.server_url.starts_with("wss://");
        if !self.host && !websocket_url {
            return invalid(format!(
                "The server address must start with ws:// or wss:// (got \"{}\")",
                self.server_url
            ));
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
        if !self.download_dir.is_absolute() {
            return invalid("The download folder must be a full path".into());
        }
        Ok(())
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
    }
}
