//! Bytes between blocking code and the engine's async streams: a blocking
//! reader over chunks an async task receives, and a blocking writer whose
//! bytes an async task sends on.

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use crate::progress::TransferProgress;

/// A blocking reader over a channel of byte chunks.
pub(crate) struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl ChunkReader {
    pub(crate) fn new(rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>) -> Self {
        Self {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

/// The pieces a [`ChannelWriter`] sends, as a stream for the engine.
pub(crate) fn receiver_stream(
    mut rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// A writer that hands its bytes, in pieces, to an async consumer.
pub(crate) struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
    buffer: Vec<u8>,
    progress: Arc<TransferProgress>,
}

/// The size of the pieces sent to the engine.
const SEND_PIECE: usize = 256 << 10;

impl ChannelWriter {
    pub(crate) fn new(
        tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
        progress: Arc<TransferProgress>,
    ) -> Self {
        Self {
            tx,
            buffer: Vec::with_capacity(SEND_PIECE),
            progress,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let piece = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(SEND_PIECE),
        ));
        self.progress
            .bytes_done
            .fetch_add(piece.len() as u64, Ordering::Relaxed);
        self.tx.blocking_send(Ok(piece)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the engine stopped reading")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.progress.stop_requested() {
            return Err(TransferProgress::stopped_error());
        }
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= SEND_PIECE {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}
