//! Help texts, the manual pages and completion scripts, generated from the CLI definition.

mod common;

use std::fs;

use common::Env;
use serde_json::Value;

#[test]
fn completions_for_each_shell() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, out, err) = env.run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        // The script asks strata itself for the words as you type (see
        // tests/help.rs for what it offers).
        assert!(
            out.contains("COMPLETE"),
            "{shell}: not strata's script:\n{out}"
        );
        assert!(
            out.contains("strata"),
            "{shell}: not strata's script:\n{out}"
        );
    }
    let (code, _, err) = env.run(&["completions", "tcsh"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn the_man_page_is_generated_from_the_cli() {
    let env = Env::new();
    let (code, out, err) = env.run(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(".ie \\n(.g .ds Aq"), "not roff:\n{out}");
    assert!(out.contains(".TH strata 1"), "{out}");
    for needle in ["run\\-all", "\\-\\-metrics\\-file", "strata\\-new(1)"] {
        assert!(out.contains(needle), "no {needle} in the man page");
    }
    // With --dir, the pages it refers to are written too.
    let dir = env.path("man1");
    let (code, _, err) = env.run(&["man", "--dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    for page in [
        "strata.1",
        "strata-run-all.1",
        "strata-new.1",
        "strata-man.1",
    ] {
        let text = fs::read_to_string(dir.join(page)).unwrap();
        assert!(text.contains(".TH strata"), "{page}:\n{text}");
    }
    assert!(!dir.join("strata-help.1").exists());

    // strata-jobs(5), the job-file format, from the schema: every field,
    // with its example, beside the command pages.
    let jobs = fs::read_to_string(dir.join("strata-jobs.5")).unwrap();
    assert!(jobs.contains(".TH strata-jobs 5"), "{jobs}");
    let (_, schema, _) = env.run(&["schema"]);
    let schema: Value = serde_json::from_str(&schema).unwrap();
    for field in schema["properties"].as_object().unwrap().keys() {
        assert!(
            jobs.contains(&format!("\\fB{field}\\fR (")),
            "no {field} in strata-jobs.5"
        );
    }
    assert!(jobs.contains("\\fIExample:\\fR \"track_dirs\": [\"Documents\", \".config\"]"));
    let (code, out, _) = env.run(&["man", "--file-format"]);
    assert_eq!((code, out), (0, jobs.clone()));
    // It renders without a warning, where groff is installed.
    if let Ok(render) = std::process::Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z"])
        .arg(dir.join("strata-jobs.5"))
        .output()
    {
        assert!(
            render.status.success() && render.stderr.is_empty(),
            "{render:?}"
        );
    }
}

/// The subcommand names listed by `strata --help`.
fn subcommands(env: &Env) -> Vec<String> {
    let (_, out, _) = env.run(&["--help"]);
    out.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn every_subcommand_teaches_with_an_example() {
    let env = Env::new();
    let names = subcommands(&env);
    assert!(names.len() >= 9, "{names:?}");
    for name in names {
        let (code, out, _) = env.run(&[&name, "--help"]);
        assert_eq!(code, 0);
        assert!(
            out.lines()
                .any(|l| l.starts_with("Example: strata ") && l.contains(&name)),
            "`strata {name} --help` has no example using it:\n{out}"
        );
    }
}
