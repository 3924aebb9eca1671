//! The read side of [`LeanFramed`](super::LeanFramed): its buffer, how reads are sized, and
//! where it stands in the frame stream (see the table on
//! [`next_frame`](super::LeanFramed::next_frame)).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use actix_codec::{AsyncRead, ReadBuf};
use actix_http::ws::{Frame, Item, ProtocolError};
use bytes::{Buf, BytesMut};

use super::header::{MAX_HEADER, declared_lengths, whole_text_header};

/// Bytes read into the stack while no read buffer is held; a read that fills it means traffic.
/// As large as the first read buffer, so a quiet connection's wake-up with a small burst takes
/// one read (a 512-byte probe took two, and an allocation more, for anything over 512 bytes).
const PROBE: usize = 4 * 1024;
/// First size of a read buffer, and the spare room below which it is grown before a read.
const CHUNK_MIN: usize = 4 * 1024;
/// Largest read asked of the socket.
pub(super) const CHUNK_MAX: usize = 64 * 1024;
/// The most the codec may reserve for a frame that has not arrived whole. actix-http's parser
/// reserves the declared length (up to the cap) as soon as it reads a header; with a cap as
/// large as `usize::MAX` a peer's claim alone would allocate without bound, or abort. Larger
/// frames grow the buffer as their bytes arrive instead.
const CODEC_RESERVE_MAX: usize = 1 << 20;
/// Reads of discarded input in one poll before yielding to the rest of the actor.
const DISCARD_READS_PER_POLL: usize = 64;

/// What has been read and not yet framed, and how the next read is made.
pub(super) struct ReadState {
    /// Bytes read and not yet framed; no capacity at all while idle.
    pub(super) buf: BytesMut,
    /// Bytes asked of the socket per read while busy.
    pub(super) chunk: usize,
    /// Bytes the last read returned: a small one means the connection is quiet.
    last_read: usize,
    /// `buf` may hold a whole frame: decode before reading.
    pub(super) readable: bool,
    /// Bytes of `buf` taken by the last [`InFrame::Text`](super::InFrame::Text), dropped on the
    /// next poll.
    pub(super) consumed: usize,
    /// A fragmented message is in progress.
    fragmenting: bool,
    /// The socket reported the end of the stream.
    pub(super) eof: bool,
    /// The largest frame payload accepted.
    max_frame_size: usize,
    /// A frame was malformed: what follows it cannot be framed, so it is discarded.
    pub(super) failed: bool,
    /// permessage-deflate was negotiated: RSV1 may mark the first frame of a message.
    pub(super) deflate: bool,
    /// The frame at the start of `buf` had RSV1 set, which was cleared for the codec (which
    /// refuses reserved bits): it is handed out as compressed.
    pub(super) compressed: bool,
    /// This is a server's side (frames come masked from a client): every frame goes to the
    /// codec, which unmasks it and refuses an unmasked one.
    pub(super) server: bool,
}

impl ReadState {
    /// Starts from `buf` (bytes read past the handshake, perhaps whole frames, so it starts
    /// readable).
    pub(super) fn new(buf: BytesMut, max_frame_size: usize) -> Self {
        ReadState {
            buf,
            chunk: CHUNK_MIN,
            last_read: 0,
            readable: true,
            consumed: 0,
            fragmenting: false,
            eof: false,
            max_frame_size,
            failed: false,
            deflate: false,
            compressed: false,
            server: false,
        }
    }

    /// With permessage-deflate, notes and clears RSV1 on the frame at the start of `buf` when
    /// it may carry it: the first frame of a text or binary message. RSV1 anywhere else (a
    /// continuation, a control frame), or without the extension, is left for the codec to
    /// refuse, as RFC 7692 §6.1 asks.
    #[inline]
    pub(super) fn take_rsv1(&mut self) {
        const RSV1: u8 = 0x40;
        if !self.deflate || self.compressed || self.fragmenting {
            return;
        }
        if let Some(first) = self.buf.first_mut()
            && *first & RSV1 != 0
            && matches!(*first & 0x0F, 0x1 | 0x2)
        {
            *first &= !RSV1;
            self.compressed = true;
        }
    }

    /// Drops the text frame handed out by the last poll, which borrowed `buf` until now.
    #[inline]
    pub(super) fn drop_consumed(&mut self) {
        if self.consumed > 0 {
            self.buf.advance(std::mem::take(&mut self.consumed));
        }
    }

    /// The payload range of a whole, valid, unfragmented text frame at the start of `buf`;
    /// `None` for anything else, which awc's codec then decodes and checks.
    #[inline]
    pub(super) fn whole_text_frame(&self) -> Option<(usize, usize)> {
        // Inside a fragmented message a whole text frame is an error the codec reports; a
        // server must refuse the unmasked frames the fast path reads, and unmask the rest.
        if self.fragmenting || self.server {
            return None;
        }
        let (header, len) = whole_text_header(&self.buf)?;
        let end = header + len;
        (len <= self.max_frame_size && self.buf.len() >= end).then_some((header, end))
    }

    /// Notes where a fragmented message starts and ends, so that a whole text frame in the
    /// middle of one goes to the codec (which rejects it) rather than the fast path.
    #[inline]
    pub(super) fn track_fragments(&mut self, frame: &Frame) {
        if let Frame::Continuation(item) = frame {
            self.fragmenting = !matches!(item, Item::Last(_));
        }
    }

    /// More than any acceptable frame is buffered and it is still not whole. actix-http's
    /// parser would wait for the whole frame, however large, before checking the cap.
    #[inline]
    pub(super) fn overflowing(&self) -> bool {
        // Saturating: a cap near `usize::MAX` must not overflow (it means "no cap").
        self.buf.len() > self.max_frame_size.saturating_add(MAX_HEADER)
    }

    /// The buffer starts with a frame that is not whole yet and claims more than the codec
    /// may reserve for it (see [`CODEC_RESERVE_MAX`]): read on without decoding.
    #[inline]
    pub(super) fn awaiting_large_frame(&self) -> bool {
        let Some((header, declared)) = declared_lengths(&self.buf) else {
            return false;
        };
        // A length with the top bit set is invalid: the codec refuses it at once.
        if declared > i64::MAX as u64 {
            return false;
        }
        let declared = usize::try_from(declared).unwrap_or(usize::MAX);
        declared.min(self.max_frame_size) > CODEC_RESERVE_MAX
            && self.buf.len() < header.saturating_add(declared)
    }

    /// Reads more bytes into `buf`; `Ok(0)` is the end of the stream.
    pub(super) fn read_more<T: AsyncRead + Unpin>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if self.buf.capacity() == 0 {
            // No buffer held: probe through the stack, so waiting costs no heap.
            let mut probe = [0u8; PROBE];
            let mut buf = ReadBuf::new(&mut probe);
            ready!(Pin::new(&mut *io).poll_read(cx, &mut buf))?;
            let filled = buf.filled();
            // Room for the next read too, so a busy spell's second read does not reallocate.
            self.buf = BytesMut::with_capacity(filled.len().max(CHUNK_MIN));
            self.buf.extend_from_slice(filled);
            self.last_read = filled.len();
            return Poll::Ready(Ok(filled.len()));
        }
        if self.buf.capacity() - self.buf.len() < CHUNK_MIN {
            self.buf.reserve(self.chunk);
        }
        let room = self.buf.capacity() - self.buf.len();
        let read = ready!(tokio_util::io::poll_read_buf(
            Pin::new(io),
            cx,
            &mut self.buf
        ))?;
        if read == room {
            // The socket had at least as much as we asked: ask for more next time.
            self.chunk = (self.chunk * 2).min(CHUNK_MAX);
        }
        self.last_read = read;
        Poll::Ready(Ok(read))
    }

    /// The socket has nothing more for now: an empty buffer is given back until the peer sends
    /// again, and after a short read the next busy spell starts from small reads again.
    #[inline]
    pub(super) fn idle(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
            if self.last_read < PROBE {
                self.chunk = CHUNK_MIN;
            }
        }
    }

    /// The first error ends framing: everything after it is discarded.
    pub(super) fn fail<F>(
        &mut self,
        error: ProtocolError,
    ) -> Poll<Option<Result<F, ProtocolError>>> {
        self.failed = true;
        self.readable = false;
        Poll::Ready(Some(Err(error)))
    }

    /// Reads and drops input until the end of the stream.
    pub(super) fn discard<T: AsyncRead + Unpin, F>(
        &mut self,
        io: &mut T,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<F, ProtocolError>>> {
        self.buf = BytesMut::new();
        for _ in 0..DISCARD_READS_PER_POLL {
            let mut probe = [0u8; PROBE];
            let mut buf = ReadBuf::new(&mut probe);
            match ready!(Pin::new(&mut *io).poll_read(cx, &mut buf)) {
                Ok(()) if buf.filled().is_empty() => return Poll::Ready(None),
                Ok(()) => {}
                // The error that failed the stream was already reported.
                Err(_) => return Poll::Ready(None),
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
