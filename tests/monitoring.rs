//! Monitoring from outside: the Prometheus textfile (`--metrics-file`)
//! after runs of some or all jobs and after a daemon run, and healthcheck
//! pings against an HTTP server started by the test on 127.0.0.1.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::Env;
use serde_json::Value;

/// One request the server received.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    body: String,
}

/// An HTTP server on 127.0.0.1 that answers 200 to everything and records
/// each request. It stops when dropped, after 200 requests, or after two
/// minutes, whichever comes first.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let requests = requests.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(120);
                let mut served = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && served < 200 {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            served += 1;
                            if let Some(r) = serve(stream) {
                                requests.lock().unwrap().push(r);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => break,
                    }
                }
            })
        };
        Server {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The requests so far; strata waits for each answer, so after it
    /// exits every ping it sent is here.
    fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *self.requests.lock().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read one request (recorded before the answer goes out), answer 200.
fn serve(stream: TcpStream) -> Option<Request> {
    stream.set_nonblocking(false).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let request = Request {
        method,
        path,
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let mut stream = stream;
    let _ =
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
    Some(request)
}

/// The samples of a metrics file: (metric, job) -> value. Also checks
/// that every sample's metric has HELP and TYPE lines before it.
fn samples(path: &Path) -> BTreeMap<(String, String), f64> {
    let text = fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    let mut described = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(kind, "gauge", "{line}");
            described.push(name.to_string());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (name, rest) = line.split_once("{job=\"").unwrap();
        let (job, value) = rest.split_once("\"} ").unwrap();
        assert!(described.iter().any(|d| d == name), "no TYPE before {line}");
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
        out.insert((name.to_string(), job.to_string()), value.parse().unwrap());
    }
    out
}

fn get(samples: &BTreeMap<(String, String), f64>, name: &str, job: &str) -> f64 {
    *samples
        .get(&(name.to_string(), job.to_string()))
        .unwrap_or_else(|| panic!("no {name} for {job} in {samples:?}"))
}

fn two_jobs() -> Env {
    let env = Env::new();
    env.write("src-a/docs/one.txt", "1");
    env.write("src-a/docs/two.txt", "22");
    env.write("src-b/x.txt", "xxx");
    env.simple_job("a", r#""track_dirs": ["docs"]"#);
    env.simple_job("b", r#""include_dirs": ["."]"#);
    env
}

#[test]
fn the_metrics_file_has_every_job_and_keeps_the_ones_that_did_not_run() {
    let env = two_jobs();
    let metrics = env.path("metrics/strata.prom");
    fs::create_dir_all(metrics.parent().unwrap()).unwrap();
    let file = metrics.to_str().unwrap();
    let (code, report) = env.run_json(&["--metrics-file", file, "run-all"]);
    assert_eq!(code, 0, "{report:#}");
    let first = samples(&metrics);
    for job in ["a", "b"] {
        assert_eq!(get(&first, "strata_last_status", job), 0.0);
        assert!(get(&first, "strata_last_success_timestamp_seconds", job) > 1.6e9);
        assert!(get(&first, "strata_last_duration_seconds", job) >= 0.0);
    }
    assert_eq!(get(&first, "strata_files_selected", "a"), 2.0);
    assert_eq!(get(&first, "strata_files_new", "a"), 2.0);
    assert_eq!(get(&first, "strata_bytes_copied", "a"), 3.0);
    assert_eq!(get(&first, "strata_mirror_files", "b"), 1.0);
    for name in [
        "strata_files_changed",
        "strata_files_deleted",
        "strata_files_removed",
        "strata_file_errors",
    ] {
        assert_eq!(get(&first, name, "a"), 0.0, "{name}");
    }

    // Job a fails (its source is gone); b does not run.
    fs::remove_dir_all(env.path("src-a")).unwrap();
    let (code, _) = env.run_json(&["--metrics-file", file, "run", "a"]);
    assert_eq!(code, 1);
    let second = samples(&metrics);
    assert_eq!(get(&second, "strata_last_status", "a"), 2.0);
    assert_eq!(
        get(&second, "strata_last_success_timestamp_seconds", "a"),
        get(&first, "strata_last_success_timestamp_seconds", "a"),
        "a failure keeps the last success time"
    );
    assert!(
        get(&second, "strata_last_run_timestamp_seconds", "a")
            >= get(&first, "strata_last_run_timestamp_seconds", "a")
    );
    let b = |s: &BTreeMap<(String, String), f64>| -> Vec<f64> {
        s.iter()
            .filter(|((_, job), _)| job == "b")
            .map(|(_, v)| *v)
            .collect()
    };
    assert_eq!(b(&second), b(&first), "b's values are kept as they were");

    // A job removed from the jobs dir leaves the file at the next write.
    fs::remove_file(env.jobs().join("b.json")).unwrap();
    let (_, _) = env.run_json(&["--metrics-file", file, "run", "a"]);
    assert!(samples(&metrics).keys().all(|(_, job)| job == "a"));
}

#[test]
fn a_dry_run_writes_no_metrics() {
    let env = two_jobs();
    let metrics = env.path("strata.prom");
    let file = metrics.to_str().unwrap();
    let (code, _) = env.run_json(&["--metrics-file", file, "run-all", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(!metrics.exists());
}

#[test]
fn healthchecks_are_pinged_on_start_success_and_failure() {
    let server = Server::start();
    let env = Env::new();
    env.write("src-home/docs/a.txt", "alpha");
    env.simple_job(
        "home",
        &format!(
            r#""track_dirs": ["docs"], "healthcheck": "{}""#,
            server.url("/ping/abc")
        ),
    );
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{report:#}");
    let requests = server.take();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/ping/abc/start", "/ping/abc"]);
    assert!(requests.iter().all(|r| r.method == "POST"));
    assert!(
        requests[1].body.starts_with("home: success: 1 new"),
        "{}",
        requests[1].body
    );

    // The source disappears: the run fails and says so.
    fs::remove_dir_all(env.path("src-home")).unwrap();
    let (code, _) = env.run_json(&["run", "home"]);
    assert_eq!(code, 1);
    let requests = server.take();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/ping/abc/start", "/ping/abc/fail"]);
    assert!(
        requests[1].body.starts_with("home: failed:"),
        "{}",
        requests[1].body
    );

    // A dry run pings nothing.
    let (_, _) = env.run_json(&["run", "home", "--dry-run"]);
    assert!(server.take().is_empty());
}

#[test]
fn an_unreachable_healthcheck_is_a_warning_not_a_failure() {
    // A port nobody listens on: bind, note the port, close.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = Env::new();
    env.write("src-home/a.txt", "alpha");
    env.simple_job(
        "home",
        &format!(r#""track_dirs": ["."], "healthcheck": "http://127.0.0.1:{port}/x""#),
    );
    let (code, report) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{report:#}");
    let row = &report["jobs"][0];
    assert_eq!(row["status"], "success");
    let warnings: Vec<&str> = row["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with(&format!(
            "healthcheck ping http://127.0.0.1:{port}/x/start failed"
        )),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with(&format!(
            "healthcheck ping http://127.0.0.1:{port}/x failed"
        )),
        "{warnings:?}"
    );
}

#[test]
fn healthcheck_urls_are_validated() {
    let env = Env::new();
    env.write("src-x/a", "a");
    env.simple_job(
        "x",
        r#""track_dirs": ["."], "healthcheck": "hc-ping.com/abc""#,
    );
    env.simple_job(
        "y",
        r#""track_dirs": ["."], "healthcheck": "https://exa mple.org/x""#,
    );
    let (code, out, _) = env.run(&["validate"]);
    assert_eq!(code, 1, "{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.contains(": error: ")).collect();
    assert_eq!(errors.len(), 2, "{out}");
    assert!(
        errors[0].contains("x.json:1:") && errors[0].contains("healthcheck"),
        "{out}"
    );
    assert!(
        errors[1].contains("y.json:1:") && errors[1].contains("healthcheck"),
        "{out}"
    );
}

#[test]
fn the_daemon_writes_metrics_after_each_run() {
    let server = Server::start();
    let env = Env::new();
    env.write("src-tick/a.txt", "a");
    env.simple_job(
        "tick",
        &format!(
            r#""track_dirs": ["."], "schedule": "* * * * * *", "healthcheck": "{}""#,
            server.url("/hc")
        ),
    );
    let metrics = env.path("strata.prom");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_strata"))
        .current_dir(env.root())
        .env_remove("STRATA_JOBS_DIR")
        .env_remove("RUST_LOG")
        .arg("--jobs-dir")
        .arg(env.jobs())
        .arg("--metrics-file")
        .arg(&metrics)
        .arg("daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Poll for the effect with a generous deadline; kill the daemon either way.
    let started = Instant::now();
    let mut written = false;
    while started.elapsed() < Duration::from_secs(30) {
        if metrics.exists() {
            written = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill(2) on the child we started.
    unsafe { libc::kill(daemon.id() as libc::pid_t, libc::SIGTERM) };
    let status = daemon.wait().unwrap();
    assert!(written, "the daemon wrote no metrics file");
    assert!(status.success(), "{status}");
    let s = samples(&metrics);
    assert_eq!(get(&s, "strata_last_status", "tick"), 0.0);
    let paths: Vec<String> = server.take().into_iter().map(|r| r.path).collect();
    assert!(
        paths.starts_with(&["/hc/start".to_string(), "/hc".to_string()]),
        "{paths:?}"
    );
}

/// Pings that get through leave no trace in the report.
#[test]
fn a_successful_run_with_a_healthcheck_has_no_warnings() {
    let server = Server::start();
    let env = Env::new();
    env.write("src-home/a.txt", "alpha");
    env.simple_job(
        "home",
        &format!(
            r#""track_dirs": ["."], "healthcheck": "{}""#,
            server.url("/ok")
        ),
    );
    let (code, report): (i32, Value) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0);
    assert!(report["jobs"][0].get("warnings").is_none(), "{report:#}");
}
