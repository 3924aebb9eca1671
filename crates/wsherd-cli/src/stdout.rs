//! The one owner of stdout: an OS thread fed through a bounded channel.
//!
//! `wsherd run` prints from actors on the system arbiter, which also hosts the herd's
//! handshake governor. A `write(2)` to a pipe nobody reads blocks the thread that makes it, so
//! no actor writes stdout itself: the `wsherd-stdout` thread does, and it may block as long as
//! the reader likes. Actors hand it lines with `try_send` (never blocking) and decide for
//! themselves what to do when the channel is full (see [`crate::output`]).

use std::io::{self, Write};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};

/// Lines waiting for stdout: enough to absorb a burst, small enough that a stalled reader
/// holds little memory (the printers' mailboxes hold the rest, also bounded).
const CAPACITY: usize = 1024;

/// Where printers send their lines, and the thread that writes them.
pub(crate) struct Stdout {
    lines: mpsc::Sender<String>,
    closed: Option<oneshot::Receiver<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Stdout {
    /// Starts the thread that owns the process's stdout.
    pub(crate) fn start() -> io::Result<Stdout> {
        Self::start_with(io::stdout())
    }

    /// Starts a thread that writes lines to `out`.
    fn start_with(out: impl Write + Send + 'static) -> io::Result<Stdout> {
        let (lines, receiver) = mpsc::channel(CAPACITY);
        let (closed_tx, closed) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("wsherd-stdout".into())
            .spawn(move || {
                if write_lines(out, receiver).is_err() {
                    // Nobody reads any more (a closed pipe): whoever waits on `closed` ends
                    // the run; the dropped receiver tells every printer.
                    let _ = closed_tx.send(());
                }
            })?;
        Ok(Stdout {
            lines,
            closed: Some(closed),
            thread: Some(thread),
        })
    }

    /// A sender of lines (without their newline).
    pub(crate) fn lines(&self) -> mpsc::Sender<String> {
        self.lines.clone()
    }

    /// Resolves when stdout can no longer be written; pending forever when taken twice.
    pub(crate) fn closed(&mut self) -> impl Future<Output = ()> + use<> {
        let closed = self.closed.take();
        async move {
            let failed = match closed {
                Some(closed) => closed.await.is_ok(),
                None => false,
            };
            if !failed {
                // The thread ended without a write error: only when every sender is gone,
                // which is not something to stop for.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits until every line sent so far is written, once every other sender is dropped
    /// (the printers go with their actor system). Blocks: call it outside any arbiter.
    pub(crate) fn finish(self) {
        let Stdout { lines, thread, .. } = self;
        drop(lines);
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// Writes every line it receives, flushing whenever the channel is empty for now (a line
/// reaches a reader at once, a burst goes out in few writes); fails on the first write error.
fn write_lines(out: impl Write, mut receiver: mpsc::Receiver<String>) -> io::Result<()> {
    let mut out = io::BufWriter::new(out);
    while let Some(line) = receiver.blocking_recv() {
        writeln!(out, "{line}")?;
        while let Ok(line) = receiver.try_recv() {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
    }

    #[test]
    fn every_line_sent_is_written_in_order_before_finish_returns() {
        let out = Shared::default();
        let stdout = Stdout::start_with(out.clone()).unwrap();
        let lines = stdout.lines();
        for n in 0..3000 {
            lines.blocking_send(format!("line {n}")).unwrap();
        }
        drop(lines);
        stdout.finish();
        let written = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..3000).map(|n| format!("line {n}\n")).collect();
        assert_eq!(written, expected);
    }

    #[actix_rt::test]
    async fn a_write_error_says_stdout_closed_and_refuses_further_lines() {
        let mut stdout = Stdout::start_with(Broken).unwrap();
        let lines = stdout.lines();
        lines.send("lost".into()).await.unwrap();
        stdout.closed().await;
        assert!(lines.send("refused".into()).await.is_err());
    }
}
