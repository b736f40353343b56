//! `strata-jobs(5)`, the manual page of the job-file format, generated
//! from the job schema: each field's type, default, description and
//! example are the ones the schema gives editors and `validate` uses for
//! its messages, so the page cannot drift from the format. Pure: returns
//! roff text; `strata man` writes it.

use roff::{Inline, Roff, bold, italic, roman};
use serde_json::Value;

use super::model::{example_text, job_schema};

/// The order fields are described in: what a job needs first, then what
/// it may add. A field missing here still appears, after these.
const ORDER: &[&str] = &[
    "source",
    "destination",
    "s3",
    "name",
    "schedule",
    "enabled",
    "track_dirs",
    "include_dirs",
    "exclude_dirs",
    "track_files",
    "include_files",
    "exclude_files",
    "retention",
    "compare",
    "max_delete",
    "hooks",
    "healthcheck",
    "one_file_system",
    "exclude_if_present",
    "exclude_caches",
    "$schema",
];

/// The page's roff source.
pub fn jobs_page() -> String {
    let schema = job_schema();
    let mut page = Roff::new();
    page.control(
        "TH",
        [
            "strata-jobs",
            "5",
            "",
            &format!("strata {}", env!("CARGO_PKG_VERSION")),
            "File Formats",
        ],
    );
    page.control("SH", ["NAME"]).text([roman(
        "strata-jobs - the job files of strata, a backup job runner",
    )]);
    page.control("SH", ["SYNOPSIS"]).text([
        italic("JOBS_DIR"),
        roman("/"),
        italic("NAME"),
        roman(".json"),
    ]);
    page.control("SH", ["DESCRIPTION"]);
    for paragraph in DESCRIPTION {
        page.control("PP", []).text(inlines(paragraph));
    }

    page.control("SH", ["FIELDS"]);
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let properties = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut names: Vec<&str> = ORDER
        .iter()
        .copied()
        .filter(|n| properties.contains_key(*n))
        .collect();
    names.extend(
        properties
            .keys()
            .map(String::as_str)
            .filter(|n| !ORDER.contains(n)),
    );
    for name in names {
        field(
            &mut page,
            &schema,
            name,
            &properties[name],
            required.contains(&name),
        );
    }
    for (definition, title) in [("Retention", "retention"), ("Hooks", "hooks")] {
        let Some(def) = schema["$defs"].get(definition) else {
            continue;
        };
        let heading = format!("Fields of {title}");
        page.control("SS", [heading.as_str()]);
        if let Some(text) = def.get("description").and_then(Value::as_str) {
            page.control("PP", []).text(inlines(text));
        }
        if let Some(props) = def.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                field(&mut page, &schema, name, prop, false);
            }
        }
    }

    page.control("SH", ["SELECTION"]);
    for paragraph in SELECTION {
        page.control("PP", []).text(inlines(paragraph));
    }
    page.control("SH", ["LIMITS"]);
    page.control("PP", []).text(inlines(&format!(
        "A job file has at most {} bytes, a rule at most {} bytes, and the rules of one job \
         at most {} bytes together; each rule list has at most 10000 items. Larger files and \
         rules are errors that name the file and the field.",
        super::load::MAX_JOB_FILE_BYTES,
        crate::select::MAX_RULE_BYTES,
        crate::select::MAX_RULES_BYTES,
    )));
    page.control("SH", ["EXAMPLE"]);
    page.control("PP", []).text(inlines(
        "A job that versions documents and projects, mirrors music, and keeps a week of \
         daily and a month of weekly increments:",
    ));
    page.control("RS", []).control("nf", []);
    for line in EXAMPLE.lines() {
        page.text([roman(line)]);
    }
    page.control("fi", []).control("RE", []);
    page.control("SH", ["SEE ALSO"]).text([
        bold("strata"),
        roman("(1), "),
        bold("strata-validate"),
        roman("(1), "),
        bold("strata-explain"),
        roman("(1), "),
        bold("strata-new"),
        roman("(1), "),
        bold("strata-schema"),
        roman("(1), "),
        bold("crontab"),
        roman("(5)"),
    ]);
    page.render()
}

/// One field: name, type, whether required, default; description; example.
fn field(page: &mut Roff, schema: &Value, name: &str, prop: &Value, required: bool) {
    let target = resolved(schema, prop);
    let mut facts = vec![type_words(target)];
    facts.push(if required { "required" } else { "optional" }.to_string());
    if let Some(default) = target.get("default").or_else(|| prop.get("default")) {
        facts.push(format!("default {}", example_text(default)));
    }
    page.control("TP", [])
        .text([bold(name), roman(format!(" ({})", facts.join(", ")))]);
    let description = prop
        .get("description")
        .or_else(|| target.get("description"))
        .and_then(Value::as_str)
        .unwrap_or("");
    page.text(inlines(description));
    let examples: Vec<String> = prop
        .get("examples")
        .or_else(|| target.get("examples"))
        .and_then(Value::as_array)
        .map(|e| e.iter().map(example_text).collect())
        .unwrap_or_default();
    if !examples.is_empty() {
        page.control("br", []).text([
            italic("Example:"),
            roman(format!(" \"{name}\": {}", examples.join(" or "))),
        ]);
    }
}

/// The definition a `$ref` refers to, or the node itself.
fn resolved<'a>(schema: &'a Value, node: &'a Value) -> &'a Value {
    node.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| schema["$defs"].get(name))
        .unwrap_or(node)
}

/// A field's type in a few words.
fn type_words(node: &Value) -> String {
    if let Some(options) = node.get("enum").and_then(Value::as_array) {
        let options: Vec<String> = options.iter().map(Value::to_string).collect();
        return options.join(" or ");
    }
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let words: Vec<&str> = types
        .iter()
        .filter(|t| **t != "null")
        .map(|t| match *t {
            "string" => "text",
            "boolean" => "true or false",
            "integer" => "whole number",
            "number" => "number",
            "array" => "list of texts",
            "object" => "object",
            other => other,
        })
        .collect();
    if words.is_empty() {
        "any".into()
    } else {
        words.join(" or ")
    }
}

/// Text with `code` in bold, line breaks of doc comments joined.
fn inlines(text: &str) -> Vec<Inline> {
    let text = text.replace('\n', " ");
    text.split('`')
        .enumerate()
        .filter(|(_, part)| !part.is_empty())
        .map(
            |(i, part)| {
                if i % 2 == 1 { bold(part) } else { roman(part) }
            },
        )
        .collect()
}

const DESCRIPTION: &[&str] = &[
    "Every file whose name ends in `.json` directly inside the jobs directory (`--jobs-dir`, \
     environment `STRATA_JOBS_DIR`, default `./jobs.d`) describes one backup job; \
     subdirectories are not read. Hidden files, `*.tmp` files and editor backups (`*~`, \
     `*.swp`) are ignored, and files are read in name order.",
    "A job file is one JSON object with the fields below. Unknown fields are errors, with a \
     hint when close to a real one, and so is a field given twice. `strata validate` checks \
     the files and prints each problem as FILE:LINE:COL; `strata schema` prints the JSON \
     Schema this page is generated from, for editors (set `$schema` to where it is saved).",
    "Relative paths are resolved against the directory that holds the job file. strata \
     expands neither `~` nor environment variables: a path that contains them is an error. \
     A destination must not be a system directory, nor lie inside its own or any other \
     job's source or destination, nor be shared with another job, also when spelled \
     through symbolic links or bind mounts.",
];

const SELECTION: &[&str] = &[
    "Paths are relative to `source`, with `/` separators. Globs use `*`, `?`, `[...]` and \
     `{a,b}`; `*` and `?` never match `/`, `**` matches any number of directories. A `\\` \
     makes the next character literal.",
    "Directory rules (`include_dirs`, `track_dirs`, `exclude_dirs`) without a suffix match \
     the directory's path relative to the source: `Documents`, `Projects/*`, and `.` for the \
     whole source. With the suffix `:rec` they match directory names at any depth: \
     `node_modules:rec`. A directory rule applies to every file below the directories it \
     matches, at any depth: `Documents` backs up everything in Documents, while \
     `Documents/**` matches only the directories below it (so files directly in Documents \
     are not covered).",
    "File rules (`include_files`, `track_files`, `exclude_files`) without a suffix match the \
     names of files directly in the source: `.*` matches `.bashrc`, not `a/.bashrc`; with \
     `:rec` file names at any depth: `*.log:rec`. A rule with `/` names a folder and a name \
     glob: `docs/*.md` matches files directly in docs, `docs/*.md:rec` at any depth below \
     it. `:rec` is the only suffix: any other (`:recu`, `:REC`) is an error.",
    "Precedence: an excluded directory is never entered, so nothing below it is backed up \
     whatever else matches; `exclude_files` removes files that directory rules brought in, \
     but a file that an `include_files` or `track_files` rule matches is kept; a file both \
     tracked and included is tracked. `strata explain NAME PATH` shows the verdict for a \
     path and the rule that decided.",
];

/// The page's example, a job file as a user writes it.
pub const EXAMPLE: &str = r#"{
  "source": "/home/me",
  "destination": "/mnt/backup/home",
  "schedule": "30 2 * * *",
  "track_dirs": ["Documents", "Projects/*", ".config"],
  "include_dirs": ["Music"],
  "exclude_dirs": ["node_modules:rec", ".cache"],
  "include_files": [".*"],
  "exclude_files": ["*.log:rec"],
  "retention": {"keep_daily": 7, "keep_weekly": 4}
}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_the_schema_is_on_the_page() {
        let page = jobs_page();
        let schema = job_schema();
        let mut fields: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        for def in ["Retention", "Hooks"] {
            fields.extend(
                schema["$defs"][def]["properties"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .cloned(),
            );
        }
        for field in fields {
            assert!(
                page.contains(&format!("\\fB{field}\\fR (")),
                "{field} is missing from strata-jobs(5)"
            );
        }
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{page}");
        assert!(page.contains(".TH strata-jobs 5"), "{page}");
    }

    #[test]
    fn the_example_is_a_valid_job() {
        let job: super::super::JobFile = serde_json::from_str(EXAMPLE).unwrap();
        assert_eq!(job.track_dirs.len(), 3);
    }
}
