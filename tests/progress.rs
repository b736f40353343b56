//! Live progress under a pseudo-terminal (`script` from util-linux): the
//! bytes copied move while a large file is copied, with the total, a rate
//! and the time left; nothing with `--no-progress` or off a terminal.

mod common;

use std::io::Write;

use common::Env;

fn have_script() -> bool {
    std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A 256 MiB file of non-zero bytes. The display redraws on a timer and at
/// each twentieth of the bytes, so it shows the count move however fast
/// the copy.
fn big_source(env: &Env) {
    let path = env.path("src-home/big.bin");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for _ in 0..256 {
        f.write_all(&chunk).unwrap();
    }
    f.flush().unwrap();
}

/// Run `strata run home EXTRA` under a terminal; what the terminal got.
fn on_a_terminal(env: &Env, extra: &str) -> String {
    let command = format!(
        "{} --jobs-dir {} run home {extra}",
        env!("CARGO_BIN_EXE_strata"),
        env.jobs().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .current_dir(env.root())
        .env("STRATA_STATE_DIR", env.state_dir())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every `DONE/TOTAL` byte count the display drew, in order.
fn byte_counts(screen: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let units = ["KiB/", "MiB/", "GiB/", " B/"];
    for (i, _) in screen.match_indices('/') {
        let before = &screen[..=i];
        let Some(unit) = units.iter().find(|u| before.ends_with(*u)) else {
            continue;
        };
        let number: String = before[..before.len() - unit.len()]
            .trim_end()
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let after: String = screen[i + 1..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ' ' || c.is_ascii_alphabetic())
            .take(12)
            .collect();
        if !number.is_empty() && after.contains("MiB") {
            out.push((
                format!("{number} {}", unit[..unit.len() - 1].trim()),
                after
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" "),
            ));
        }
    }
    out
}

#[test]
fn the_bytes_copied_move_during_a_copy() {
    if !have_script() {
        eprintln!("skipped: no `script` command to make a terminal");
        return;
    }
    let env = Env::new();
    big_source(&env);
    env.simple_job("home", r#""track_dirs": ["."]"#);
    let screen = on_a_terminal(&env, "");
    let counts = byte_counts(&screen);
    assert!(
        counts.iter().all(|(_, total)| total == "256.00 MiB"),
        "{counts:?}"
    );
    let mut done: Vec<&str> = counts.iter().map(|(d, _)| d.as_str()).collect();
    done.dedup();
    // Some count between nothing and all of it: bytes moved while copying.
    let between = done
        .iter()
        .filter(|d| **d != "0 B" && **d != "256.00 MiB")
        .count();
    assert!(between >= 10, "the bytes never moved: {done:?}");
    assert!(
        screen.contains("/s ETA "),
        "no rate or time left: {screen:?}"
    );
    assert!(screen.contains("(1 file scanned, 0/1 files)"), "{screen:?}");
    // The report follows, the display gone.
    assert!(screen.contains("\x1b[2K"), "the line is never cleared");
    assert!(screen.contains("256.0 MiB"), "{screen:?}");
}

#[test]
fn no_progress_without_a_terminal_or_with_no_progress() {
    let env = Env::new();
    env.write("src-home/a.txt", &"x".repeat(100_000));
    env.simple_job("home", r#""track_dirs": ["."]"#);
    // Off a terminal (the test's pipes).
    let (code, out, err) = env.run(&["run", "home"]);
    assert_eq!(code, 0);
    assert!(!err.contains("ETA") && !out.contains("ETA"), "{err}{out}");
    if !have_script() {
        eprintln!("skipped the terminal half: no `script` command");
        return;
    }
    env.write("src-home/a.txt", &"y".repeat(100_000));
    common::set_mtime(&env.path("src-home/a.txt"), 1_600_000_100);
    let screen = on_a_terminal(&env, "--no-progress");
    assert!(!screen.contains("ETA"), "{screen:?}");
    assert!(!screen.contains("\x1b[2K"), "{screen:?}");
    assert!(screen.contains("success"), "{screen:?}");
}

#[test]
fn a_restore_shows_its_progress_too() {
    if !have_script() {
        eprintln!("skipped: no `script` command to make a terminal");
        return;
    }
    let env = Env::new();
    big_source(&env);
    env.simple_job("home", r#""track_dirs": ["."]"#);
    let (code, v) = env.run_json(&["run", "home"]);
    assert_eq!(code, 0, "{v:#}");
    let to = env.path("restored");
    let command = format!(
        "{} --jobs-dir {} restore home --to {} --at -0",
        env!("CARGO_BIN_EXE_strata"),
        env.jobs().display(),
        to.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .current_dir(env.root())
        .env("STRATA_STATE_DIR", env.state_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(screen.contains("restoring"), "{screen:?}");
    assert!(
        byte_counts(&screen)
            .iter()
            .any(|(_, total)| total == "256.00 MiB"),
        "{screen:?}"
    );
    assert!(screen.contains("restored 1 file (256.0 MiB)"), "{screen:?}");
}
