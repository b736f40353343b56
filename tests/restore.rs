//! `strata restore`: the latest state and past points, subsets, targets refused, what is copied.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::fixtures::*;
use common::{assert_same_tree, inode, set_mtime, snapshot};

#[test]
fn restore_defaults_to_the_mirror_and_at_to_the_tracked_state() {
    let env = setup();
    let runs = three_runs(&env);
    let latest = restore(&env, "latest", &[]);
    assert_same_tree(&snapshot(&env.path("dest-home/mirror")), &latest);
    assert!(latest.contains_key("music/song.mp3"));
    for (i, (increment, want)) in runs.iter().enumerate() {
        let got = restore(&env, &format!("at{i}"), &["--at", increment]);
        assert_same_tree(want, &got);
    }
}

#[test]
fn restore_a_subset_a_file_or_a_directory_prefix() {
    let env = setup();
    env.write("src-home/docs/sub/deeper/d.txt", "delta");
    run(&env);
    let file = restore(&env, "one", &["docs/a.txt"]);
    assert_eq!(file.keys().collect::<Vec<_>>(), ["docs/a.txt"]);
    // The path as it is in the source names the same file.
    let source_path = env.path("src-home/docs/a.txt");
    let same = restore(&env, "same", &[source_path.to_str().unwrap()]);
    assert_eq!(same, file);
    let dir = restore(&env, "dir", &["./docs/sub/"]);
    assert_eq!(
        dir.keys().collect::<Vec<_>>(),
        ["docs/sub/b.txt", "docs/sub/deeper/d.txt"]
    );
    // A prefix is a whole path component: docs/s is not docs/sub.
    let (code, _, err) = env.run(&[
        "restore",
        "home",
        "--to",
        env.path("none").to_str().unwrap(),
        "docs/s",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("docs/s: no such file"), "{err}");
    assert!(!env.path("none").exists());
}

#[test]
fn restore_refuses_a_non_empty_directory_unless_forced() {
    let env = setup();
    run(&env);
    env.write("target/keep.txt", "mine");
    env.write("target/docs/a.txt", "old");
    let before = snapshot(&env.path("target"));
    let to = env.path("target");
    let (code, _, err) = env.run(&["restore", "home", "--to", to.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("not empty"), "{err}");
    assert_same_tree(&before, &snapshot(&to));

    let (code, out, err) = env.run(&["restore", "home", "--to", to.to_str().unwrap(), "--force"]);
    assert_eq!(code, 0, "{out}{err}");
    let after = snapshot(&to);
    assert_eq!(after["keep.txt"], before["keep.txt"]);
    assert!(after["docs/a.txt"].ends_with(" alpha"), "{after:?}");
    assert!(after.contains_key("music/song.mp3"));
}

#[test]
fn restore_into_the_destination_is_refused() {
    let env = setup();
    run(&env);
    let to = env.path("dest-home/restored");
    let (code, _, err) = env.run(&["restore", "home", "--to", to.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("inside the backup destination"), "{err}");
    assert!(!to.exists());
}

#[test]
fn restore_copies_with_mtime_mode_and_symlinks_and_never_links() {
    let env = setup();
    let a = env.path("src-home/docs/a.txt");
    fs::set_permissions(&a, fs::Permissions::from_mode(0o600)).unwrap();
    set_mtime(&a, 1_500_000_123);
    let script = env.write("src-home/docs/run.sh", "#!/bin/sh\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&script, 1_400_000_000);
    let increment = run(&env).unwrap();
    for (name, args) in [
        ("latest", vec![]),
        ("past", vec!["--at", increment.as_str()]),
    ] {
        let tree = restore(&env, name, &args);
        assert_same_tree(&tracked(&env), &{
            let mut t = tree.clone();
            t.remove("music/song.mp3");
            t
        });
        let restored = env.path(&format!("{name}/docs/a.txt"));
        let meta = restored.symlink_metadata().unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(meta.mtime(), 1_500_000_123);
        assert_eq!(meta.nlink(), 1, "{name}: a restored file is not a link");
        assert_ne!(
            inode(&restored),
            inode(&env.path("dest-home/mirror/docs/a.txt"))
        );
        let script = env
            .path(&format!("{name}/docs/run.sh"))
            .symlink_metadata()
            .unwrap();
        assert_eq!(script.mode() & 0o7777, 0o750);
        assert_eq!(script.mtime(), 1_400_000_000);
        let link = env.path(&format!("{name}/docs/link"));
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(fs::read_link(&link).unwrap().to_str(), Some("a.txt"));
    }
}

#[test]
fn restore_at_a_time_between_two_runs() {
    let env = setup();
    let first = run(&env).unwrap();
    let first_tree = tracked(&env);
    // Increment names have a resolution of one second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.write("src-home/docs/a.txt", "alpha, second");
    let second = run(&env).unwrap();
    assert_ne!(first[..22], second[..22], "runs in different seconds");
    // The first run's second, half a second later, written in UTC+02:00.
    let t = chrono::NaiveDateTime::parse_from_str(&first["backup_".len()..22], "%Y%m%d_%H%M%S")
        .unwrap()
        .and_utc()
        + chrono::Duration::milliseconds(500);
    let at = t
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339();
    assert!(at.ends_with("+02:00"), "{at}");
    assert_same_tree(&first_tree, &restore(&env, "between", &["--at", &at]));
    let (code, _, err) = env.run(&[
        "restore",
        "home",
        "--to",
        env.path("before").to_str().unwrap(),
        "--at",
        "2001-01-01T00:00:00Z",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("the first is {first}")), "{err}");
}

#[test]
fn restore_names_a_missing_increment_file() {
    let env = setup();
    let increment = run(&env).unwrap();
    let gone = env.path(&format!("dest-home/{increment}/track/docs/sub/b.txt"));
    fs::remove_file(&gone).unwrap();
    let to = env.path("out");
    let (code, _, err) = env.run(&[
        "restore",
        "home",
        "--to",
        to.to_str().unwrap(),
        "--at",
        &increment,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains(gone.to_str().unwrap()), "{err}");
    // The rest is restored.
    assert!(to.join("docs/a.txt").exists());
}

// ---------------------------------------------------------------- history
