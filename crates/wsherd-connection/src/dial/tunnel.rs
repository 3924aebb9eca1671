//! Opening a tunnel through a proxy: HTTP `CONNECT` and SOCKS5 (RFC 1928, with RFC 1929
//! username/password authentication).
//!
//! Both read exactly the proxy's answer and nothing more: the server behind it speaks only
//! after the client did (a TLS ClientHello, the upgrade request), so a byte past the answer is
//! a broken proxy, refused rather than lost. Answers are bounded; what a proxy says is shown
//! cut short and stripped to printable text.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::proxy::{ProxyCredentials, authority};

/// The longest HTTP answer head a proxy may send to a `CONNECT`.
const MAX_ANSWER: usize = 16 * 1024;

/// Why a tunnel could not be opened.
#[derive(Debug)]
pub(crate) enum TunnelError {
    /// The proxy wants credentials or refused them.
    Auth(String),
    /// The proxy refused to reach the server.
    Refused(String),
    /// The proxy's answer is not its protocol.
    Invalid(String),
    /// The connection to the proxy failed.
    Io(std::io::Error),
}

impl From<std::io::Error> for TunnelError {
    fn from(error: std::io::Error) -> Self {
        if error.kind() == std::io::ErrorKind::UnexpectedEof {
            TunnelError::Invalid("the proxy closed the connection before it answered".into())
        } else {
            TunnelError::Io(error)
        }
    }
}

/// Where the tunnel should lead.
#[derive(Debug, Clone, Copy)]
pub(crate) enum TunnelTarget<'a> {
    /// A host name (or address text) and port, for the proxy to resolve.
    Name(&'a str, u16),
    /// An address resolved here.
    Address(SocketAddr),
}

impl TunnelTarget<'_> {
    /// `host:port` as a CONNECT request (and an error) names it.
    pub(crate) fn authority(&self) -> String {
        match self {
            TunnelTarget::Name(host, port) => authority(host, *port),
            TunnelTarget::Address(address) => address.to_string(),
        }
    }
}

/// Asks an HTTP proxy for a tunnel to `target` with `CONNECT`.
pub(crate) async fn http_connect<S>(
    stream: &mut S,
    target: TunnelTarget<'_>,
    credentials: Option<&ProxyCredentials>,
) -> Result<(), TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let authority = target.authority();
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(credentials) = credentials {
        let pair = format!("{}:{}", credentials.user, credentials.password);
        request.push_str("Proxy-Authorization: Basic ");
        request.push_str(&base64(pair.as_bytes()));
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;

    let mut answer = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Err(TunnelError::Invalid(if answer.is_empty() {
                "the proxy closed the connection before it answered".into()
            } else {
                "the proxy closed the connection in the middle of its answer".into()
            }));
        }
        answer.extend_from_slice(&chunk[..read]);
        if let Some(end) = find(&answer, b"\r\n\r\n") {
            break end + 4;
        }
        if answer.len() > MAX_ANSWER {
            return Err(TunnelError::Invalid(format!(
                "the proxy's answer is longer than {MAX_ANSWER} bytes"
            )));
        }
    };
    let status_line = answer
        .split(|b| *b == b'\n')
        .next()
        .unwrap_or_default()
        .strip_suffix(b"\r")
        .unwrap_or_default();
    let status = parse_status(status_line).ok_or_else(|| {
        TunnelError::Invalid(format!(
            "the proxy's answer is not HTTP: {:?}",
            printable(status_line)
        ))
    })?;
    let said = printable(status_line);
    match status {
        200..=299 if answer.len() > end => Err(TunnelError::Invalid(
            "the proxy sent bytes after its answer, before the server was spoken to".into(),
        )),
        200..=299 => Ok(()),
        // 401 is what tinyproxy (1.11, Debian 12's) answers for missing or wrong proxy
        // credentials, where RFC 9110 says 407: both mean the same to a CONNECT.
        401 | 407 => Err(TunnelError::Auth(match credentials {
            None => format!("{said} (no credentials were given)"),
            Some(_) => format!("{said} (the credentials were refused)"),
        })),
        _ => Err(TunnelError::Refused(said)),
    }
}

/// `HTTP/1.x NNN …` → `NNN`.
fn parse_status(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    (code.len() == 3)
        .then(|| code.parse::<u16>().ok())
        .flatten()
        .filter(|c| (100..600).contains(c))
}

const SOCKS_VERSION: u8 = 5;
const NO_AUTH: u8 = 0;
const USER_PASSWORD: u8 = 2;
const NO_ACCEPTABLE: u8 = 0xff;

/// Asks a SOCKS5 proxy for a tunnel to `target`.
pub(crate) async fn socks5<S>(
    stream: &mut S,
    target: TunnelTarget<'_>,
    credentials: Option<&ProxyCredentials>,
) -> Result<(), TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let greeting: &[u8] = match credentials {
        Some(_) => &[SOCKS_VERSION, 2, NO_AUTH, USER_PASSWORD],
        None => &[SOCKS_VERSION, 1, NO_AUTH],
    };
    stream.write_all(greeting).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice[0] != SOCKS_VERSION {
        return Err(TunnelError::Invalid(format!(
            "not a SOCKS5 answer (version byte {})",
            choice[0]
        )));
    }
    match (choice[1], credentials) {
        (NO_AUTH, _) => {}
        (USER_PASSWORD, Some(credentials)) => authenticate(stream, credentials).await?,
        (NO_ACCEPTABLE, None) => {
            return Err(TunnelError::Auth(
                "the SOCKS5 proxy requires authentication (no credentials were given)".into(),
            ));
        }
        (NO_ACCEPTABLE, Some(_)) => {
            return Err(TunnelError::Auth(
                "the SOCKS5 proxy accepts neither no authentication nor a user name and password"
                    .into(),
            ));
        }
        (method, _) => {
            return Err(TunnelError::Invalid(format!(
                "the SOCKS5 proxy chose a method that was not offered ({method})"
            )));
        }
    }

    let mut request = vec![SOCKS_VERSION, 1, 0];
    let port = match target {
        TunnelTarget::Name(host, port) => {
            let host = host.as_bytes();
            let len = u8::try_from(host.len()).map_err(|_| {
                TunnelError::Invalid("the host name is longer than SOCKS5 allows (255)".into())
            })?;
            request.push(3);
            request.push(len);
            request.extend_from_slice(host);
            port
        }
        TunnelTarget::Address(SocketAddr::V4(address)) => {
            request.push(1);
            request.extend_from_slice(&address.ip().octets());
            address.port()
        }
        TunnelTarget::Address(SocketAddr::V6(address)) => {
            request.push(4);
            request.extend_from_slice(&address.ip().octets());
            address.port()
        }
    };
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await?;

    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[0] != SOCKS_VERSION {
        return Err(TunnelError::Invalid(format!(
            "not a SOCKS5 reply (version byte {})",
            head[0]
        )));
    }
    if head[1] != 0 {
        return Err(TunnelError::Refused(format!(
            "SOCKS5 reply {} ({})",
            head[1],
            socks_reply(head[1])
        )));
    }
    // The address the proxy bound, then its port: read whole, so nothing of it is left for
    // the server's stream.
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await?;
            usize::from(len[0]) + 2
        }
        other => {
            return Err(TunnelError::Invalid(format!(
                "the SOCKS5 reply has an unknown address type ({other})"
            )));
        }
    };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound).await?;
    Ok(())
}

async fn authenticate<S>(stream: &mut S, credentials: &ProxyCredentials) -> Result<(), TunnelError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let too_long =
        || TunnelError::Auth("SOCKS5 user names and passwords are at most 255 bytes".into());
    let user = credentials.user.as_bytes();
    let password = credentials.password.as_bytes();
    let mut message = vec![1, u8::try_from(user.len()).map_err(|_| too_long())?];
    message.extend_from_slice(user);
    message.push(u8::try_from(password.len()).map_err(|_| too_long())?);
    message.extend_from_slice(password);
    stream.write_all(&message).await?;
    let mut status = [0u8; 2];
    stream.read_exact(&mut status).await?;
    if status[1] != 0 {
        return Err(TunnelError::Auth(
            "the SOCKS5 proxy refused the user name and password".into(),
        ));
    }
    Ok(())
}

/// RFC 1928's words for a reply code.
fn socks_reply(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "not allowed by the proxy's rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply",
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// At most 80 characters of `bytes`, printable ASCII only.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(80)
        .map(|b| {
            if b.is_ascii_graphic() || *b == b' ' {
                char::from(*b)
            } else {
                '?'
            }
        })
        .collect()
}

/// Standard base64 with padding (RFC 4648), for `Proxy-Authorization: Basic`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use tokio::io::duplex;

    use super::*;

    fn alice() -> ProxyCredentials {
        ProxyCredentials {
            user: "alice".into(),
            password: "s3cret".into(),
        }
    }

    type Steps = &'static [(usize, &'static [u8])];

    /// Runs `client` against a proxy that, for each step, reads that many bytes and then
    /// writes those bytes, then ends its side; gives back the client's result and everything
    /// it sent.
    async fn against<F, Fut>(steps: Steps, client: F) -> (Result<(), TunnelError>, Vec<u8>)
    where
        F: FnOnce(tokio::io::DuplexStream) -> Fut,
        Fut: std::future::Future<Output = Result<(), TunnelError>>,
    {
        let (near, mut far) = duplex(64 * 1024);
        let proxy = async move {
            let mut sent = Vec::new();
            for (read, write) in steps {
                let mut got = vec![0u8; *read];
                if far.read_exact(&mut got).await.is_err() {
                    break;
                }
                sent.extend_from_slice(&got);
                far.write_all(write).await.unwrap();
            }
            // No more from the proxy; whatever else the client sends, until it lets go.
            let _ = far.shutdown().await;
            let _ = far.read_to_end(&mut sent).await;
            sent
        };
        let client = async move { client(near).await };
        tokio::join!(client, proxy)
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, output) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("alice:s3cret", "YWxpY2U6czNjcmV0"),
        ] {
            assert_eq!(base64(input.as_bytes()), output);
        }
    }

    const WITH_CREDENTIALS: &[u8] = b"CONNECT feed.example:443 HTTP/1.1\r\nHost: feed.example:443\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n";

    #[actix_rt::test]
    async fn a_connect_request_names_the_target_and_carries_basic_credentials() {
        const STEPS: Steps = &[(
            WITH_CREDENTIALS.len(),
            b"HTTP/1.1 200 Connection established\r\n\r\n",
        )];
        let steps = STEPS;
        let (result, sent) = against(steps, |mut s| async move {
            let creds = alice();
            http_connect(
                &mut s,
                TunnelTarget::Name("feed.example", 443),
                Some(&creds),
            )
            .await
        })
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(sent, WITH_CREDENTIALS);
    }

    #[actix_rt::test]
    async fn connect_answers_are_sorted_into_auth_refusal_and_garbage() {
        const LEN: usize = b"CONNECT [::1]:9 HTTP/1.1\r\nHost: [::1]:9\r\n\r\n".len();
        let cases: [(Steps, &str); 6] = [
            (
                &[(
                    LEN,
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n",
                )],
                "auth",
            ),
            (
                &[(LEN, b"HTTP/1.0 401 Unauthorized\r\nServer: tinyproxy/1.11.1\r\n\r\n")],
                "auth",
            ),
            (&[(LEN, b"HTTP/1.0 502 Bad Gateway\r\n\r\n")], "refused"),
            (&[(LEN, b"SSH-2.0-OpenSSH_9.2\r\n\r\n")], "invalid"),
            (&[(LEN, b"HTTP/1.1 200 OK\r\n\r\nearly")], "invalid"),
            (&[(LEN, b"HTTP/1.1 200 OK\r\n")], "invalid"),
        ];
        for (steps, expected) in cases {
            let (result, _) = against(steps, |mut s| async move {
                http_connect(&mut s, TunnelTarget::Name("::1", 9), None).await
            })
            .await;
            let got = match &result {
                Err(TunnelError::Auth(why)) => {
                    assert!(
                        why.contains(" 40") && why.contains("no credentials"),
                        "{why}"
                    );
                    "auth"
                }
                Err(TunnelError::Refused(why)) => {
                    assert!(why.contains("502"), "{why}");
                    "refused"
                }
                Err(TunnelError::Invalid(_)) => "invalid",
                other => panic!("{other:?}"),
            };
            assert_eq!(got, expected, "{steps:?}");
        }
    }

    #[actix_rt::test]
    async fn a_socks5h_request_sends_the_name_and_reads_the_whole_reply() {
        // The method choice; then success, with a bound address of the name type, length 0.
        let steps: Steps = &[(3, &[5, 0]), (5 + 12 + 2, &[5, 0, 0, 3, 0, 0, 0])];
        let (result, sent) = against(steps, |mut s| async move {
            socks5(&mut s, TunnelTarget::Name("feed.example", 443), None).await
        })
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(&sent[..3], &[5, 1, 0]);
        assert_eq!(&sent[3..8], &[5, 1, 0, 3, 12]);
        assert_eq!(&sent[8..20], b"feed.example");
        assert_eq!(&sent[20..], &443u16.to_be_bytes());
    }

    #[actix_rt::test]
    async fn socks5_refusals_and_missing_credentials_are_told_apart() {
        let address: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let steps: Steps = &[(3, &[5, 0]), (4 + 4 + 2, &[5, 5, 0, 1])];
        let (refused, sent) = against(steps, |mut s| async move {
            socks5(&mut s, TunnelTarget::Address(address), None).await
        })
        .await;
        assert!(
            matches!(&refused, Err(TunnelError::Refused(why)) if why.contains("connection refused")),
            "{refused:?}"
        );
        assert_eq!(&sent[3..8], &[5, 1, 0, 1, 127]);

        let (auth, _) = against(&[(3, &[5, 0xff])], |mut s| async move {
            socks5(&mut s, TunnelTarget::Address(address), None).await
        })
        .await;
        assert!(matches!(auth, Err(TunnelError::Auth(_))), "{auth:?}");

        // With credentials: the greeting offers both methods, the proxy picks user/password
        // and refuses the pair.
        let steps: Steps = &[(4, &[5, 2]), (1 + 1 + 5 + 1 + 6, &[1, 1])];
        let (wrong, sent) = against(steps, |mut s| async move {
            let creds = alice();
            socks5(&mut s, TunnelTarget::Address(address), Some(&creds)).await
        })
        .await;
        assert!(
            matches!(&wrong, Err(TunnelError::Auth(why)) if why.contains("refused")),
            "{wrong:?}"
        );
        assert_eq!(&sent[..4], &[5, 2, 0, 2]);
        assert_eq!(&sent[4..], b"\x01\x05alice\x06s3cret");

        let (garbage, _) = against(
            &[(3, b"HTTP/1.1 400 Bad Request\r\n\r\n")],
            |mut s| async move { socks5(&mut s, TunnelTarget::Address(address), None).await },
        )
        .await;
        assert!(
            matches!(garbage, Err(TunnelError::Invalid(_))),
            "{garbage:?}"
        );
    }
}
