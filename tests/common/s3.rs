//! A real S3 server for the tests: moto's server (`moto_server`, from
//! PyPI's `moto[server]`, which `scripts/test-deps.sh` installs), started
//! on 127.0.0.1 with a free port by the first test that asks, once per
//! test binary, and stopped when the test binary exits: it runs under a
//! shell that kills it as soon as its standard input (a pipe this process
//! holds) closes. Each test gets a bucket of its own. Nothing here talks to
//! anything but loopback.
//!
//! Where no moto server can be found, [`server`] prints why and returns
//! `None`, and the object-store tests skip.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The running server.
pub struct Server {
    pub port: u16,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
}

/// A bucket of one test.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub port: u16,
    pub name: String,
}

fn moto_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_MOTO_SERVER") {
        return Some(PathBuf::from(p));
    }
    let home_venv = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cache/strata-test/moto/bin/moto_server"));
    if let Some(p) = home_venv.filter(|p| p.exists()) {
        return Some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("moto_server"))
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The server, started on first use; `None` (after printing why) where
/// there is none to start.
pub fn server(test: &str) -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    let s = SERVER.get_or_init(|| {
        let Some(bin) = moto_binary() else {
            eprintln!(
                "object-store tests skip: no moto_server (pip install 'moto[server]', which \
                 scripts/test-deps.sh does)"
            );
            return None;
        };
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new("sh")
                .arg("-c")
                .arg(r#""$0" -H 127.0.0.1 -p "$1" >/dev/null 2>&1 & pid=$!; read _ ; kill $pid 2>/dev/null; wait $pid 2>/dev/null"#)
                .arg(&bin)
                .arg(port.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .ok()?;
            let stdin = child.stdin.take().unwrap();
            // Wait until it answers (a readiness wait, not an assertion).
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if request(port, "GET", "/", &[], b"").is_some_and(|(code, _)| code == 200) {
                    return Some(Server {
                        port,
                        _child: Mutex::new(child),
                        _stdin: Mutex::new(stdin),
                    });
                }
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            drop(stdin);
            let _ = child.wait();
        }
        eprintln!("object-store tests skip: moto_server at {} did not start", bin.display());
        None
    });
    if s.is_none() {
        eprintln!("skipping {test}: no S3 server");
    }
    s.as_ref()
}

/// A fresh bucket on the server.
pub fn bucket(test: &str) -> Option<Bucket> {
    static N: AtomicU64 = AtomicU64::new(0);
    let server = server(test)?;
    let name = format!(
        "t{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let (code, body) =
        request(server.port, "PUT", &format!("/{name}"), &[], b"").expect("the S3 server answers");
    assert_eq!(
        code,
        200,
        "create bucket: {}",
        String::from_utf8_lossy(&body)
    );
    Some(Bucket {
        port: server.port,
        name,
    })
}

/// One plain HTTP/1.1 request (moto does not check signatures): the
/// status and body.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(
        &format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    // moto checks no signature, but refers anonymous writes to the
    // bucket's ACL: any credential will do.
    head.push_str(
        "Authorization: AWS4-HMAC-SHA256 Credential=strata-test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n",
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text_end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&out[..text_end]).into_owned();
    let code: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut rest = out[text_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        rest = dechunk(&rest);
    }
    Some((code, rest))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

fn encode(key: &str) -> String {
    key.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Bucket {
    /// The job-file fragment of a destination in this bucket.
    pub fn destination(&self, prefix: &str) -> String {
        format!(
            r#""destination": "s3://{}/{prefix}", "s3": {{"endpoint": "http://127.0.0.1:{}"}}"#,
            self.name, self.port
        )
    }

    /// Every key below `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{}?list-type=2&prefix={}", self.name, encode(prefix));
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={}", encode(t)));
            }
            let (code, body) = request(self.port, "GET", &path, &[], b"").unwrap();
            assert_eq!(code, 200);
            let text = String::from_utf8_lossy(&body).into_owned();
            for part in text.split("<Key>").skip(1) {
                let key = part.split("</Key>").next().unwrap();
                keys.push(
                    key.replace("&amp;", "&")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                        .replace("&quot;", "\"")
                        .replace("&apos;", "'"),
                );
            }
            token = text
                .split("<NextContinuationToken>")
                .nth(1)
                .and_then(|t| t.split("</NextContinuationToken>").next())
                .map(String::from);
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// An object's bytes.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        match request(
            self.port,
            "GET",
            &format!("/{}/{}", self.name, encode(key)),
            &[],
            b"",
        ) {
            Some((200, body)) => Some(body),
            _ => None,
        }
    }

    /// Put an object.
    pub fn put(&self, key: &str, body: &[u8]) {
        let (code, _) = request(
            self.port,
            "PUT",
            &format!("/{}/{}", self.name, encode(key)),
            &[],
            body,
        )
        .unwrap();
        assert_eq!(code, 200);
    }

    /// Delete an object.
    pub fn delete(&self, key: &str) {
        request(
            self.port,
            "DELETE",
            &format!("/{}/{}", self.name, encode(key)),
            &[],
            b"",
        )
        .unwrap();
    }
}
