//! A blocking facade over `object_store`'s S3 client: the few requests
//! strata makes (get, ranged get, conditional put, server-side copy, delete,
//! list, multipart upload, streaming download), each named with the bucket, the
//! endpoint and the key when it fails, and counted.
//!
//! `object_store` is async. Its futures run on one small tokio runtime of
//! strata's own (two I/O threads, made on first use), never on the rayon
//! pool: a pool thread that needs an object calls [`Bucket`] and waits in
//! `block_on` while the runtime's threads drive the sockets. The runtime
//! never waits on the pool, so no pool thread ever waits on work that the
//! pool itself must run (what deadlocks a pool, see STYLE).
//!
//! Every request is retried with exponential backoff on throttling, 5xx
//! and connection errors (`object_store`'s retry layer), and bounded in
//! time (connect 5 s, request 60 s, all retries of one request 120 s): a
//! store that cannot be reached fails the run, it never hangs it.

use std::fs::File;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder, S3ConditionalPut};
use object_store::path::{Path as Key, PathPart};
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};

use super::config::{Connection, Credentials, ObjectOptions, process_env, resolve};
use super::url::ObjectUrl;
use crate::entry::{Hash, RelPath};

/// A request that failed, with what it was and where.
#[derive(Debug, thiserror::Error)]
#[error("{url} (endpoint {endpoint}): {op} {key}: {message}")]
pub struct ObjectError {
    /// The destination.
    pub url: String,
    /// The endpoint.
    pub endpoint: String,
    /// The request (`GET`, `PUT`, `COPY`, `LIST`, `DELETE`, `CONNECT`).
    pub op: &'static str,
    /// The key, relative to the destination's prefix.
    pub key: String,
    /// Why.
    pub message: String,
}

/// One segment of a source path as a key segment: the name as it is
/// (UTF-8, so that `aws s3 ls` and rclone show `mirror/über.txt`), unless
/// it holds a `%` or a control character, which are percent-encoded with
/// what else `object_store` encodes (`100%25.txt`). A plain name never
/// holds `%` and an encoded one always does, so no two names share a key,
/// and [`Bucket::key`] reads either back as the same key.
pub fn key_part(name: &str) -> String {
    if !name.contains('%') && PathPart::parse(name).is_ok() {
        return name.to_string();
    }
    PathPart::from(name).as_ref().to_string()
}

/// What a conditional get found.
#[derive(Debug)]
pub enum Fetched {
    /// No such object.
    Missing,
    /// The object still has the ETag asked about.
    NotModified,
    /// The object's bytes and ETag.
    Got {
        /// Its bytes.
        bytes: Vec<u8>,
        /// Its ETag.
        etag: Option<String>,
        /// Its `x-amz-meta-strata-run` (see [`RUN_ATTRIBUTE`]).
        run: Option<String>,
    },
}

/// How a put may replace what is there.
#[derive(Debug, Clone)]
pub enum Write {
    /// Whatever is there.
    Overwrite,
    /// Only where nothing is (`If-None-Match: *`).
    Create,
    /// Only the version with this ETag (`If-Match`).
    Replace(String),
}

/// The user metadata that names the run which wrote an index: how
/// recovery tells whether a staged run committed.
pub const RUN_ATTRIBUTE: &str = "strata-run";

/// A conditional write that lost: someone else's object is there.
#[derive(Debug)]
pub struct Conflict;

/// How big a part of a multipart upload is, and above which size a file
/// goes up in parts: memory per upload is one part.
pub const PART: usize = 8 * 1024 * 1024;

/// The destination's bucket and prefix, connected.
#[derive(Debug)]
pub struct Bucket {
    url: ObjectUrl,
    endpoint: String,
    store: AmazonS3,
    root: Vec<String>,
    requests: AtomicU64,
    uploaded: AtomicU64,
}

/// The runtime object requests run on (see the module's header).
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("strata-io")
            .enable_all()
            .build()
            .expect("an I/O runtime")
    })
}

/// The text of an `object_store` error, without its repetition of the key.
fn message(e: &object_store::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

impl Bucket {
    /// Connect to the destination `url` as `options` and the environment
    /// say (no request is made yet).
    pub fn open(url: &ObjectUrl, options: &ObjectOptions) -> Result<Bucket, ObjectError> {
        let fail = |endpoint: String, message: String| ObjectError {
            url: url.to_string(),
            endpoint,
            op: "CONNECT",
            key: String::new(),
            message,
        };
        let conn = resolve(options, &process_env).map_err(|m| fail("?".into(), m))?;
        // object_store's client speaks TLS through rustls: give it ring,
        // the provider the rest of strata uses (before any client is made).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let endpoint = conn.endpoint_text();
        let store = build(url, &conn).map_err(|e| fail(endpoint.clone(), message(&e)))?;
        Ok(Bucket {
            root: url
                .prefix
                .split('/')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            url: url.clone(),
            endpoint,
            store,
            requests: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
        })
    }

    /// The destination's URL.
    pub fn url(&self) -> &ObjectUrl {
        &self.url
    }

    /// The endpoint, as messages name it.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Requests made so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Bytes uploaded so far (server-side copies move none).
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::Relaxed)
    }

    /// The key of `rel` (`/`-separated plain segments, e.g. `.strata/index`)
    /// below the prefix.
    ///
    /// The segments are taken as keys spell them, so that what
    /// [`Bucket::shown`] printed (a plan's entries, say) names the same key
    /// again: see [`key_part`].
    pub fn key(&self, rel: &str) -> Key {
        self.root
            .iter()
            .map(|s| PathPart::from(s.as_str()))
            .chain(
                rel.split('/')
                    .filter(|s| !s.is_empty())
                    .map(|s| PathPart::parse(s).unwrap_or_else(|_| PathPart::from(s))),
            )
            .collect()
    }

    /// The key of a source path below `top` (`mirror`, `backup_X/track`,
    /// …). A name that is not UTF-8 is spelled `\u{FFFD}hex:` and its
    /// bytes in hex: keys are text, and the index and the records keep the
    /// exact bytes.
    pub fn path_key(&self, top: &str, path: &RelPath) -> Key {
        let mut parts: Vec<String> = self
            .root
            .iter()
            .map(|s| PathPart::from(s.as_str()).as_ref().to_string())
            .collect();
        parts.extend(top.split('/').filter(|s| !s.is_empty()).map(key_part));
        for c in path.components() {
            parts.push(match std::str::from_utf8(c) {
                Ok(text) => key_part(text),
                Err(_) => format!("\u{FFFD}hex:{}", crate::entry::hex(c)),
            });
        }
        parts
            .iter()
            .map(|p| PathPart::parse(p).expect("a key segment, checked or encoded"))
            .collect()
    }

    /// A key shown relative to the prefix, for messages (and the plan).
    pub fn shown(&self, key: &Key) -> String {
        let text = key.as_ref();
        let prefix = self.root.join("/");
        text.strip_prefix(&prefix)
            .map(|t| t.trim_start_matches('/'))
            .unwrap_or(text)
            .to_string()
    }

    fn error(&self, op: &'static str, key: &Key, e: &object_store::Error) -> ObjectError {
        ObjectError {
            url: self.url.to_string(),
            endpoint: self.endpoint.clone(),
            op,
            key: self.shown(key),
            message: message(e),
        }
    }

    fn block<F: Future>(&self, f: F) -> F::Output {
        self.requests.fetch_add(1, Ordering::Relaxed);
        runtime().block_on(f)
    }

    /// Get an object; with `if_none_match`, only if its ETag changed.
    pub fn get(&self, key: &Key, if_none_match: Option<&str>) -> Result<Fetched, ObjectError> {
        let options = GetOptions {
            if_none_match: if_none_match.map(String::from),
            ..GetOptions::default()
        };
        let result = self.block(async {
            let r = self.store.get_opts(key, options).await?;
            let etag = r.meta.e_tag.clone();
            let run = r
                .attributes
                .get(&Attribute::Metadata(RUN_ATTRIBUTE.into()))
                .map(|v| v.to_string());
            let bytes = r.bytes().await?;
            Ok::<_, object_store::Error>((bytes.to_vec(), etag, run))
        });
        match result {
            Ok((bytes, etag, run)) => Ok(Fetched::Got { bytes, etag, run }),
            Err(object_store::Error::NotFound { .. }) => Ok(Fetched::Missing),
            Err(object_store::Error::NotModified { .. }) => Ok(Fetched::NotModified),
            Err(e) => Err(self.error("GET", key, &e)),
        }
    }

    /// Put bytes, as `mode` allows; the new ETag.
    pub fn put(
        &self,
        key: &Key,
        bytes: Vec<u8>,
        mode: Write,
    ) -> Result<Result<Option<String>, Conflict>, ObjectError> {
        self.put_with(key, bytes, mode, None)
    }

    /// Put bytes with the run that wrote them as user metadata
    /// ([`RUN_ATTRIBUTE`]).
    pub fn put_with(
        &self,
        key: &Key,
        bytes: Vec<u8>,
        mode: Write,
        run: Option<&str>,
    ) -> Result<Result<Option<String>, Conflict>, ObjectError> {
        let len = bytes.len() as u64;
        let mut attributes = Attributes::new();
        if let Some(run) = run {
            attributes.insert(
                Attribute::Metadata(RUN_ATTRIBUTE.into()),
                run.to_string().into(),
            );
        }
        let options = PutOptions {
            attributes,
            mode: match mode {
                Write::Overwrite => PutMode::Overwrite,
                Write::Create => PutMode::Create,
                Write::Replace(e_tag) => PutMode::Update(UpdateVersion {
                    e_tag: Some(e_tag),
                    version: None,
                }),
            },
            ..PutOptions::default()
        };
        match self.block(self.store.put_opts(key, PutPayload::from(bytes), options)) {
            Ok(r) => {
                self.uploaded.fetch_add(len, Ordering::Relaxed);
                Ok(Ok(r.e_tag))
            }
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. }
                | object_store::Error::NotFound { .. },
            ) => Ok(Err(Conflict)),
            Err(e) => Err(self.error("PUT", key, &e)),
        }
    }

    /// Upload `size` bytes of `file`, hashing them as they go (xxh3-128,
    /// the hash strata records), in one request or, above [`PART`], as a
    /// multipart upload of one part at a time. `Ok(None)`: the file is not
    /// `size` bytes long any more (it changed while being read).
    pub fn upload_file(
        &self,
        key: &Key,
        file: &File,
        size: u64,
        progress: &dyn Fn(u64),
    ) -> Result<Option<Hash>, UploadError> {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        let read_part = |pos: u64,
                         hasher: &mut xxhash_rust::xxh3::Xxh3|
         -> Result<Option<Vec<u8>>, UploadError> {
            let want = (size - pos).min(PART as u64) as usize;
            let mut buf = vec![0u8; want];
            let mut got = 0;
            while got < want {
                match file.read_at(&mut buf[got..], pos + got as u64) {
                    Ok(0) => return Ok(None),
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(UploadError::Read(e)),
                }
            }
            hasher.update(&buf);
            Ok(Some(buf))
        };
        if size <= PART as u64 {
            let Some(buf) = read_part(0, &mut hasher)? else {
                return Ok(None);
            };
            self.put(key, buf, Write::Overwrite)
                .map_err(UploadError::Store)?
                .map_err(|Conflict| UploadError::Store(self.conflict("PUT", key)))?;
            progress(size);
            return Ok(Some(Hash(hasher.digest128().to_be_bytes())));
        }
        let mut upload = self
            .block(self.store.put_multipart(key))
            .map_err(|e| UploadError::Store(self.error("PUT (multipart start)", key, &e)))?;
        let mut pos = 0u64;
        while pos < size {
            let part = match read_part(pos, &mut hasher) {
                Ok(Some(p)) => p,
                other => {
                    let _ = self.block(upload.abort());
                    return other.map(|_| None);
                }
            };
            let n = part.len() as u64;
            if let Err(e) = self.block(upload.put_part(PutPayload::from(part))) {
                let _ = self.block(upload.abort());
                return Err(UploadError::Store(self.error("PUT (part)", key, &e)));
            }
            self.uploaded.fetch_add(n, Ordering::Relaxed);
            progress(n);
            pos += n;
        }
        self.block(upload.complete())
            .map_err(|e| UploadError::Store(self.error("PUT (multipart complete)", key, &e)))?;
        Ok(Some(Hash(hasher.digest128().to_be_bytes())))
    }

    fn conflict(&self, op: &'static str, key: &Key) -> ObjectError {
        ObjectError {
            url: self.url.to_string(),
            endpoint: self.endpoint.clone(),
            op,
            key: self.shown(key),
            message: "the server refused an unconditional write as a conflict".into(),
        }
    }

    /// Server-side copy: no byte goes through strata.
    pub fn copy(&self, from: &Key, to: &Key) -> Result<(), ObjectError> {
        self.block(self.store.copy(from, to))
            .map_err(|e| self.error("COPY", from, &e))
    }

    /// Whether an object is there (a HEAD request).
    pub fn exists(&self, key: &Key) -> Result<bool, ObjectError> {
        match self.block(self.store.head(key)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.error("HEAD", key, &e)),
        }
    }

    /// An object's size (a HEAD request; `None`: no such object).
    pub fn size(&self, key: &Key) -> Result<Option<u64>, ObjectError> {
        match self.block(self.store.head(key)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("HEAD", key, &e)),
        }
    }

    /// Bytes `range` of an object (a ranged GET; `None`: no such object),
    /// what a mount reads: only the bytes asked for cross the network.
    /// A range past the end is cut at the end.
    pub fn get_range(&self, key: &Key, range: Range<u64>) -> Result<Option<Vec<u8>>, ObjectError> {
        if range.is_empty() {
            return Ok(Some(Vec::new()));
        }
        match self.block(self.store.get_range(key, range)) {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("GET (range)", key, &e)),
        }
    }

    /// Delete an object (one that is not there is no error).
    pub fn delete(&self, key: &Key) -> Result<(), ObjectError> {
        match self.block(self.store.delete(key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("DELETE", key, &e)),
        }
    }

    /// Every object below `prefix`, sorted by key.
    pub fn list(&self, prefix: &Key) -> Result<Vec<ObjectMeta>, ObjectError> {
        let mut out = self
            .block(async {
                let mut stream = self.store.list(Some(prefix));
                let mut out = Vec::new();
                while let Some(item) = stream.next().await {
                    out.push(item?);
                }
                Ok::<_, object_store::Error>(out)
            })
            .map_err(|e| self.error("LIST", prefix, &e))?;
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }

    /// The names of the "folders" directly below `prefix` (common
    /// prefixes), sorted.
    pub fn list_dirs(&self, prefix: &Key) -> Result<Vec<String>, ObjectError> {
        let result = self
            .block(self.store.list_with_delimiter(Some(prefix)))
            .map_err(|e| self.error("LIST", prefix, &e))?;
        let mut names: Vec<String> = result
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(String::from))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Stream an object and hash its content (xxh3-128, as recorded),
    /// holding one chunk at a time.
    pub fn hash_object(&self, key: &Key) -> Result<Hash, ObjectError> {
        self.block(async {
            let r = self.store.get_opts(key, GetOptions::default()).await?;
            let mut stream = r.into_stream();
            let mut hasher = xxhash_rust::xxh3::Xxh3::new();
            while let Some(chunk) = stream.next().await {
                hasher.update(&chunk?);
            }
            Ok::<_, object_store::Error>(Hash(hasher.digest128().to_be_bytes()))
        })
        .map_err(|e| self.error("GET", key, &e))
    }

    /// Stream an object into `out` (an empty file), leaving holes where
    /// whole 4 KiB blocks are zero, so a sparse file comes back sparse.
    /// The bytes written.
    pub fn download(
        &self,
        key: &Key,
        out: &File,
        progress: &dyn Fn(u64),
    ) -> Result<u64, DownloadError> {
        const BLOCK: usize = 4096;
        let r = self.block(async {
            let r = self.store.get_opts(key, GetOptions::default()).await?;
            let size = r.meta.size;
            let mut stream = r.into_stream();
            let mut pos = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                let mut off = 0usize;
                while off < chunk.len() {
                    let end = (off + BLOCK).min(chunk.len());
                    let block = &chunk[off..end];
                    if block.iter().any(|&b| b != 0) {
                        out.write_all_at(block, pos + off as u64).map_err(|e| {
                            object_store::Error::Generic {
                                store: "local file",
                                source: Box::new(e),
                            }
                        })?;
                    }
                    off = end;
                }
                pos += chunk.len() as u64;
                progress(chunk.len() as u64);
            }
            out.set_len(size)
                .map_err(|e| object_store::Error::Generic {
                    store: "local file",
                    source: Box::new(e),
                })?;
            Ok::<_, object_store::Error>(pos)
        });
        match r {
            Ok(n) => Ok(n),
            Err(object_store::Error::NotFound { .. }) => Err(DownloadError::Missing),
            Err(e) => Err(DownloadError::Store(self.error("GET", key, &e))),
        }
    }
}

/// Why an upload failed.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// Reading the local file failed.
    #[error("cannot read: {0}")]
    Read(io::Error),
    /// The store refused or could not be reached.
    #[error(transparent)]
    Store(ObjectError),
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// No such object.
    #[error("missing from the object store")]
    Missing,
    /// The store refused or could not be reached.
    #[error(transparent)]
    Store(ObjectError),
}

fn build(url: &ObjectUrl, conn: &Connection) -> Result<AmazonS3, object_store::Error> {
    // A web identity (a Kubernetes service account's token): the builder
    // reads the token file and role from the environment itself.
    let base = match conn.credentials {
        Credentials::WebIdentity => AmazonS3Builder::from_env(),
        Credentials::Static { .. } => AmazonS3Builder::new(),
    };
    let mut b = base
        .with_bucket_name(&url.bucket)
        .with_region(&conn.region)
        .with_virtual_hosted_style_request(!conn.path_style)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: 4,
            retry_timeout: Duration::from_secs(120),
        })
        .with_client_options(
            ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(60))
                .with_allow_http(
                    conn.endpoint
                        .as_deref()
                        .is_some_and(|e| e.starts_with("http://")),
                ),
        );
    if let Some(endpoint) = &conn.endpoint {
        b = b.with_endpoint(endpoint);
    }
    match &conn.credentials {
        Credentials::Static {
            key_id,
            secret,
            token,
        } => {
            b = b.with_access_key_id(key_id).with_secret_access_key(secret);
            if let Some(t) = token {
                b = b.with_token(t);
            }
        }
        Credentials::WebIdentity => {}
    }
    b.build()
}
