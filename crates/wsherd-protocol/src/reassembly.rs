//! Reassembly of fragmented messages (continuation frames) under a size cap.

use bytes::{Bytes, BytesMut};

/// One piece of a fragmented message, as a WebSocket codec hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragment {
    /// The first frame of a fragmented text message.
    FirstText(Bytes),
    /// The first frame of a fragmented binary message.
    FirstBinary(Bytes),
    /// A middle frame.
    Continue(Bytes),
    /// The final frame.
    Last(Bytes),
}

/// A message once all its fragments are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reassembled {
    /// A text message (not yet checked for UTF-8).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// The peer broke the fragmentation rules or the size cap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReassemblyError {
    /// The message grew past the cap.
    #[error(
        "fragmented message exceeds the maximum message size: at least {size} bytes, limit {limit}"
    )]
    TooLarge {
        /// Bytes the message had reached when it was refused.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// A continuation or final frame came with no message started.
    #[error("continuation frame without a message in progress")]
    NotStarted,
    /// A new fragmented message started before the previous one finished.
    #[error("new fragmented message started before the previous one finished")]
    AlreadyStarted,
}

/// Collects fragments until the final one, refusing to hold more than `max_message_size` bytes.
///
/// After an error the partial message is discarded; the connection is expected to close.
#[derive(Debug)]
pub struct Reassembler {
    max_message_size: usize,
    in_progress: Option<(bool, BytesMut)>,
}

impl Reassembler {
    /// A reassembler that refuses messages over `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> Self {
        Reassembler {
            max_message_size,
            in_progress: None,
        }
    }

    /// Whether a fragmented message is in progress.
    pub fn is_in_progress(&self) -> bool {
        self.in_progress.is_some()
    }

    /// Bytes held for the message in progress.
    pub fn buffered(&self) -> usize {
        self.in_progress.as_ref().map_or(0, |(_, buf)| buf.len())
    }

    /// Takes one fragment; returns the whole message when `fragment` was the last one.
    pub fn push(&mut self, fragment: Fragment) -> Result<Option<Reassembled>, ReassemblyError> {
        match fragment {
            Fragment::FirstText(chunk) => self.start(true, chunk),
            Fragment::FirstBinary(chunk) => self.start(false, chunk),
            Fragment::Continue(chunk) => self.append(chunk).map(|()| None),
            Fragment::Last(chunk) => {
                self.append(chunk)?;
                let (is_text, buf) = self.in_progress.take().ok_or(ReassemblyError::NotStarted)?;
                let bytes = buf.freeze();
                Ok(Some(if is_text {
                    Reassembled::Text(bytes)
                } else {
                    Reassembled::Binary(bytes)
                }))
            }
        }
    }

    fn start(
        &mut self,
        is_text: bool,
        chunk: Bytes,
    ) -> Result<Option<Reassembled>, ReassemblyError> {
        if self.in_progress.is_some() {
            self.in_progress = None;
            return Err(ReassemblyError::AlreadyStarted);
        }
        self.check(chunk.len())?;
        let mut buf = BytesMut::with_capacity(chunk.len());
        buf.extend_from_slice(&chunk);
        self.in_progress = Some((is_text, buf));
        Ok(None)
    }

    fn append(&mut self, chunk: Bytes) -> Result<(), ReassemblyError> {
        let size = match &self.in_progress {
            None => return Err(ReassemblyError::NotStarted),
            Some((_, buf)) => buf.len().saturating_add(chunk.len()),
        };
        if let Err(error) = self.check(size) {
            self.in_progress = None;
            return Err(error);
        }
        if let Some((_, buf)) = &mut self.in_progress {
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    }

    fn check(&self, size: usize) -> Result<(), ReassemblyError> {
        if size > self.max_message_size {
            return Err(ReassemblyError::TooLarge {
                size,
                limit: self.max_message_size,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn reassembles_text_and_binary() {
        let mut r = Reassembler::new(100);
        assert_eq!(r.push(Fragment::FirstText(b("he"))), Ok(None));
        assert_eq!(r.push(Fragment::Continue(b("ll"))), Ok(None));
        assert_eq!(r.buffered(), 4);
        assert_eq!(
            r.push(Fragment::Last(b("o"))),
            Ok(Some(Reassembled::Text(b("hello"))))
        );
        assert!(!r.is_in_progress());
        assert_eq!(r.push(Fragment::FirstBinary(b("a"))), Ok(None));
        assert_eq!(
            r.push(Fragment::Last(b(""))),
            Ok(Some(Reassembled::Binary(b("a"))))
        );
    }

    #[test]
    fn cap_is_enforced_on_every_fragment() {
        let mut r = Reassembler::new(5);
        assert_eq!(
            r.push(Fragment::FirstText(b("123456"))),
            Err(ReassemblyError::TooLarge { size: 6, limit: 5 })
        );
        r.push(Fragment::FirstText(b("123"))).unwrap();
        assert_eq!(
            r.push(Fragment::Continue(b("456"))),
            Err(ReassemblyError::TooLarge { size: 6, limit: 5 })
        );
        assert!(!r.is_in_progress(), "the partial message is dropped");
        r.push(Fragment::FirstText(b("12"))).unwrap();
        assert_eq!(
            r.push(Fragment::Last(b("345"))),
            Ok(Some(Reassembled::Text(b("12345"))))
        );
    }

    #[test]
    fn out_of_order_fragments_are_errors() {
        let mut r = Reassembler::new(10);
        assert_eq!(
            r.push(Fragment::Continue(b("x"))),
            Err(ReassemblyError::NotStarted)
        );
        assert_eq!(
            r.push(Fragment::Last(b("x"))),
            Err(ReassemblyError::NotStarted)
        );
        r.push(Fragment::FirstText(b("x"))).unwrap();
        assert_eq!(
            r.push(Fragment::FirstBinary(b("y"))),
            Err(ReassemblyError::AlreadyStarted)
        );
        assert!(!r.is_in_progress());
    }
}
