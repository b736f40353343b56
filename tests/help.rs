//! Each command's help shows the global options that apply to it, in a
//! section of their own.

mod common;

use common::Env;

fn help(args: &[&str]) -> String {
    let env = Env::new();
    let (code, out, err) = env.run(args);
    assert_eq!(code, 0, "{err}");
    out
}

#[test]
fn global_options_are_shown_where_they_apply() {
    let schema = help(&["schema", "--help"]);
    for hidden in ["--metrics-file", "--jobs-dir", "--json", "--threads"] {
        assert!(!schema.contains(hidden), "{hidden} under schema:\n{schema}");
    }
    let run = help(&["run", "--help"]);
    let global = run
        .split("Global options:")
        .nth(1)
        .expect("a section of their own");
    for shown in [
        "--metrics-file",
        "--jobs-dir",
        "--threads",
        "--no-progress",
        "--json",
    ] {
        assert!(
            global.contains(shown),
            "{shown} not under run's global options:\n{run}"
        );
    }
    let diff = help(&["diff", "--help"]);
    assert!(
        diff.contains("Global options:") && diff.contains("--jobs-dir"),
        "{diff}"
    );
    for hidden in ["--metrics-file", "--no-progress", "--threads"] {
        assert!(!diff.contains(hidden), "{hidden} under diff:\n{diff}");
    }
    let top = help(&["--help"]);
    assert!(
        top.contains("Global options:") && top.contains("--metrics-file"),
        "{top}"
    );
    // Accepted wherever they are written, as before.
    let env = Env::new();
    let (code, _, err) = env.run(&["list", "--jobs-dir", env.jobs().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
}
