//! `strata history`: increments, the versions of a path, searches.

mod common;

use common::fixtures::*;

#[test]
fn history_lists_increments_versions_and_searches() {
    let env = setup();
    let runs = three_runs(&env);
    let (code, out, _) = env.run(&["history", "home"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[0].starts_with("increment"), "{out}");
    assert!(lines[1].starts_with(&runs[0].0), "{out}");
    let cols: Vec<&str> = lines[3].split_whitespace().collect();
    // backup_X  start (local: date, time, offset)  new changed deleted
    // bytes (5 B: c.txt)
    assert_eq!(&cols[4..], ["1", "0", "1", "5", "B"], "{out}");

    let (code, json) = env.run_json(&["history", "home"]);
    assert_eq!(code, 0);
    assert_eq!(json["job"], "home");
    let incs = &json["increments"];
    assert_eq!(
        names(incs),
        runs.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
    );
    assert_eq!(incs[0]["new"], 3);
    assert_eq!(incs[1]["changed"], 1);
    assert_eq!(incs[1]["bytes"], "beta, second version".len());

    let (code, out, _) = env.run(&["history", "home", "docs/sub/b.txt"]);
    assert_eq!(code, 0);
    let ops: Vec<&str> = out
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().nth(4).unwrap())
        .collect();
    assert_eq!(ops, ["new", "changed", "deleted"], "{out}");
    let (_, json) = env.run_json(&["history", "home", "docs/sub/b.txt"]);
    let versions = &json["paths"][0]["versions"];
    assert_eq!(json["paths"][0]["path"], "docs/sub/b.txt");
    assert_eq!(versions[1]["size"], "beta, second version".len());
    assert_eq!(versions[1]["hash"].as_str().unwrap().len(), 32);
    assert!(versions[2].get("hash").is_none());

    // A name glob at any depth; a glob with `/` on the path.
    let (_, json) = env.run_json(&["history", "home", "--mask", "*.txt"]);
    let paths: Vec<&str> = json["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["docs/a.txt", "docs/c.txt", "docs/sub/b.txt"]);
    let (code, out, _) = env.run(&["history", "home", "--mask", "docs/*.txt", "--mask", "li*"]);
    assert_eq!(code, 0);
    let listed: Vec<&str> = out.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(listed, ["docs/a.txt", "docs/c.txt", "docs/link"], "{out}");
    // Included-only files have no history.
    let (code, _, err) = env.run(&["history", "home", "--mask", "*.mp3"]);
    assert_eq!(code, 1);
    assert!(err.contains("no file"), "{err}");
}

// ---------------------------------------------------------------- prune
