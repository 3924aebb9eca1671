//! The latency scenario's server: a separate process sending messages at a fixed rate, each
//! stamped with the wall-clock time it is written, so a client can tell how long each one took
//! from the server's `write` to its own handler.
//!
//! Pacing follows the clock, not a sleep per message: a sleep is at least tens of microseconds
//! on Linux (timer slack), so sleeping 10 µs per message would send far below 100,000/s. The
//! loop instead sends every message that is due by now in one write, then sleeps briefly. A
//! message's `ts` is taken as its frame is built, just before that write, so the server's own
//! lateness (a long sleep, being descheduled) is not counted against the client.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::server::{frame, handshake, message_at};

/// The longest the loop sleeps between writes, whatever the rate: short enough that a message
/// is never held long past its time (a sleep lasts ~50 µs longer than asked, by timer slack).
const MAX_SLEEP: Duration = Duration::from_micros(50);

/// How long the server waits for a client's answer to its Close before closing anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Nanoseconds since `UNIX_EPOCH` by the wall clock: the one clock both processes share.
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// How many of `count` messages at `rate` a second are due `elapsed` after the start: message
/// `i` is due at `i / rate` seconds, so the first is due at once.
pub(crate) fn due(elapsed: Duration, rate: u64, count: u64) -> u64 {
    // u128: elapsed nanoseconds times the rate overflows u64 after ~3 minutes at 100,000/s;
    // saturating, so that absurd inputs still give `count` rather than a panic.
    let due = elapsed.as_nanos().saturating_mul(u128::from(rate)) / 1_000_000_000 + 1;
    u64::try_from(due).map_or(count, |due| due.min(count))
}

/// When message `index` is due, after the start, at `rate` a second: the first nanosecond at
/// which [`due`] counts it (rounded up, so the loop never wakes a nanosecond early for it).
pub(crate) fn due_at(index: u64, rate: u64) -> Duration {
    if rate == 0 {
        return Duration::MAX;
    }
    let nanos = (u128::from(index) * 1_000_000_000).div_ceil(u128::from(rate));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Sends `count` paced messages on `stream`, then a Close.
fn pace(stream: &mut TcpStream, rate: u64, count: u64) -> std::io::Result<()> {
    // At 100,000/s a 50 µs sleep leaves ~5–10 messages due per write; room for many more, so
    // a late wake-up does not make the buffer grow while pacing.
    let mut out = Vec::with_capacity(64 * 1024);
    let start = Instant::now();
    let mut sent = 0;
    while sent < count {
        let due = due(start.elapsed(), rate, count);
        if due > sent {
            out.clear();
            for seq in sent..due {
                frame(message_at(seq, now_ns()).as_bytes(), &mut out);
            }
            stream.write_all(&out)?;
            sent = due;
            // More may have come due while writing: look again before sleeping.
            continue;
        }
        let wait = due_at(sent, rate).saturating_sub(start.elapsed());
        std::thread::sleep(wait.min(MAX_SLEEP));
    }
    stream.write_all(&[0x88, 0x02, 0x03, 0xE8])
}

/// `serve-paced RATE COUNT`: listens on 127.0.0.1, prints the port, and sends COUNT messages
/// at RATE a second on every connection (its own thread), then a Close.
pub(crate) fn serve_paced(args: &[String]) -> ExitCode {
    let (Some(rate), Some(count)) = (
        args.first().and_then(|r| r.parse::<u64>().ok()),
        args.get(1).and_then(|c| c.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: wsherd-bench serve-paced RATE COUNT");
        return ExitCode::from(2);
    };
    if rate == 0 {
        eprintln!("serve-paced: RATE must be above 0");
        return ExitCode::from(2);
    }
    let Ok(listener) = TcpListener::bind("127.0.0.1:0") else {
        return ExitCode::FAILURE;
    };
    let Ok(addr) = listener.local_addr() else {
        return ExitCode::FAILURE;
    };
    println!("{}", addr.port());
    let _ = std::io::stdout().flush();
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        std::thread::spawn(move || {
            // Each write goes out at once: Nagle would hold a small frame back for an ACK.
            let _ = stream.set_nodelay(true);
            if handshake(&mut stream).is_err() {
                return;
            }
            if pace(&mut stream, rate, count).is_err() {
                return;
            }
            // The client sends nothing but its answer to our Close (wsherd's heartbeat is
            // off in this bench): once that comes, or the client has gone, the server closes
            // the TCP connection first, as RFC 6455 §7.1.1 has it. A client that waits for
            // that close (wsherd does) is then not held until its shutdown timeout.
            let _ = stream.set_read_timeout(Some(CLOSE_WAIT));
            let mut answer = [0u8; 4096];
            let _ = stream.read(&mut answer);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        });
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_message_is_due_at_once_and_the_rest_by_the_rate() {
        assert_eq!(due(Duration::ZERO, 10_000, 100), 1);
        // Message 1 is due at 100 µs, not a nanosecond before.
        assert_eq!(due(Duration::from_nanos(99_999), 10_000, 100), 1);
        assert_eq!(due(Duration::from_micros(100), 10_000, 100), 2);
        // 1 ms at 100,000/s: messages 0..=100 are due.
        assert_eq!(due(Duration::from_millis(1), 100_000, 1_000_000), 101);
    }

    #[test]
    fn never_more_than_count_are_due() {
        assert_eq!(due(Duration::from_secs(10), 100_000, 5), 5);
        // Far beyond the u64 range of nanoseconds × rate.
        assert_eq!(due(Duration::from_secs(1 << 40), u64::MAX, 7), 7);
    }

    #[test]
    fn due_at_is_the_inverse_of_due() {
        for rate in [10_000, 100_000, 7] {
            for index in [0, 1, 2, 999, 12_345] {
                let at = due_at(index, rate);
                assert_eq!(
                    due(at, rate, u64::MAX),
                    index + 1,
                    "rate {rate}, index {index}"
                );
                if let Some(before) = at.checked_sub(Duration::from_nanos(1)) {
                    assert_eq!(
                        due(before, rate, u64::MAX),
                        index,
                        "rate {rate}, index {index}"
                    );
                }
            }
        }
        assert_eq!(due_at(3, 0), Duration::MAX);
    }

    #[test]
    fn stamps_are_nanoseconds_since_the_epoch() {
        // 2026-01-01 in nanoseconds; a stamp in micro- or milliseconds would be far below.
        assert!(now_ns() > 1_767_225_600_000_000_000);
    }
}
