//! The HTTP endpoints over TLS (`--tls-cert`/`--tls-key`): a client that
//! trusts the certificate is served; a plain-HTTP client or a failed
//! handshake gets nothing and does not stop the server; bad files are
//! refused at start with a message naming them and holding no key.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

struct Identity {
    dir: std::path::PathBuf,
    cert_der: rustls::pki_types::CertificateDer<'static>,
}

fn identity(name: &str) -> Identity {
    let dir = std::env::temp_dir().join(format!("forecast-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    Identity {
        dir,
        cert_der: cert.cert.der().clone(),
    }
}

async fn get_over_tls(
    addr: std::net::SocketAddr,
    trusted: &rustls::pki_types::CertificateDer<'static>,
) -> std::io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = String::new();
    tls.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn serves_https_and_survives_clients_that_do_not_speak_tls() {
    let id = identity("serve");
    let tls = forecast_runtime::http::tls_config(&id.dir.join("cert.pem"), &id.dir.join("key.pem"))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let token = CancellationToken::new();
    let router = Router::new().route("/healthz", get(|| async { "ok\n" }));
    let (limits, stop) = (forecast_runtime::http::HttpLimits::default(), token.clone());
    let server = tokio::spawn(async move {
        forecast_runtime::http::serve_with(listener, router, Some(tls), limits, stop).await
    });

    let answer = get_over_tls(addr, &id.cert_der).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");

    // Plain HTTP to the TLS port: no HTTP answer.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out).await;
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));

    // A client that does not trust the certificate fails its handshake.
    let stranger = identity("stranger");
    assert!(get_over_tls(addr, &stranger.cert_der).await.is_err());

    // The server still serves.
    assert!(
        get_over_tls(addr, &id.cert_der)
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200 OK")
    );
    token.cancel();
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&id.dir);
    let _ = std::fs::remove_dir_all(&stranger.dir);
}

#[test]
fn bad_files_are_refused_naming_them_without_the_key() {
    let id = identity("bad");
    let (cert, key) = (id.dir.join("cert.pem"), id.dir.join("key.pem"));
    let key_text = std::fs::read_to_string(&key).unwrap();
    // Certificate and key swapped.
    let err = forecast_runtime::http::tls_config(&key, &cert)
        .unwrap_err()
        .to_string();
    assert!(err.contains("key.pem") || err.contains("cert.pem"), "{err}");
    for line in key_text.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!err.contains(line), "{err}");
    }
    // A key that is not the certificate's.
    let other = identity("other");
    let err = forecast_runtime::http::tls_config(&cert, &other.dir.join("key.pem"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("do not make a TLS identity"), "{err}");
    let missing = forecast_runtime::http::tls_config(&id.dir.join("nope.pem"), &key)
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("nope.pem") && missing.contains("--tls-cert"),
        "{missing}"
    );
    let _ = std::fs::remove_dir_all(&id.dir);
    let _ = std::fs::remove_dir_all(&other.dir);
}
