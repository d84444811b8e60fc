//! The connection type both gRPC listeners hand to HTTP/2: a socket that
//! tells h2 it has no vectored writes, so that h2 copies each check's small
//! frames into its write buffer and sends a whole batch of answers in one
//! `write`.
//!
//! Why: h2 keeps any DATA frame of 256 bytes or more out of its buffer
//! when the socket supports vectored writes, and must then write it out
//! (`writev` of the buffer plus that frame) before it can buffer the next
//! frame. A `CheckResponse` with identity headers, or a denial with its
//! JSON body, is 300–700 bytes, so a batch of answers to one read of
//! Envoy's multiplexed connection cost one `writev` per answer (measured
//! with `strace -c`: about four writes per read at 16 requests in flight),
//! and on loopback each write also pays for Envoy's side of the TCP
//! receive. Without vectored writes h2 copies frames of up to 1 KiB into
//! its 16 KiB buffer and flushes once when the batch is done. Copying a few
//! hundred bytes costs far less than a system call. BENCHMARKS.md has the
//! measurements.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// A stream whose writes h2 batches (see the module docs); reads and
/// writes go straight to the inner stream.
#[derive(Debug)]
pub struct BatchedWrites<T>(pub T);

impl<T: AsyncRead + Unpin> AsyncRead for BatchedWrites<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for BatchedWrites<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    /// The point of this type: h2 then buffers small frames instead of
    /// chaining them (`poll_write_vectored` keeps its default, which
    /// writes the first non-empty slice).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl<T: Connected> Connected for BatchedWrites<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    #[tokio::test]
    async fn passes_bytes_through_both_ways_and_reports_no_vectored_writes() {
        let (a, b) = tokio::io::duplex(64);
        let (mut a, mut b) = (BatchedWrites(a), BatchedWrites(b));
        assert!(!a.is_write_vectored());
        a.write_all(b"check").await.unwrap();
        a.flush().await.unwrap();
        let mut got = [0u8; 5];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"check");
        b.write_all(b"ok").await.unwrap();
        b.shutdown().await.unwrap();
        let mut rest = Vec::new();
        a.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"ok");
    }
}
