//! Upstream connections with Kong's `write_timeout`: the longest a single write to the
//! upstream may wait. hyper's connector has a connect timeout only, so the TCP stream is
//! wrapped to time out writes that make no progress.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Connects like [`HttpConnector`] and bounds every write by `write_timeout`.
#[derive(Debug, Clone)]
pub struct TimeoutConnector {
    inner: HttpConnector,
    write_timeout: Duration,
}

impl TimeoutConnector {
    /// A connector with the given connect and write limits.
    pub fn new(connect_timeout: Duration, write_timeout: Duration) -> Self {
        let mut inner = HttpConnector::new();
        inner.set_connect_timeout(Some(connect_timeout));
        inner.set_nodelay(true);
        Self {
            inner,
            write_timeout,
        }
    }
}

impl tower_service::Service<Uri> for TimeoutConnector {
    type Response = TimeoutStream;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<TimeoutStream, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let write_timeout = self.write_timeout;
        Box::pin(async move {
            let stream = connecting.await?;
            Ok(TimeoutStream {
                inner: stream,
                write_timeout,
                write_deadline: None,
            })
        })
    }
}

/// A TCP stream whose writes fail with `TimedOut` after `write_timeout` without progress.
#[derive(Debug)]
pub struct TimeoutStream {
    inner: TokioIo<TcpStream>,
    write_timeout: Duration,
    write_deadline: Option<Pin<Box<Sleep>>>,
}

impl TimeoutStream {
    /// Polls `op`; while it is pending, the write deadline runs; progress clears it.
    fn poll_bounded<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut TokioIo<TcpStream>>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(result) => {
                self.write_deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let timeout = self.write_timeout;
                let deadline = self
                    .write_deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.write_deadline = None;
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("write to upstream made no progress for {timeout:?} (write_timeout)"),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl Read for TimeoutStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl Write for TimeoutStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_bounded(cx, |io, cx| io.poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_bounded(cx, |io, cx| io.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Connection for TimeoutStream {
    fn connected(&self) -> Connected {
        self.inner.connected()
    }
}
