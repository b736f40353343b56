//! The two kinds of destination the tests run on: a local folder and an
//! object store (`s3://`, moto on loopback, see `s3.rs`), with what a test
//! asks of either (the job-file fragment, the committed increments, what
//! a repairing run must leave, orphans), and [`both`], which runs a test
//! body once per kind (the object-store half skipping, saying why, where
//! no S3 server can be had).
#![allow(dead_code)]

use std::fs;

use serde_json::Value;

use super::Env;
use super::s3::{self, Bucket};

/// A kind of destination.
#[derive(Debug, Clone)]
pub enum Dest {
    Local,
    Object(Bucket),
}

impl Dest {
    /// The job-file fragment naming the destination of job `name`.
    pub fn fragment(&self, name: &str) -> String {
        match self {
            Dest::Local => format!(r#""destination": "../dest-{name}""#),
            Dest::Object(b) => b.destination(&format!("jobs/{name}")),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Dest::Local => "local",
            Dest::Object(_) => "object store",
        }
    }

    /// Committed increments of job `name` (those with their metadata).
    pub fn increments(&self, env: &Env, name: &str) -> Vec<String> {
        match self {
            Dest::Local => env.increments(&format!("dest-{name}")),
            Dest::Object(b) => {
                let prefix = format!("jobs/{name}/");
                let mut out: Vec<String> = b
                    .keys(&prefix)
                    .iter()
                    .filter_map(|k| {
                        let rest = k.strip_prefix(&prefix)?;
                        let (dir, file) = rest.split_once('/')?;
                        (dir.starts_with("backup_") && file == format!("{dir}.json"))
                            .then(|| dir.to_string())
                    })
                    .collect();
                out.sort();
                out
            }
        }
    }

    /// What no committed state should hold after a repairing run: temp
    /// and in-progress files, staged objects, half increments, a lease.
    pub fn leftovers(&self, env: &Env, name: &str) -> Vec<String> {
        match self {
            Dest::Local => {
                let mut out = Vec::new();
                for sub in [".strata/tmp", ".strata/inprogress", ".strata/pruning"] {
                    let p = env.path(&format!("dest-{name}/{sub}"));
                    if let Ok(d) = fs::read_dir(&p) {
                        for e in d.flatten() {
                            out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
                        }
                    }
                }
                if env.path(&format!("dest-{name}/.strata/dirty")).exists() {
                    out.push(".strata/dirty".into());
                }
                out
            }
            Dest::Object(b) => {
                let prefix = format!("jobs/{name}/");
                let incs = self.increments(env, name);
                let named = segments(b, name);
                b.keys(&prefix)
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&prefix).map(String::from))
                    .filter(|k| {
                        k.starts_with(".strata/staging/")
                            || k.starts_with(".strata/pruning/")
                            || k == ".strata/lease"
                            || (k.starts_with(".strata/index.d/") && !named.contains(k))
                            || (k.starts_with("backup_")
                                && !incs.iter().any(|i| k.starts_with(&format!("{i}/"))))
                    })
                    .collect()
            }
        }
    }

    /// Objects or files in committed increments that their metadata does
    /// not name (`extra ...`), and versions it names that are not there
    /// (`missing ...`): a prune must leave neither.
    pub fn orphans(&self, env: &Env, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        for inc in self.increments(env, name) {
            let meta_name = format!("{inc}.json");
            let meta: Value = match self {
                Dest::Local => serde_json::from_slice(
                    &fs::read(env.path(&format!("dest-{name}/{inc}/{meta_name}"))).unwrap(),
                )
                .unwrap(),
                Dest::Object(b) => serde_json::from_slice(
                    &b.get(&format!("jobs/{name}/{inc}/{meta_name}")).unwrap(),
                )
                .unwrap(),
            };
            let mut want: Vec<String> = meta["files"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["kind"] != "dir")
                .map(|r| {
                    let part = if r["op"] == "deleted" {
                        "deleted"
                    } else {
                        "track"
                    };
                    format!("{part}/{}", r["path"].as_str().unwrap())
                })
                .collect();
            want.push(meta_name);
            want.sort();
            let mut have: Vec<String> = match self {
                Dest::Local => {
                    let root = env.path(&format!("dest-{name}/{inc}"));
                    walkdir::WalkDir::new(&root)
                        .into_iter()
                        .map(|e| e.unwrap())
                        .filter(|e| !e.file_type().is_dir())
                        .map(|e| {
                            e.path()
                                .strip_prefix(&root)
                                .unwrap()
                                .to_string_lossy()
                                .into_owned()
                        })
                        .collect()
                }
                Dest::Object(b) => {
                    let prefix = format!("jobs/{name}/{inc}/");
                    b.keys(&prefix)
                        .into_iter()
                        .map(|k| k[prefix.len()..].to_string())
                        .collect()
                }
            };
            have.sort();
            for k in have.iter().filter(|k| !want.contains(k)) {
                out.push(format!("extra {inc}/{k}"));
            }
            for k in want.iter().filter(|k| !have.contains(k)) {
                out.push(format!("missing {inc}/{k}"));
            }
        }
        out
    }

    /// Write job `name`: source `src-NAME`, this destination, `rules`.
    pub fn job(&self, env: &Env, name: &str, rules: &str) {
        env.job(
            name,
            &format!(
                r#"{{"source": "../src-{name}", {}, {rules}}}"#,
                self.fragment(name)
            ),
        );
    }

    /// Rename increment `old` of job `name` as if its run had started at
    /// `time` (folder or key prefix, and its metadata): the new name.
    pub fn rename_increment(
        &self,
        env: &Env,
        name: &str,
        old: &str,
        time: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let new = format!("backup_{}", time.format("%Y%m%d_%H%M%S"));
        let retime = |bytes: &[u8]| {
            let mut meta: Value = serde_json::from_slice(bytes).unwrap();
            meta["increment"] = Value::from(new.clone());
            meta["start"] = Value::from(time.to_rfc3339());
            serde_json::to_vec_pretty(&meta).unwrap()
        };
        match self {
            Dest::Local => {
                let dest = env.path(&format!("dest-{name}"));
                fs::rename(dest.join(old), dest.join(&new)).unwrap();
                let meta_path = dest.join(&new).join(format!("{old}.json"));
                let meta = retime(&fs::read(&meta_path).unwrap());
                fs::remove_file(&meta_path).unwrap();
                fs::write(dest.join(&new).join(format!("{new}.json")), meta).unwrap();
            }
            Dest::Object(b) => {
                let from = format!("jobs/{name}/{old}/");
                let to = format!("jobs/{name}/{new}/");
                let meta_key = format!("{from}{old}.json");
                // The metadata last, as a run writes it: the increment
                // exists once it is there.
                let mut keys = b.keys(&from);
                keys.retain(|k| *k != meta_key);
                for k in &keys {
                    b.put(&format!("{to}{}", &k[from.len()..]), &b.get(k).unwrap());
                }
                let meta = retime(&b.get(&meta_key).unwrap());
                b.put(&format!("{to}{new}.json"), &meta);
                b.delete(&meta_key);
                for k in &keys {
                    b.delete(k);
                }
            }
        }
        new
    }

    /// Whether an interrupted prune's journal is there.
    pub fn journal(&self, env: &Env, name: &str) -> bool {
        match self {
            Dest::Local => env
                .path(&format!("dest-{name}/.strata/pruning/merge.json"))
                .exists(),
            Dest::Object(b) => b
                .get(&format!("jobs/{name}/.strata/pruning/merge.json"))
                .is_some(),
        }
    }
}

/// The index segments the committed manifest of job `name` names (none
/// when the index is one object, as strata wrote it before manifests).
pub fn segments(b: &Bucket, name: &str) -> Vec<String> {
    let Some(bytes) = b.get(&format!("jobs/{name}/.strata/index")) else {
        return Vec::new();
    };
    if bytes.starts_with(b"STRATA-INDEX") {
        return Vec::new();
    }
    let m: Value = serde_json::from_slice(&bytes).expect("the index manifest is JSON");
    let mut out = vec![m["base"]["key"].as_str().unwrap().to_string()];
    for d in m["deltas"].as_array().unwrap() {
        out.push(d["key"].as_str().unwrap().to_string());
    }
    out
}

/// Run `body` on a local destination, then on an object store (or say why
/// that half skips).
pub fn both(test: &str, body: impl Fn(&Dest)) {
    eprintln!("{test}: local destination");
    body(&Dest::Local);
    match s3::bucket(test) {
        Some(b) => {
            eprintln!("{test}: object-store destination");
            body(&Dest::Object(b));
        }
        None => eprintln!("{test}: object-store half skipped (no S3 server)"),
    }
}
