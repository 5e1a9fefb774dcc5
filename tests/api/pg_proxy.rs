//! A TCP proxy between onsale and PostgreSQL that reads the client's side of the wire
//! protocol and records every statement the server is asked to run, in order: simple queries
//! (`Q`, split on `;`) and prepared statements each time they are bound (`B`, looked up by
//! the name their `P`arse gave them). Bytes pass through unchanged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Protocol codes of the untyped messages that may come before the startup message.
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;

pub struct PgProxy {
    port: u16,
    statements: Arc<Mutex<Vec<String>>>,
    cut: Arc<Mutex<Option<String>>>,
}

impl PgProxy {
    /// Listens on a free port and forwards each connection to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let statements = Arc::new(Mutex::new(Vec::new()));
        let cut: Arc<Mutex<Option<String>>> = Arc::default();
        let (log, armed) = (statements.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let (log, armed) = (log.clone(), armed.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        relay(client, server, log, armed).await;
                    }
                });
            }
        });
        Self {
            port,
            statements,
            cut,
        }
    }

    /// Once: the next `COMMIT` of a transaction that ran a statement containing `marker` is
    /// passed to PostgreSQL, and then that connection is cut before the answer comes back —
    /// the transaction commits, and the client cannot know.
    pub fn cut_after_commit_of(&self, marker: &str) {
        *self.cut.lock().expect("proxy cut") = Some(marker.to_lowercase());
    }

    /// Whether the armed cut has happened.
    pub fn cut_done(&self) -> bool {
        self.cut.lock().expect("proxy cut").is_none()
    }

    /// `url` (a PostgreSQL URL) pointed at this proxy, without TLS so the protocol is readable.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').expect("URL with a host");
        let path = rest.split_once('/').map_or("", |(_, p)| p);
        let sep = if path.contains('?') { '&' } else { '?' };
        format!(
            "{scheme_user}@127.0.0.1:{}/{path}{sep}sslmode=disable",
            self.port
        )
    }

    /// Statements recorded since the last call, emptying the record.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.statements.lock().expect("proxy log"))
    }
}

/// The `host:port` of a PostgreSQL URL.
pub fn host_port(url: &str) -> String {
    let rest = url.split_once('@').map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().expect("host").to_owned()
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    log: Arc<Mutex<Vec<String>>>,
    cut: Arc<Mutex<Option<String>>>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let downstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
    });
    let mut sniffer = Sniffer::default();
    let mut buf = vec![0u8; 64 * 1024];
    // This connection's open transaction ran the armed marker.
    let mut marked = false;
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut cut_now = false;
        for statement in sniffer.feed(&buf[..n]) {
            let lower = statement.to_lowercase();
            {
                let mut armed = cut.lock().expect("proxy cut");
                if let Some(marker) = armed.as_deref() {
                    if lower.contains(marker) {
                        marked = true;
                    } else if lower == "commit" && marked {
                        *armed = None;
                        cut_now = true;
                    }
                }
            }
            if lower == "commit" || lower == "rollback" {
                marked = false;
            }
            log.lock().expect("proxy log").push(statement);
        }
        if cut_now {
            // Nothing more reaches the client; PostgreSQL gets the COMMIT and commits.
            downstream.abort();
            let _ = server_write.write_all(&buf[..n]).await;
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            return;
        }
        if server_write.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    downstream.abort();
}

/// Reads frontend messages out of the byte stream.
#[derive(Default)]
struct Sniffer {
    pending: Vec<u8>,
    started: bool,
    prepared: HashMap<String, String>,
}

impl Sniffer {
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        loop {
            if !self.started {
                // Untyped: length, then a protocol code.
                let Some(len) = be_i32(&self.pending, 0) else {
                    break;
                };
                let len = usize::try_from(len).unwrap_or(0);
                if self.pending.len() < len || len < 8 {
                    break;
                }
                let code = be_i32(&self.pending, 4).unwrap_or(0);
                self.started = code != SSL_REQUEST && code != GSSENC_REQUEST;
                self.pending.drain(..len);
                continue;
            }
            let Some(len) = be_i32(&self.pending, 1) else {
                break;
            };
            let total = 1 + usize::try_from(len).unwrap_or(0);
            if self.pending.len() < total {
                break;
            }
            let tag = self.pending[0];
            let body: Vec<u8> = self.pending[5..total].to_vec();
            self.pending.drain(..total);
            let mut fields = body
                .split(|b| *b == 0)
                .map(|f| String::from_utf8_lossy(f).into_owned());
            match tag {
                b'Q' => out.extend(
                    fields
                        .next()
                        .unwrap_or_default()
                        .split(';')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                ),
                b'P' => {
                    let name = fields.next().unwrap_or_default();
                    let query = fields.next().unwrap_or_default();
                    self.prepared.insert(name, query);
                }
                b'B' => {
                    let _portal = fields.next();
                    let name = fields.next().unwrap_or_default();
                    if let Some(query) = self.prepared.get(&name) {
                        out.push(query.clone());
                    }
                }
                _ => {}
            }
        }
        out
    }
}

fn be_i32(bytes: &[u8], at: usize) -> Option<i32> {
    let slice: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(i32::from_be_bytes(slice))
}
