//! `wsherd status`: a running server's `/api/status`, as an aligned table or as JSON.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use wsherd::{TlsFiles, human_duration, redact_url};

/// How long the whole request may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The largest answer read: a herd of 20,000 endpoints answers about 6 MB.
const MAX_ANSWER: usize = 64 << 20;

/// Asks `url` for the status and prints it; exit 1 when that fails.
pub(crate) fn status(
    url: &str,
    token: Option<String>,
    ca_file: Option<PathBuf>,
    json: bool,
) -> ExitCode {
    let token = token
        .or_else(|| std::env::var("WSHERD_TOKEN").ok())
        .filter(|token| !token.is_empty());
    let system = actix::System::new();
    let fetched = system.block_on(fetch(url, token.as_deref(), ca_file));
    let body = match fetched {
        Ok(body) => body,
        Err(error) => {
            eprintln!("wsherd: {error}");
            return ExitCode::FAILURE;
        }
    };
    let statuses: Vec<Value> = match serde_json::from_slice(&body) {
        Ok(statuses) => statuses,
        Err(error) => {
            eprintln!(
                "wsherd: {} did not answer a status array: {error}",
                redact_url(url)
            );
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{}", Value::Array(statuses));
    } else {
        print!("{}", table(&statuses));
    }
    ExitCode::SUCCESS
}

async fn fetch(
    url: &str,
    token: Option<&str>,
    ca_file: Option<PathBuf>,
) -> Result<Vec<u8>, String> {
    let shown = redact_url(url);
    let base = url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(format!("{shown:?} is not an http:// or https:// URL"));
    }
    let files = ca_file.map(|ca_file| TlsFiles {
        ca_file: Some(ca_file),
        ..TlsFiles::default()
    });
    let tls = wsherd_connection::client_config(files.as_ref())?;
    let client = awc::Client::builder()
        .timeout(TIMEOUT)
        .connector(awc::Connector::new().rustls_0_23(Arc::new(tls)))
        .finish();
    let mut request = client.get(format!("{base}/api/status"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .map_err(|error| format!("cannot reach {shown}: {error}"))?;
    let status = response.status();
    let body = response
        .body()
        .limit(MAX_ANSWER)
        .await
        .map_err(|error| format!("{shown}: the answer could not be read: {error}"))?;
    if status.is_success() {
        return Ok(body.to_vec());
    }
    let said = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|answer| answer["error"].as_str().map(str::to_owned))
        .unwrap_or_default();
    Err(match status.as_u16() {
        401 if token.is_none() => {
            format!("{shown} wants a token: pass --token or set WSHERD_TOKEN")
        }
        401 => format!("{shown} refused the token"),
        code => format!("{shown} answered {code}: {said}"),
    })
}

/// The header, and whether each column is right-aligned (numbers), as `Herd::status_table`.
const COLUMNS: [(&str, bool); 8] = [
    ("ENDPOINT", false),
    ("STATE", false),
    ("FOR", true),
    ("FAILED", true),
    ("RECONNECTS", true),
    ("RTT", true),
    ("QUEUE", true),
    ("LAST ERROR", false),
];

/// The statuses as the in-process table prints them: one aligned row each.
fn table(statuses: &[Value]) -> String {
    let number = |value: &Value| {
        value
            .as_u64()
            .map_or_else(|| "-".to_owned(), |n| n.to_string())
    };
    let rows: Vec<[String; 8]> = statuses
        .iter()
        .map(|status| {
            let text = |key: &str| status[key].as_str().unwrap_or("-").to_owned();
            [
                text("name"),
                // As `Herd::status_table` says it: the outage mode holds the attempt.
                if status["held_by_outage"] == true {
                    "held (offline)".to_owned()
                } else {
                    text("state")
                },
                status["since_ms"].as_u64().map_or_else(
                    || "-".to_owned(),
                    |ms| human_duration(Duration::from_millis(ms)),
                ),
                number(&status["attempt"]),
                number(&status["reconnects"]),
                status["rtt_ms"].as_f64().map_or_else(
                    || "-".to_owned(),
                    |ms| human_duration(Duration::from_secs_f64((ms / 1000.0).max(0.0))),
                ),
                number(&status["queue_depth"]),
                status["last_error"]
                    .as_str()
                    .map_or_else(|| "-".to_owned(), |e| e.replace(char::is_control, " ")),
            ]
        })
        .collect();
    let mut widths = COLUMNS.map(|(header, _)| header.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = COLUMNS.map(|(header, _)| header.to_owned());
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len() - 1;
        for (column, cell) in row.iter().enumerate() {
            let width = widths[column];
            if column == last {
                out.push_str(cell);
            } else if COLUMNS[column].1 {
                out.push_str(&format!("{cell:>width$}  "));
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_aligns_the_server_json_like_the_in_process_table() {
        let statuses = [
            json!({"name": "binance", "state": "live", "since_ms": 252_400, "attempt": 0,
                   "reconnects": 3, "rtt_ms": 12.0, "queue_depth": 0,
                   "last_error": "closed by peer with 1012 \"restart\""}),
            json!({"name": "kraken", "state": "backoff", "since_ms": 1_500, "attempt": 2,
                   "reconnects": 0, "rtt_ms": null, "queue_depth": 14,
                   "last_error": "handshake rejected with HTTP 503"}),
        ];
        let shown = table(&statuses);
        let expected = [
            "ENDPOINT  STATE      FOR  FAILED  RECONNECTS   RTT  QUEUE  LAST ERROR",
            r#"binance   live     4m12s       0           3  12ms      0  closed by peer with 1012 "restart""#,
            "kraken    backoff   1.5s       2           0     -     14  handshake rejected with HTTP 503",
        ];
        assert_eq!(shown.lines().collect::<Vec<_>>(), expected, "\n{shown}");
        assert_eq!(table(&[]).lines().count(), 1);
    }
}
