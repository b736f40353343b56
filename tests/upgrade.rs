//! A destination written by strata 0.1 (index format 1, increments without
//! owners, xattrs or directory records) keeps working: the next run
//! upgrades the index in place with no step by hand, its old increments
//! still restore, and nothing else changes.
//!
//! The 0.1 destination is built here byte for byte as 0.1 wrote it (the
//! index layout is in `src/store/index.rs`'s documentation).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{Env, set_mtime};

/// One file of the 0.1 destination: path, content, tracked.
const FILES: &[(&str, &str, bool)] = &[
    ("docs/a.txt", "alpha", true),
    ("docs/sub/b.txt", "beta", true),
    ("music/song.mp3", "la la", false),
];

fn xxh3_128_hex(bytes: &[u8]) -> String {
    xxhash_rust::xxh3::xxh3_128(bytes)
        .to_be_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Write the 0.1 destination for the source `src` at `dest`.
fn old_destination(src: &Path, dest: &Path) {
    let name = "backup_20250101_000000";
    fs::create_dir_all(dest.join(".strata")).unwrap();
    let mut body = Vec::new();
    body.extend_from_slice(b"STRATA-INDEX\x01");
    body.extend_from_slice(&(name.len() as u16).to_le_bytes());
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(&(FILES.len() as u64).to_le_bytes());
    let mut records = Vec::new();
    for (path, content, tracked) in FILES {
        let mirror = dest.join("mirror").join(path);
        fs::create_dir_all(mirror.parent().unwrap()).unwrap();
        fs::copy(src.join(path), &mirror).unwrap();
        set_mtime(&mirror, 1_600_000_000);
        let meta = fs::metadata(src.join(path)).unwrap();
        let hash = xxhash_rust::xxh3::xxh3_128(content.as_bytes()).to_be_bytes();
        body.extend_from_slice(&(path.len() as u32).to_le_bytes());
        body.extend_from_slice(path.as_bytes());
        body.push(0);
        body.push(u8::from(*tracked) | 2);
        body.extend_from_slice(&meta.size().to_le_bytes());
        body.extend_from_slice(&meta.mtime().to_le_bytes());
        body.extend_from_slice(&(meta.mtime_nsec() as u32).to_le_bytes());
        body.extend_from_slice(&(meta.mode() & 0o7777).to_le_bytes());
        body.extend_from_slice(&hash);
        if *tracked {
            let track = dest.join(name).join("track").join(path);
            fs::create_dir_all(track.parent().unwrap()).unwrap();
            fs::hard_link(&mirror, &track).unwrap();
            records.push(serde_json::json!({
                "path": path,
                "op": "new",
                "kind": "file",
                "size": meta.size(),
                "mode": meta.mode() & 0o7777,
                "mtime": "2020-09-13T12:26:40Z",
                "hash": xxh3_128_hex(content.as_bytes()),
            }));
        }
    }
    let sum = xxhash_rust::xxh3::xxh3_64(&body);
    body.extend_from_slice(&sum.to_le_bytes());
    fs::write(dest.join(".strata/index"), body).unwrap();
    let meta = serde_json::json!({
        "job": "old",
        "increment": name,
        "start": "2025-01-01T00:00:00Z",
        "finish": "2025-01-01T00:00:01Z",
        "files": records,
        "stats": {"selected": 3, "tracked": 2, "mirror": 3, "new": 3},
    });
    fs::write(
        dest.join(name).join(format!("{name}.json")),
        serde_json::to_vec_pretty(&meta).unwrap(),
    )
    .unwrap();
    fs::write(
        dest.join(".strata/runs.jsonl"),
        format!(
            "{}\n",
            serde_json::json!({"start": "2025-01-01T00:00:00Z", "finish": "2025-01-01T00:00:01Z",
                "status": "success", "increment": name, "stats": {}})
        ),
    )
    .unwrap();
}

#[test]
fn a_destination_of_strata_0_1_is_upgraded_by_its_next_run() {
    let env = Env::new();
    for (path, content, _) in FILES {
        env.write(&format!("src-old/{path}"), content);
    }
    env.simple_job(
        "old",
        r#""track_dirs": ["docs"], "include_dirs": ["music"]"#,
    );
    let dest = env.path("dest-old");
    old_destination(&env.path("src-old"), &dest);

    let (code, report) = env.run_json(&["run", "old"]);
    assert_eq!(code, 0, "{report:#}");
    let job = &report["jobs"][0];
    let warnings = job["warnings"].to_string();
    assert!(warnings.contains("older strata"), "{warnings}");
    // No file was copied again: the mirror's versions are the same.
    assert_eq!(job["stats"]["changed"], 0, "{report:#}");
    assert_eq!(job["stats"]["new"], 0, "{report:#}");
    let index = fs::read(dest.join(".strata/index")).unwrap();
    assert_eq!(&index[..13], b"STRATA-INDEX\x02", "the index is upgraded");

    // The old increment still restores exactly.
    let to = env.path("restored");
    let (code, out, err) = env.run(&[
        "restore",
        "old",
        "--to",
        to.to_str().unwrap(),
        "--at",
        "backup_20250101_000000",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(fs::read_to_string(to.join("docs/a.txt")).unwrap(), "alpha");
    assert_eq!(
        fs::read_to_string(to.join("docs/sub/b.txt")).unwrap(),
        "beta"
    );
    assert!(
        !to.join("music").exists(),
        "included-only files are not history"
    );
    let (code, out, err) = env.run(&["verify", "old", "--deep"]);
    assert_eq!(code, 0, "{out}{err}");
    // And the run after has nothing to do.
    let (code, report) = env.run_json(&["run", "old"]);
    assert_eq!(code, 0);
    assert!(report["jobs"][0]["increment"].is_null(), "{report:#}");
    assert_eq!(report["jobs"][0]["stats"]["changed"], 0);
}
