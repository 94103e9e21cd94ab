//! Counting database round trips on the wire: a TCP proxy between a client
//! and PostgreSQL that reads the frontend side of the protocol and counts the
//! messages after which a client waits for the server — `Sync` (the end of an
//! extended-protocol exchange, and sqlx's ping) and `Query` (a simple query).
//! Every connection through the proxy counts: pooled ones, the writer's own,
//! the key change feed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The protocol codes of the untyped messages a connection starts with.
const SSL_REQUEST: u32 = 80_877_103;
const GSS_REQUEST: u32 = 80_877_104;

/// A running proxy and its count.
pub(crate) struct RoundTripCounter {
    address: SocketAddr,
    waits: Arc<AtomicU64>,
    accepting: tokio::task::JoinHandle<()>,
}

impl RoundTripCounter {
    /// Listens on an ephemeral local port, forwarding to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("cannot bind the counting proxy")?;
        let address = listener.local_addr()?;
        let waits = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&waits);
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        let _ = relay(client, server, counted).await;
                    }
                });
            }
        });
        Ok(RoundTripCounter { address, waits, accepting })
    }

    /// The `host:port` clients connect to instead of the database's.
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Round trips counted so far.
    pub(crate) fn count(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }
}

impl Drop for RoundTripCounter {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Copies both ways; the client's side through the parser.
async fn relay(client: TcpStream, server: TcpStream, waits: Arc<AtomicU64>) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let down = tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
    let mut parser = FrontendParser::default();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = client_read.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        waits.fetch_add(parser.feed(&buffer[..read]), Ordering::Relaxed);
        server_write.write_all(&buffer[..read]).await?;
    }
    down.abort();
    Ok(())
}

/// Splits the frontend byte stream into messages: untyped ones (length,
/// then a code) until the startup message, then typed ones (a type byte,
/// then a length that counts itself).
#[derive(Default)]
struct FrontendParser {
    started: bool,
    pending: Vec<u8>,
}

impl FrontendParser {
    /// Takes more bytes; returns how many waiting messages they completed.
    fn feed(&mut self, bytes: &[u8]) -> u64 {
        self.pending.extend_from_slice(bytes);
        let mut waits = 0;
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            let header = if self.started { 5 } else { 8 };
            if rest.len() < header {
                break;
            }
            let length_at = usize::from(self.started);
            let length = u32::from_be_bytes([
                rest[length_at],
                rest[length_at + 1],
                rest[length_at + 2],
                rest[length_at + 3],
            ]) as usize;
            let total = length + length_at;
            if rest.len() < total {
                break;
            }
            if self.started {
                if matches!(rest[0], b'S' | b'Q') {
                    waits += 1;
                }
            } else {
                let code = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
                // After an SSL or GSS request the startup message is still to come.
                self.started = code != SSL_REQUEST && code != GSS_REQUEST;
            }
            at += total.max(1);
        }
        self.pending.drain(..at);
        waits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut message = vec![kind];
        message.extend_from_slice(&(u32::try_from(body.len()).unwrap() + 4).to_be_bytes());
        message.extend_from_slice(body);
        message
    }

    #[test]
    fn syncs_and_queries_are_counted_across_split_reads_after_the_startup() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&8u32.to_be_bytes());
        stream.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        let startup_body = b"\x00\x03\x00\x00user\x00postgres\x00\x00";
        stream.extend_from_slice(&(u32::try_from(startup_body.len()).unwrap() + 4).to_be_bytes());
        stream.extend_from_slice(startup_body);
        stream.extend(typed(b'Q', b"SELECT 1\x00"));
        stream.extend(typed(b'B', b"portal\x00stmt\x00"));
        stream.extend(typed(b'E', b"\x00\x00\x00\x00\x00"));
        stream.extend(typed(b'S', b""));
        stream.extend(typed(b'S', b""));
        let mut parser = FrontendParser::default();
        let counted: u64 = stream.chunks(3).map(|chunk| parser.feed(chunk)).sum();
        assert_eq!(counted, 3, "one query and two syncs; the startup's bytes are not messages");
    }
}
