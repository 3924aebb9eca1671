//! Logs to stderr through `tracing-subscriber`, written by a thread of its own.
//!
//! Library log lines are emitted on the arbiters. A `write(2)` to a stderr nobody reads would
//! block the arbiter that logs, so events are formatted in place and handed to the
//! `wsherd-stderr` thread through a bounded channel; when it is full a line is dropped and
//! counted, and the count is written as soon as stderr moves again. Never a blocked arbiter.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::args::LogFormat;

/// Log lines waiting for stderr.
const CAPACITY: usize = 4096;

/// How long the end of the process waits for the last lines to reach stderr.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

enum Item {
    Line(Vec<u8>),
    /// A line kept at the bottom of a terminal and redrawn under every other line; `None`
    /// clears it.
    Status(Option<Vec<u8>>),
    /// Everything before this has been written: tell the sender.
    Flush(SyncSender<()>),
}

/// Hands formatted events to the stderr thread.
#[derive(Clone)]
struct Lines {
    sender: SyncSender<Item>,
    dropped: Arc<AtomicU64>,
}

/// One event being formatted; sent whole when dropped.
struct Line {
    buffer: Vec<u8>,
    lines: Lines,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.buffer);
        if let Err(TrySendError::Full(_)) = self.lines.sender.try_send(Item::Line(line)) {
            self.lines.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            buffer: Vec::new(),
            lines: self.clone(),
        }
    }
}

/// Writes the CLI's own stderr lines (progress) through the same thread as the logs, so they
/// interleave whole and never block the arbiter that writes them.
#[derive(Clone)]
pub(crate) struct Stderr {
    lines: Lines,
}

impl Stderr {
    /// Shows `text` as the terminal's status line (no newline), or clears it: other lines are
    /// written above it, and it is redrawn after each. Skipped when stderr is far behind.
    pub(crate) fn status(&self, text: Option<String>) {
        let _ = self
            .lines
            .sender
            .try_send(Item::Status(text.map(String::into_bytes)));
    }

    /// Queues `text` as it is (newline included or not); dropped and counted when stderr is
    /// far behind.
    pub(crate) fn write(&self, text: String) {
        drop(Line {
            buffer: text.into_bytes(),
            lines: self.lines.clone(),
        });
    }
}

/// Keeps the stderr thread's last lines: dropping it waits (briefly) until they are written.
pub(crate) struct LogGuard {
    sender: Option<SyncSender<Item>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        let Some(sender) = self.sender.take() else {
            return;
        };
        let (done, written) = sync_channel(1);
        let deadline = Instant::now() + FLUSH_TIMEOUT;
        let mut flush = Item::Flush(done);
        // Never block the exit on a stderr nobody reads: try until the deadline.
        loop {
            match sender.try_send(flush) {
                Ok(()) => break,
                Err(TrySendError::Full(again)) if Instant::now() < deadline => {
                    flush = again;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
    }
}

/// The filter: `--log-level` if given, else `RUST_LOG` if set, else `default`.
pub(crate) fn filter(flag: Option<&str>, default: &str) -> Result<EnvFilter, String> {
    let (directives, from) = match (flag, std::env::var("RUST_LOG")) {
        (Some(flag), _) => (flag.to_owned(), "--log-level"),
        (None, Ok(variable)) if !variable.trim().is_empty() => (variable, "RUST_LOG"),
        _ => (default.to_owned(), "the default"),
    };
    EnvFilter::try_new(&directives).map_err(|error| format!("{from} {directives:?}: {error}"))
}

/// Installs the global subscriber writing to stderr through the `wsherd-stderr` thread; the
/// [`Stderr`] writes other lines through it.
pub(crate) fn install(filter: EnvFilter, format: LogFormat) -> io::Result<(LogGuard, Stderr)> {
    let (sender, receiver) = sync_channel(CAPACITY);
    let dropped = Arc::new(AtomicU64::new(0));
    std::thread::Builder::new()
        .name("wsherd-stderr".into())
        .spawn({
            let dropped = Arc::clone(&dropped);
            move || write_lines(receiver, &dropped)
        })?;
    let lines = Lines {
        sender: sender.clone(),
        dropped,
    };
    let stderr = Stderr {
        lines: lines.clone(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(lines);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    installed.map_err(io::Error::other)?;
    let guard = LogGuard {
        sender: Some(sender),
    };
    Ok((guard, stderr))
}

/// Clears the terminal's current line.
const CLEAR_LINE: &[u8] = b"\r\x1b[2K";

fn write_lines(receiver: Receiver<Item>, dropped: &AtomicU64) {
    let mut stderr = io::stderr();
    let mut status: Option<Vec<u8>> = None;
    let report_lost = |stderr: &mut io::Stderr| {
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(stderr, "wsherd: {lost} line(s) dropped: stderr was slow");
        }
    };
    for item in receiver {
        match item {
            Item::Line(line) => {
                if status.is_some() {
                    let _ = stderr.write_all(CLEAR_LINE);
                }
                report_lost(&mut stderr);
                let _ = stderr.write_all(&line);
                if let Some(status) = &status {
                    let _ = stderr.write_all(status);
                }
            }
            Item::Status(next) => {
                if status.is_some() || next.is_some() {
                    let _ = stderr.write_all(CLEAR_LINE);
                }
                if let Some(next) = &next {
                    let _ = stderr.write_all(next);
                }
                status = next;
            }
            Item::Flush(done) => {
                if status.take().is_some() {
                    let _ = stderr.write_all(CLEAR_LINE);
                }
                report_lost(&mut stderr);
                let _ = stderr.flush();
                let _ = done.try_send(());
            }
        }
    }
}
