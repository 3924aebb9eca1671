//! TLS client configurations by file set, read again when a file changed.
//!
//! Certificates get rotated in place: a CA bundle updated, a client certificate renewed by an
//! agent, a Kubernetes secret swapped under the same path. Every attempt therefore looks at
//! the files (one `stat` each) and parses them again when any changed; an unchanged set costs
//! three `stat`s and hands back the same configuration, so the per-arbiter awc client built on
//! it is reused. Looking at files can block (a slow or network disk), so it runs on the
//! blocking pool, never on an arbiter.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::SystemTime;

use rustls::ClientConfig;

use crate::tls::{TlsFiles, client_config};

/// What `stat` says of one file: enough to see it was rewritten (modification time, length)
/// or replaced by another file (device and inode: a rename into place, or `cp -p`, can keep
/// the time and the length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: (u64, u64),
}

impl Stamp {
    /// The stamp of `path` as it is now (also used for `{ file }` secrets).
    pub(crate) fn of(path: &Path) -> std::io::Result<Stamp> {
        let metadata = std::fs::metadata(path)?;
        Ok(Stamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
            #[cfg(unix)]
            inode: {
                use std::os::unix::fs::MetadataExt;
                (metadata.dev(), metadata.ino())
            },
        })
    }
}

/// The stamps of the CA file, the client certificate and the key (`None` where unset).
type Stamps = [Option<Stamp>; 3];

struct Cached {
    stamps: Stamps,
    config: Arc<ClientConfig>,
}

/// One entry per file set a config ever named: bounded by the configuration, not by peers.
static CACHE: LazyLock<Mutex<HashMap<TlsFiles, Cached>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The configuration for `tls` (the Web PKI defaults for `None`) as its files are now.
pub(crate) async fn config_for(tls: Option<TlsFiles>) -> Result<Arc<ClientConfig>, String> {
    static DEFAULT: std::sync::OnceLock<Result<Arc<ClientConfig>, String>> =
        std::sync::OnceLock::new();
    match tls {
        Some(files) => current(files).await,
        // Built in memory, no file to watch.
        None => DEFAULT
            .get_or_init(|| client_config(None).map(Arc::new))
            .clone(),
    }
}

/// The configuration for `files` as they are on disk now, read off the arbiter.
pub(crate) async fn current(files: TlsFiles) -> Result<Arc<ClientConfig>, String> {
    match actix_rt::task::spawn_blocking(move || current_blocking(&files)).await {
        Ok(config) => config,
        Err(error) => Err(format!("reading the TLS files failed: {error}")),
    }
}

/// Stamps every file, then reads them again unless the cached stamps match. Stamping first
/// means a file changed during the read is seen changed on the next attempt.
fn current_blocking(files: &TlsFiles) -> Result<Arc<ClientConfig>, String> {
    let stamps = stamps(files);
    if let Some(stamps) = &stamps
        && let Some(cached) = lock().get(files)
        && cached.stamps == *stamps
    {
        return Ok(Arc::clone(&cached.config));
    }
    let config = Arc::new(client_config(Some(files))?);
    if let Some(stamps) = stamps {
        lock().insert(
            files.clone(),
            Cached {
                stamps,
                config: Arc::clone(&config),
            },
        );
    }
    Ok(config)
}

/// Every set file's stamp; `None` when one cannot be stamped (the read will say why).
fn stamps(files: &TlsFiles) -> Option<Stamps> {
    let stamp = |path: &Option<std::path::PathBuf>| match path {
        Some(path) => Stamp::of(path).ok().map(Some),
        None => Some(None),
    };
    Some([
        stamp(&files.ca_file)?,
        stamp(&files.client_cert)?,
        stamp(&files.client_key)?,
    ])
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<TlsFiles, Cached>> {
    // The map holds finished entries only; one left by a panicking thread is still whole.
    CACHE.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Duration;

    use wsherd_testkit::TestCerts;

    use super::*;

    #[actix_rt::test]
    async fn unchanged_files_give_the_same_config_and_a_rewritten_one_a_new_one() {
        let dir = std::env::temp_dir().join(format!("wsherd-tls-cache-{}", std::process::id()));
        let certs = TestCerts::generate(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap();
        let (ca, _, _) = certs.write_client_files(&dir).unwrap();
        let files = TlsFiles {
            ca_file: Some(ca.clone()),
            ..TlsFiles::default()
        };
        let first = current(files.clone()).await.unwrap();
        let again = current(files.clone()).await.unwrap();
        assert!(Arc::ptr_eq(&first, &again), "nothing changed: no new read");

        let other = TestCerts::generate(&[IpAddr::V4(Ipv4Addr::LOCALHOST)]).unwrap();
        std::fs::write(&ca, &other.ca_pem).unwrap();
        // A distinct modification time whatever the file system's clock granularity.
        let file = std::fs::File::options().write(true).open(&ca).unwrap();
        file.set_modified(SystemTime::now() + Duration::from_secs(2))
            .unwrap();
        let rotated = current(files.clone()).await.unwrap();
        assert!(
            !Arc::ptr_eq(&first, &rotated),
            "the rewritten file was read"
        );

        std::fs::write(&ca, "not a certificate").unwrap();
        let broken = current(files).await.unwrap_err();
        assert!(broken.contains("ca.pem"), "{broken}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
