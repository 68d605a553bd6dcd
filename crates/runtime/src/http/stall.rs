//! Writes bounded in time: a client that sends requests and never reads
//! the responses stalls the server's writes once the socket buffers are
//! full, and would hold its connection (and its slot) for as long as it
//! likes. [`WriteBound`] fails a write stalled longer than the write
//! timeout, which ends the connection; [`Stalls`] knows which connections
//! are stalled now, so that when every slot is taken the one stalled
//! longest is closed to make room for a client that reads.

use std::collections::HashMap;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

/// The connections served, each with when its writes stalled (if they
/// are stalled now) and the token that closes it.
#[derive(Debug, Default)]
pub(crate) struct Stalls {
    next: AtomicU64,
    connections: Mutex<HashMap<u64, (Option<Instant>, CancellationToken)>>,
}

impl Stalls {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, (Option<Instant>, CancellationToken)>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection: its id, and the token that closes it.
    pub(crate) fn register(&self) -> (u64, CancellationToken) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        self.lock().insert(id, (None, token.clone()));
        (id, token)
    }

    /// The connection ended.
    pub(crate) fn forget(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn set(&self, id: u64, since: Option<Instant>) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.0 = since;
        }
    }

    /// Closes every connection whose writes have been stalled for at
    /// least `age`; returns how many it closed.
    pub(crate) fn close_stalled_for(&self, age: Duration) -> usize {
        let connections = self.lock();
        let mut closed = 0;
        for (since, token) in connections.values() {
            if since.is_some_and(|s| s.elapsed() >= age) && !token.is_cancelled() {
                token.cancel();
                closed += 1;
            }
        }
        closed
    }
}

/// A connection registered in [`Stalls`], forgotten when it ends however
/// it ends.
#[derive(Debug)]
pub(crate) struct Registered {
    id: u64,
    stalls: std::sync::Arc<Stalls>,
}

impl Registered {
    pub(crate) fn new(id: u64, stalls: std::sync::Arc<Stalls>) -> Self {
        Self { id, stalls }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.stalls.forget(self.id);
    }
}

/// `inner` with every write bounded to `limit` from when it stalled.
pub(crate) struct WriteBound<S> {
    inner: S,
    limit: Duration,
    /// Running while a write is stalled.
    timer: Option<Pin<Box<Sleep>>>,
    id: u64,
    stalls: std::sync::Arc<Stalls>,
}

impl<S> WriteBound<S> {
    pub(crate) fn new(inner: S, limit: Duration, id: u64, stalls: std::sync::Arc<Stalls>) -> Self {
        Self {
            inner,
            limit,
            timer: None,
            id,
            stalls,
        }
    }

    /// What a write that returned `poll` gives: pending until the timer
    /// runs out, then an error.
    fn bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            if self.timer.take().is_some() {
                self.stalls.set(self.id, None);
            }
            return poll;
        }
        let (limit, stalls, id) = (self.limit, &self.stalls, self.id);
        let timer = self.timer.get_or_insert_with(|| {
            stalls.set(id, Some(Instant::now()));
            Box::pin(tokio::time::sleep(limit))
        });
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "the client read nothing for {} s (--http-write-timeout)",
                    limit.as_secs()
                ),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteBound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteBound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.bounded(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.bounded(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.bounded(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.bounded(cx, poll)
    }
}
