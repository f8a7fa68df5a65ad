//! Deadlines on the wire: a request body that must arrive in time, and the
//! socket that notices when a head begins after a keep-alive pause.
//!
//! This module owns what must be seen byte by byte, below hyper. It must
//! never read or write anything itself beyond what hyper asks for, nor
//! touch the deadline while a request is in a handler.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::{Frame, Incoming, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::registry::Conn;

/// A request body that must arrive within `timeout` of the first time its
/// handler had to wait for it.
pub(super) struct TimedBody {
    pub(super) inner: Incoming,
    pub(super) timeout: Duration,
    pub(super) sleep: Option<Pin<Box<Sleep>>>,
}

/// Why a request body stopped: it came too slowly.
#[derive(Debug)]
struct BodyTimeout(Duration);

impl std::fmt::Display for BodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimeout {}

impl hyper::body::Body for TimedBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout(timeout))))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where the head of the next request is, in a pause between requests.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Head {
    /// Not a byte of it yet: the idle deadline applies.
    Awaited,
    /// Some of it came; it is due header_read_timeout after (set on the
    /// first wait that follows, microseconds after the bytes).
    Started,
    /// Its deadline is set.
    Due,
}

/// The socket, noticing when a head begins after a keep-alive pause: from
/// then on the connection's `due` is header_read_timeout away, not the
/// idle deadline. (The first request's head is due from the opening, which
/// the registry sets.)
pub(super) struct Watched {
    pub(super) stream: TcpStream,
    pub(super) conn: Arc<Conn>,
    pub(super) header_read_timeout: Duration,
    /// `conn.finished` when the current pause began.
    pub(super) seen_finished: u64,
    pub(super) head: Head,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        let finished = this.conn.finished.load(Ordering::Relaxed);
        if finished == 0 || this.conn.busy.load(Ordering::Relaxed) {
            return polled;
        }
        if finished != this.seen_finished {
            this.seen_finished = finished;
            this.head = Head::Awaited;
        }
        match (&polled, this.head) {
            (Poll::Ready(Ok(())), Head::Awaited) if buf.filled().len() > before => this.head = Head::Started,
            (Poll::Pending, Head::Started) => {
                // The head is incomplete: from now it has header_read_timeout.
                let due = this.conn.millis(Instant::now() + this.header_read_timeout);
                this.conn.due.store(due, Ordering::Relaxed);
                this.head = Head::Due;
            }
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
