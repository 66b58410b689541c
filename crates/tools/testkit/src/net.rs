//! Small pieces of test plumbing for servers and keys.

use base64::Engine as _;

/// A loopback port nothing listens on: bound by the OS, then released. For a server a test
/// starts there (a private PostgreSQL) or for a client that must find nobody there.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a loopback port")
        .port()
}

/// `der` armoured as PEM under `label` (`PRIVATE KEY`, `RSA PRIVATE KEY`, …), 64 columns.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}
