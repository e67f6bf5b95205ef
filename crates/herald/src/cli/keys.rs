//! The hub's JWT keys: given on the command line, or generated once and kept in the data
//! directory so that tokens minted yesterday still work today.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The file, inside the data directory, holding the generated HS256 secret.
pub const KEY_FILE: &str = "jwt.key";

/// Where the keys came from, for the start-up banner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOrigin {
    /// `--jwt-key` / `--publisher-jwt-key` / `--subscriber-jwt-key` (or their env vars).
    Configured,
    /// Read from the data directory, generated at an earlier start.
    Stored(PathBuf),
    /// Generated now and written to the data directory.
    Generated(PathBuf),
    /// Generated now and kept only in memory (`--store memory`).
    Ephemeral,
}

/// Reads the secret kept in `dir`, if there is one.
pub fn read_stored(dir: &Path) -> Result<Option<String>, String> {
    let path = dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim().to_owned();
            if key.is_empty() {
                return Err(format!(
                    "{} is empty; delete it to have a new key generated",
                    path.display()
                ));
            }
            Ok(Some(key))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// A new random secret: 32 random bytes as 64 hex digits (usable as an HS256 secret anywhere).
pub fn generate() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Returns the stored secret of `dir`, generating and storing one (mode 0600) if there is none.
pub fn load_or_create(dir: &Path) -> Result<(String, KeyOrigin), String> {
    if let Some(key) = read_stored(dir)? {
        return Ok((key, KeyOrigin::Stored(dir.join(KEY_FILE))));
    }
    let key = generate();
    let path = dir.join(KEY_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(key.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((key, KeyOrigin::Generated(path)))
}
