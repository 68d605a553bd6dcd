//! What the HTTP server refuses or makes wait, so that no client holds its
//! memory or its connections without bound: an oversized request head, a
//! client that sends no request (or idles between requests), and more
//! connections than its limit. Every wait here is bounded.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::Router;
use axum::routing::get;
use forecast_runtime::http::{HttpLimits, MAX_HEADER_BYTES, serve_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// A server of `/healthz` with `limits`; cancelled when the token drops.
async fn server(limits: HttpLimits) -> (String, tokio_util::sync::DropGuard) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let token = CancellationToken::new();
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/big", get(|| async { vec![b'x'; BIG] }));
    let stop = token.clone();
    tokio::spawn(async move { serve_with(listener, router, None, limits, stop).await });
    (addr, token.drop_guard())
}

const GET: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// The body of `/big`: what a client that never reads is sent.
const BIG: usize = 256 << 10;

/// Reads one response (headers and the 3-byte body of `/healthz`).
async fn response(stream: &mut TcpStream) -> String {
    let mut buf = vec![0; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).ends_with("ok\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        assert!(
            n > 0,
            "closed before the answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(got).unwrap()
}

/// Whether the server closes `stream` within `within` (reading nothing).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0; 64];
    matches!(
        tokio::time::timeout(within, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

fn limits(max_connections: u32, header_timeout_seconds: u64) -> HttpLimits {
    HttpLimits {
        max_connections,
        header_timeout_seconds,
        ..HttpLimits::default()
    }
}

/// A connection with a small receive buffer that asks for `/big` 64 times
/// (16 MiB) and reads nothing.
async fn never_reading(addr: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let requests = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n".repeat(64);
    stream.write_all(&requests).await.unwrap();
    stream
}

/// A client that sends requests and reads nothing is disconnected once a
/// write of the server's has waited for it for the write timeout.
#[tokio::test]
async fn a_client_that_reads_nothing_is_disconnected_after_the_write_timeout() {
    let (addr, _stop) = server(HttpLimits {
        write_timeout_seconds: 1,
        ..HttpLimits::default()
    })
    .await;
    let mut stream = never_reading(&addr).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Reading now gets what was sent before the server gave up, then the end.
    let mut got = 0usize;
    let mut buf = vec![0; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "still sending after {got} bytes");
    assert!(got < 64 * BIG, "every response was sent ({got} bytes)");
}

/// 300 clients that send requests and never read hold no slot from a
/// client that reads: with every slot taken, those stalled for 250 ms give
/// way, and `/healthz` answers within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_clients_that_never_read_lock_nobody_out() {
    let (addr, _stop) = server(HttpLimits::default()).await;
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(never_reading(&addr).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    let mut reader = TcpStream::connect(&addr).await.unwrap();
    reader.write_all(GET).await.unwrap();
    let answer = response(&mut reader).await;
    let took = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    drop(held);
}

#[tokio::test]
async fn a_silent_or_idle_client_is_disconnected_after_the_header_timeout() {
    let (addr, _stop) = server(limits(8, 1)).await;
    // Connected, and never a byte sent.
    let mut silent = TcpStream::connect(&addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    // Half a request head, never finished (slowloris).
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await);
    // Served, then idle on a keep-alive connection.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(GET).await.unwrap();
    assert!(response(&mut idle).await.starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_client_that_keeps_sending_requests_is_not_cut_off() {
    let (addr, _stop) = server(limits(8, 1)).await;
    let mut busy = TcpStream::connect(&addr).await.unwrap();
    // Three requests over 1.5 s, each within the timeout of the last.
    for _ in 0..3 {
        busy.write_all(GET).await.unwrap();
        assert!(response(&mut busy).await.starts_with("HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sends a GET of `/healthz` with `headers` (CRLF-terminated lines) on a
/// connection of its own; returns all the server answered within 5 s.
async fn send_head(addr: &str, headers: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{headers}\r\n");
    // The server may close before it has read everything.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await;
    answer
}

#[tokio::test]
async fn a_request_head_over_the_limit_is_refused_with_431() {
    let (addr, _stop) = server(HttpLimits::default()).await;
    let big = "a".repeat(MAX_HEADER_BYTES);
    let answer = send_head(&addr, &format!("X-Big: {big}\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // And more headers than allowed (70: fewer than hyper's own 100).
    let many: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = send_head(&addr, &many).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");

    // A request within the limits is still served.
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream.write_all(GET).await.unwrap();
    assert!(response(&mut stream).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_over_the_limit_wait_until_one_closes() {
    let (addr, _stop) = server(limits(2, 30)).await;
    let mut first = TcpStream::connect(&addr).await.unwrap();
    first.write_all(GET).await.unwrap();
    assert!(response(&mut first).await.starts_with("HTTP/1.1 200"));
    let mut second = TcpStream::connect(&addr).await.unwrap();
    second.write_all(GET).await.unwrap();
    assert!(response(&mut second).await.starts_with("HTTP/1.1 200"));
    // Both slots are held (keep-alive). A third connection is queued, not
    // served...
    let mut third = TcpStream::connect(&addr).await.unwrap();
    third.write_all(GET).await.unwrap();
    let mut buf = [0; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf))
            .await
            .is_err(),
        "served over the limit"
    );
    // ...until one of the two goes.
    drop(first);
    assert!(response(&mut third).await.starts_with("HTTP/1.1 200"));
    // The connection still open is served as before.
    second.write_all(GET).await.unwrap();
    assert!(response(&mut second).await.starts_with("HTTP/1.1 200"));
}
