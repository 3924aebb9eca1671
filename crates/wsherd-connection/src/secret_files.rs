//! Secrets kept in files (`{ file = "…" }` in the config), read again when a file changed.
//!
//! A token file is rewritten by whoever rotates it (an agent, a Kubernetes secret); every
//! attempt therefore looks at each file (one `stat`) and reads it again only when its
//! modification time, length or inode changed. Looking at files can block, so it runs on the
//! blocking pool, never on an arbiter. Contents are never part of an error: only the path is.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, PoisonError};

use crate::tls_cache::Stamp;

/// Which value of a [`ConnectionConfig`](crate::ConnectionConfig) a secret file holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SecretSlot {
    /// The URL.
    Url,
    /// The value of the header at this index of `headers`.
    Header(usize),
}

/// A value that comes from a file: read again before every attempt when the file changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileSecret {
    /// Where the value goes.
    pub slot: SecretSlot,
    /// The file (relative paths from the working directory).
    pub path: PathBuf,
}

/// One entry per file a config ever named: bounded by the configuration, not by peers.
static CACHE: LazyLock<Mutex<HashMap<PathBuf, (Stamp, String)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The current contents of `paths` (without a trailing line break), read off the arbiter;
/// each an error naming the file when it cannot be read.
pub async fn read_secret_files(paths: Vec<PathBuf>) -> Vec<Result<String, String>> {
    let count = paths.len();
    match actix_rt::task::spawn_blocking(move || paths.iter().map(|p| current(p)).collect()).await {
        Ok(values) => values,
        Err(_) => vec![Err("the file reader stopped".to_owned()); count],
    }
}

/// The current contents of `path`, from the cache while the file is unchanged.
pub(crate) fn current(path: &Path) -> Result<String, String> {
    let unreadable = |error: std::io::Error| format!("cannot read file {path:?}: {error}");
    let stamp = Stamp::of(path).map_err(unreadable)?;
    let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((seen, contents)) = cache.get(path)
        && *seen == stamp
    {
        return Ok(contents.clone());
    }
    drop(cache);
    let contents = std::fs::read_to_string(path).map_err(unreadable)?;
    let contents = contents.trim_end_matches(['\n', '\r']).to_owned();
    CACHE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(path.to_owned(), (stamp, contents.clone()));
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewritten_file_is_read_again_and_an_unchanged_one_comes_from_the_cache() {
        let dir = std::env::temp_dir().join(format!("wsherd-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "first\n").unwrap();
        assert_eq!(current(&path).as_deref(), Ok("first"));
        // A different length is a different stamp whatever the clock's resolution.
        std::fs::write(&path, "second-token\n").unwrap();
        assert_eq!(current(&path).as_deref(), Ok("second-token"));
        std::fs::remove_file(&path).unwrap();
        let error = current(&path).unwrap_err();
        assert!(
            error.contains("token") && !error.contains("second"),
            "{error}"
        );
    }
}
