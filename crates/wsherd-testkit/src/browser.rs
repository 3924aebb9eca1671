//! A real browser for tests of pages: Debian's headless Chromium, driven over WebDriver by
//! its ChromeDriver (packages `chromium` and `chromium-driver`, installed by `scripts/test`).
//!
//! Chromium runs with a profile of its own, no sandbox (tests run as root in CI), and a proxy
//! that goes nowhere, so nothing but 127.0.0.1 (which Chromium never proxies) is reachable.
//! WebDriver is plain HTTP with JSON; each command is a blocking exchange with ChromeDriver
//! run off the caller's thread, so the actix system a test runs keeps running meanwhile.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::external::{find_program, free_port};

/// How long ChromeDriver may take to start, and one command to answer.
const PATIENCE: Duration = Duration::from_secs(60);

/// The key WebDriver names an element by in its answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A headless Chromium with one window, closed (with its driver) when dropped.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

impl Browser {
    /// Starts ChromeDriver on a free port and a Chromium window of `width` × `height`.
    pub async fn start(width: u32, height: u32) -> io::Result<Browser> {
        let chromium = find_program("chromium", "chromium")?;
        let chromedriver = find_program("chromedriver", "chromium-driver")?;
        let port = free_port()?;
        let profile =
            std::env::temp_dir().join(format!("wsherd-chromium-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&profile)?;
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            profile,
        };
        let deadline = Instant::now() + PATIENCE;
        loop {
            // A driver still starting may take a connection and not answer it: ask again.
            let answer = browser
                .call_within("GET", "/status", None, Duration::from_secs(1))
                .await;
            match answer {
                Ok(status) if status["ready"] == true => break,
                _ if Instant::now() > deadline => {
                    return Err(io::Error::other(format!(
                        "chromedriver did not get ready within 60 s: {answer:?}"
                    )));
                }
                // Not listening yet: it takes a moment to start.
                _ => actix_rt::time::sleep(Duration::from_millis(50)).await,
            }
        }
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            // Anything not on the loopback goes to a port where nothing listens.
            "--proxy-server=http://127.0.0.1:9".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", browser.profile.display()),
        ];
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": chromium, "args": args },
            }}
        });
        let session = browser.call("POST", "/session", Some(capabilities)).await?;
        browser.session = session["sessionId"]
            .as_str()
            .ok_or_else(|| io::Error::other(format!("no session in {session}")))?
            .to_owned();
        Ok(browser)
    }

    /// Loads `url` (returns once the page has loaded).
    pub async fn goto(&self, url: &str) -> io::Result<()> {
        self.command("POST", "url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// Runs `script` (a function body: `return …` gives the value) in the page.
    pub async fn eval(&self, script: &str) -> io::Result<Value> {
        self.command(
            "POST",
            "execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Runs `script` until it returns something other than `null` or `false`, within
    /// `timeout`, and returns that. `what` names the wait in the error.
    pub async fn until(&self, what: &str, script: &str, timeout: Duration) -> io::Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.eval(script).await?;
            if !value.is_null() && value != false {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("the page never showed {what}")));
            }
            // The page changes on its own (its socket, its timers): look again shortly.
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Clicks the first element `css` selects.
    pub async fn click(&self, css: &str) -> io::Result<()> {
        let element = self.element(css).await?;
        self.command("POST", &format!("element/{element}/click"), Some(json!({})))
            .await
            .map(drop)
    }

    /// Types `text` into the first element `css` selects, as a user would.
    pub async fn type_into(&self, css: &str, text: &str) -> io::Result<()> {
        let element = self.element(css).await?;
        self.command(
            "POST",
            &format!("element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> io::Result<Vec<u8>> {
        let encoded = self.command("GET", "screenshot", None).await?;
        let encoded = encoded
            .as_str()
            .ok_or_else(|| io::Error::other("the screenshot is no string"))?;
        decode_base64(encoded).ok_or_else(|| io::Error::other("the screenshot is no base64"))
    }

    async fn element(&self, css: &str) -> io::Result<String> {
        let found = self
            .command(
                "POST",
                "element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await?;
        found[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| io::Error::other(format!("no element {css}: {found}")))
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> io::Result<Value> {
        let path = format!("/session/{}/{path}", self.session);
        self.call(method, &path, body).await
    }

    /// One WebDriver command: its `value`, or its error as an `io::Error`.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> io::Result<Value> {
        self.call_within(method, path, body, PATIENCE).await
    }

    async fn call_within(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        patience: Duration,
    ) -> io::Result<Value> {
        let (port, method, owned) = (self.port, method.to_owned(), path.to_owned());
        let answer =
            actix_rt::task::spawn_blocking(move || exchange(port, &method, &owned, body, patience))
                .await
                .map_err(io::Error::other)??;
        let value = answer.get("value").cloned().unwrap_or(Value::Null);
        match value.get("error") {
            Some(error) => Err(io::Error::other(format!(
                "webdriver {path}: {error}: {}",
                value["message"].as_str().unwrap_or_default()
            ))),
            None => Ok(value),
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Closes Chromium; the driver alone going would leave it running.
            let _ = exchange(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
                Duration::from_secs(10),
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("port", &self.port).finish()
    }
}

/// One HTTP/1.1 request to ChromeDriver on 127.0.0.1:`port`, its JSON answer.
fn exchange(
    port: u16,
    method: &str,
    path: &str,
    body: Option<Value>,
    patience: Duration,
) -> io::Result<Value> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(patience))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // ChromeDriver may keep the connection open whatever the request says: read the head,
    // then as much body as it announces.
    let mut answer = Vec::new();
    let mut buf = [0u8; 16 << 10];
    let head_end = loop {
        if let Some(at) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::other("chromedriver closed before answering"));
        }
        answer.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
    let length = head.lines().find_map(|line| {
        line.strip_prefix("content-length:")
            .and_then(|n| n.trim().parse::<usize>().ok())
    });
    let chunked =
        head.contains("transfer-encoding: chunked") || head.contains("transfer-encoding:chunked");
    loop {
        let body = &answer[head_end..];
        let whole = match length {
            Some(length) => body.len() >= length,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if whole {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break; // closed: what came is all there is
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let rest = &answer[head_end..];
    let body = match length {
        Some(length) => rest[..length.min(rest.len())].to_vec(),
        None if chunked => dechunk(rest),
        None => rest.to_vec(),
    };
    serde_json::from_slice(&body)
        .map_err(|e| io::Error::other(format!("chromedriver's answer is no JSON: {e}")))
}

/// The body of a chunked answer.
fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..end])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next().unwrap_or("").trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        let Some(stop) = start.checked_add(size) else {
            break;
        };
        let Some(chunk) = rest.get(start..stop) else {
            break;
        };
        body.extend_from_slice(chunk);
        rest = rest.get(stop.saturating_add(2)..).unwrap_or_default();
    }
    body
}

/// Standard base64 (with or without padding); `None` for anything else.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut bits, mut count) = (0u32, 0u32);
    for &c in text.as_bytes().iter().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            break;
        }
        bits = ((bits << 6) | u32::from(value(c)?)) & 0xff_ffff;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_and_without_padding_and_refuses_other_characters() {
        assert_eq!(decode_base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(decode_base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(decode_base64("iVBORw0KGgo=").unwrap(), b"\x89PNG\r\n\x1a\n");
        assert!(decode_base64("a*b").is_none());
    }

    #[test]
    fn a_chunked_body_is_put_back_together() {
        assert_eq!(
            dechunk(b"4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"),
            b"{\"a\":1}"
        );
    }
}
