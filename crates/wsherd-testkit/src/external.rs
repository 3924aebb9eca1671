//! Real proxy programs for tests against an implementation that is not ours: tinyproxy (HTTP
//! `CONNECT`) and microsocks (SOCKS5), Debian's packages, installed by `scripts/test`.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A proxy program running on 127.0.0.1, killed when dropped.
pub struct ExternalProxy {
    child: Child,
    addr: SocketAddr,
    /// A directory of its own (tinyproxy's configuration), removed when dropped.
    dir: Option<PathBuf>,
}

impl ExternalProxy {
    /// tinyproxy on a free port, allowing `CONNECT` to any port from 127.0.0.1; with
    /// `credentials`, it demands them (`BasicAuth`).
    pub fn tinyproxy(credentials: Option<(&str, &str)>) -> io::Result<ExternalProxy> {
        let program = find("tinyproxy")?;
        let port = free_port()?;
        let dir =
            std::env::temp_dir().join(format!("wsherd-tinyproxy-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        // No `ConnectPort` line: CONNECT is allowed to every port.
        let mut config = format!(
            "Port {port}\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 60\nMaxClients 100\nLogLevel Critical\nLogFile \"{}\"\n",
            dir.join("log").display()
        );
        if let Some((user, password)) = credentials {
            config.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let path = dir.join("tinyproxy.conf");
        std::fs::write(&path, config)?;
        let child = Command::new(program)
            .arg("-d")
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        ExternalProxy::ready(child, port, Some(dir))
    }

    /// microsocks on a free port; with `credentials`, it demands them.
    pub fn microsocks(credentials: Option<(&str, &str)>) -> io::Result<ExternalProxy> {
        let program = find("microsocks")?;
        let port = free_port()?;
        let mut command = Command::new(program);
        command.args(["-i", "127.0.0.1", "-p", &port.to_string()]);
        if let Some((user, password)) = credentials {
            command.args(["-u", user, "-P", password]);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        ExternalProxy::ready(child, port, None)
    }

    /// Waits (up to 10 s) until the program accepts connections.
    fn ready(mut child: Child, port: u16, dir: Option<PathBuf>) -> io::Result<ExternalProxy> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect(addr).is_ok() {
                return Ok(ExternalProxy { child, addr, dir });
            }
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "the proxy exited at once: {status}"
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(io::Error::other("the proxy did not listen within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for ExternalProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl std::fmt::Debug for ExternalProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalProxy")
            .field("addr", &self.addr)
            .finish()
    }
}

/// The program in `/usr/bin`, `/usr/sbin` or `PATH`, or an error saying how to get it.
fn find(program: &str) -> io::Result<PathBuf> {
    find_program(program, program)
}

/// `program` from Debian package `package`, in `/usr/bin`, `/usr/sbin` or `PATH`, or an error
/// saying how to get it.
pub(crate) fn find_program(program: &str, package: &str) -> io::Result<PathBuf> {
    let mut places: Vec<PathBuf> = vec!["/usr/bin".into(), "/usr/sbin".into()];
    if let Some(path) = std::env::var_os("PATH") {
        places.extend(std::env::split_paths(&path));
    }
    places
        .iter()
        .map(|dir| dir.join(program))
        .find(|candidate| Path::new(candidate).is_file())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{program} is not installed: run the tests with scripts/test, which installs \
                     it (Debian package {package})"
                ),
            )
        })
}

/// A port nothing listens on right now: bound, then let go.
pub(crate) fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
