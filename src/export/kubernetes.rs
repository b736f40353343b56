//! Kubernetes: per job a `ConfigMap` holding its job file and a `CronJob`
//! (batch/v1) whose pod runs `strata run NAME` on the node that holds the
//! job's disks.
//!
//! The CronJob controller reads `schedule` with robfig/cron v3's standard
//! parser (`cron.ParseStandard`) in the `timeZone` named: five fields, no
//! seconds and no years; `0`–`6` for Sunday to Saturday; ranges only
//! upwards; the two day fields or'ed when both are restricted, where
//! "restricted" means the field does not start with `*` or `?` (and,
//! unlike crontab(5), `*/2` counts as restricted). The schedule is
//! written from the parsed value sets, so none of that can change what it
//! means; what robfig/cron cannot say (seconds, years, two restricted day
//! fields that must both match) is refused. Its `Next` steps in real time,
//! an hour or a minute at a time, so it disagrees with cron(8) around DST
//! changes for fixed-time jobs, and it gives up when no fire time comes
//! within five years (see [`super::go_dst_conflict`]).
//!
//! The YAML is written by hand: every string is a JSON string, which YAML
//! reads as the same string, and the job file goes in as a literal block.

use std::path::{Path, PathBuf};

use super::calendar::{self, Days};
use super::{
    Engine, File, JobInput, Settings, generated_by, global_args, go_dst_conflict, iana_zone,
    path_text,
};
use crate::job::model::JobFile;
use crate::schedule::Schedule;

/// Where the pod finds the job files (the ConfigMap).
const JOBS_DIR: &str = "/etc/strata/jobs.d";
/// Where strata keeps what it remembers of each destination: a host
/// directory, so that a destination gone missing is noticed (SPEC §4).
const STATE_DIR: &str = "/var/lib/strata";
/// A CronJob's name leaves room for the 11 characters its Jobs add.
const MAX_NAME: usize = 52;

/// The ConfigMap and CronJob of one job, in one file, or why not.
pub(super) fn files(
    input: &JobInput<'_>,
    schedule: &Schedule,
    settings: &Settings,
) -> Result<Vec<File>, String> {
    let job = input.job;
    let zone = iana_zone(settings)?;
    let cron = robfig_schedule(schedule)?;
    if let Some(reason) =
        go_dst_conflict(schedule, settings, "the CronJob controller (robfig/cron)")
    {
        return Err(reason);
    }
    if let Some(year) = calendar::silent_stretch(schedule, &settings.zone, &settings.now, 5) {
        return Err(format!(
            "`{}` does not fire for more than five years after its last time in {year}, \
             and robfig/cron stops looking for the next time after five",
            schedule.source()
        ));
    }
    let name = resource_name(&job.name)?;
    let job_file = job_file(input)?;
    let deadline = settings.starting_deadline.unwrap_or_else(|| {
        calendar::shortest_interval(schedule, &settings.zone, &settings.now, 1000)
            .map(|d| d.num_seconds().max(60) as u64)
            .unwrap_or(86_400)
    });

    let source = path_text(&job.source, "source")?;
    if job.source.parent().is_none() {
        return Err("its source is /, which a container cannot mount at /".to_string());
    }
    let mut mounts = Mounts::default();
    mounts.add("source", source, true, "Directory");
    // An object-store destination is reached over the network, not mounted.
    if job.object.is_none() {
        let destination = job
            .destination
            .parent()
            .filter(|p| *p != Path::new("/"))
            .unwrap_or(&job.destination);
        mounts.add(
            "destination",
            path_text(destination, "destination")?,
            false,
            "Directory",
        );
    }
    mounts.add("state", STATE_DIR, false, "DirectoryOrCreate");
    let metrics = settings
        .metrics_file
        .as_deref()
        .map(|m| job_metrics_file(m, &job.name));
    if let Some(metrics) = &metrics {
        let dir = metrics.parent().map(PathBuf::from).unwrap_or_default();
        mounts.add(
            "metrics",
            path_text(&dir, "metrics file")?,
            false,
            "Directory",
        );
    }

    let mut command = vec!["strata".to_string()];
    command.extend(global_args(JOBS_DIR, metrics.as_deref())?);
    command.extend(["run".to_string(), job.name.clone()]);

    let q = quote;
    let labels = |indent: &str| {
        format!(
            "{indent}labels:\n\
             {indent}  app.kubernetes.io/name: strata\n\
             {indent}  app.kubernetes.io/instance: {}\n",
            q(&name)
        )
    };
    let mut y = String::new();
    y.push_str(&format!(
        "# {}\n\
         # The job's schedule: `{}`, read in {zone}.\n",
        generated_by(Engine::Kubernetes, job, settings),
        schedule.source()
    ));
    if job.hooks.is_some() {
        y.push_str(
            "# The job has hooks: they run in the container, in the jobs directory\n\
             # below, so the image must hold the commands they call.\n",
        );
    }
    y.push_str(&format!(
        "apiVersion: v1\n\
         kind: ConfigMap\n\
         metadata:\n\
         \x20 name: {qname}\n\
         {labels}\
         data:\n\
         \x20 {key}: |\n",
        qname = q(&name),
        labels = labels("  "),
        key = q(&format!("{}.json", job.name)),
    ));
    for line in job_file.lines() {
        y.push_str("    ");
        y.push_str(line);
        y.push('\n');
    }
    y.push_str(&format!(
        "---\n\
         apiVersion: batch/v1\n\
         kind: CronJob\n\
         metadata:\n\
         \x20 name: {qname}\n\
         {labels}\
         spec:\n\
         \x20 schedule: {cron}\n\
         \x20 timeZone: {zone}\n\
         \x20 # One run at a time, as the strata daemon runs a job.\n\
         \x20 concurrencyPolicy: Forbid\n\
         \x20 # A start missed (the controller down, no node free) is still made\n\
         \x20 # until the next one is due: the strata daemon's catch-up.\n\
         \x20 startingDeadlineSeconds: {deadline}\n\
         \x20 suspend: {suspend}\n\
         \x20 jobTemplate:\n\
         \x20   spec:\n\
         \x20     # A failed or partial run is retried at the next scheduled time.\n\
         \x20     backoffLimit: 0\n\
         \x20     template:\n\
         \x20       metadata:\n\
         {pod_labels}\
         \x20       spec:\n\
         \x20         restartPolicy: Never\n",
        qname = q(&name),
        labels = labels("  "),
        cron = q(&cron),
        zone = q(zone),
        suspend = !job.enabled,
        pod_labels = labels("          "),
    ));
    if let Some(node) = &settings.node {
        y.push_str(&format!(
            "          # The source and the destination are this node's directories.\n\
             \x20         nodeSelector:\n\
             \x20           kubernetes.io/hostname: {}\n",
            q(&node.to_lowercase())
        ));
    }
    y.push_str(&format!(
        "          containers:\n\
         \x20           - name: strata\n\
         \x20             image: {image}\n\
         \x20             command: [{command}]\n\
         \x20             env:\n\
         \x20               - name: STRATA_STATE_DIR\n\
         \x20                 value: {state}\n\
         \x20             # resources: left to you.\n\
         \x20             volumeMounts:\n\
         \x20               - name: jobs\n\
         \x20                 mountPath: {jobs}\n\
         \x20                 readOnly: true\n",
        image = q(&settings.image),
        command = command.iter().map(|c| q(c)).collect::<Vec<_>>().join(", "),
        state = q(STATE_DIR),
        jobs = q(JOBS_DIR),
    ));
    for m in &mounts.0 {
        y.push_str(&format!(
            "                - name: {}\n\
             \x20                 mountPath: {}\n",
            m.name,
            q(&m.path)
        ));
        if m.read_only {
            y.push_str("                  readOnly: true\n");
        }
    }
    y.push_str(&format!(
        "          # hostPath volumes: the node's own directories, at the same paths\n\
         \x20         # as in the job file. Replace them with your cluster's volumes if the\n\
         \x20         # disks live elsewhere.\n\
         \x20         volumes:\n\
         \x20           - name: jobs\n\
         \x20             configMap:\n\
         \x20               name: {}\n",
        q(&name)
    ));
    for m in &mounts.0 {
        y.push_str(&format!(
            "            - name: {}\n\
             \x20             hostPath:\n\
             \x20               path: {}\n\
             \x20               type: {}\n",
            m.name,
            q(&m.path),
            m.kind
        ));
    }
    Ok(vec![File {
        job: job.name.clone(),
        name: format!("{name}.yaml"),
        contents: y,
    }])
}

/// The schedule in robfig/cron's five fields, or what they cannot say.
fn robfig_schedule(schedule: &Schedule) -> Result<String, String> {
    let f = schedule.fields();
    let expr = schedule.source();
    if f.seconds != [0] {
        return Err(format!(
            "`{expr}` fires at seconds {} of a minute, and a Kubernetes schedule has no \
             seconds field (robfig/cron's standard parser reads five fields)",
            calendar::cron_list(f.seconds, 0, 59, true)
        ));
    }
    if let Some(years) = f.years {
        return Err(format!(
            "`{expr}` fires only in the years {}, and a Kubernetes schedule has no year field",
            calendar::cron_list(years, 1970, 2100, false)
        ));
    }
    let days = cron_days(&Days::of(&f), expr, "robfig/cron")?;
    Ok(format!(
        "{} {} {} {}",
        calendar::cron_list(f.minutes, 0, 59, true),
        calendar::cron_list(f.hours, 0, 23, true),
        days.0,
        calendar::cron_list(f.months, 1, 12, false),
    ) + " "
        + &days.1)
}

/// The day-of-month and day-of-week fields for a Go cron parser (robfig's
/// or cronexpr), which and them when one is exactly `*` and or them
/// otherwise. Neither restricted field is written with a leading `*`.
pub(super) fn cron_days(
    days: &Days<'_>,
    expr: &str,
    parser: &str,
) -> Result<(String, String), String> {
    let dom = |d: &[u32]| calendar::cron_list(d, 1, 31, false);
    let dow = |d: &[u32]| calendar::cron_list(d, 0, 6, false);
    Ok(match *days {
        Days::Every => ("*".to_string(), "*".to_string()),
        Days::Month(d) => (dom(d), "*".to_string()),
        Days::Week(w) => ("*".to_string(), dow(w)),
        Days::Either { dom: d, dow: w } => (dom(d), dow(w)),
        Days::Both { dom: d, dow: w } => {
            return Err(format!(
                "`{expr}` fires on days that are both day {} of the month and day {} of the \
                 week (crontab(5) ands the day fields when one starts with `*`), and {parser} \
                 ors two restricted day fields, with no way to and them",
                dom(d),
                dow(w)
            ));
        }
    })
}

/// `strata-NAME` as a Kubernetes object name (a DNS-1123 subdomain of at
/// most 52 characters): lowercase, `_` and `.` as `-`.
fn resource_name(job: &str) -> Result<String, String> {
    let mapped: String = job
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            '_' | '.' => '-',
            c => c,
        })
        .collect();
    let name = format!("strata-{}", mapped.trim_matches('-'));
    if name.len() > MAX_NAME || name.ends_with('-') {
        return Err(format!(
            "its name does not make a Kubernetes CronJob name ({name:?}: at most \
             {MAX_NAME} characters, ending in a letter or digit)"
        ));
    }
    Ok(name)
}

/// The job file as the pod reads it: the file's own fields, with the name
/// spelled out and the paths absolute (the ConfigMap is not where the file
/// was), without `$schema` (a path on this machine).
fn job_file(input: &JobInput<'_>) -> Result<String, String> {
    let job = input.job;
    let mut file: JobFile = serde_json::from_str(input.text)
        .map_err(|e| format!("its job file {} does not parse: {e}", job.file.display()))?;
    file.schema = None;
    file.name = Some(job.name.clone());
    file.source = job.source.clone();
    file.destination = job.destination.clone();
    serde_json::to_string_pretty(&file).map_err(|e| format!("its job file cannot be written: {e}"))
}

/// The metrics file of one job's pod: `strata.prom` becomes
/// `strata-NAME.prom` beside it. The pod's jobs directory holds only this
/// job, and an update drops the jobs it does not know, so pods sharing one
/// file would wipe each other's lines; node_exporter's textfile collector
/// reads every `*.prom` of the directory.
fn job_metrics_file(metrics: &Path, job: &str) -> PathBuf {
    let stem = metrics
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "strata".to_string());
    let name = match metrics.extension() {
        Some(ext) => format!("{stem}-{job}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{job}"),
    };
    metrics.with_file_name(name)
}

/// A string as YAML reads it back: a JSON string.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

/// One host directory mounted into the pod.
struct Mount {
    name: &'static str,
    path: String,
    read_only: bool,
    kind: &'static str,
}

/// The host directories, each path once (a pod cannot mount two volumes
/// at one path): a second wish for the same path makes it writable if
/// either was.
#[derive(Default)]
struct Mounts(Vec<Mount>);

impl Mounts {
    fn add(&mut self, name: &'static str, path: &str, read_only: bool, kind: &'static str) {
        if let Some(m) = self.0.iter_mut().find(|m| m.path == path) {
            m.read_only &= read_only;
            return;
        }
        self.0.push(Mount {
            name,
            path: path.to_string(),
            read_only,
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn robfig(expr: &str) -> Result<String, String> {
        robfig_schedule(&Schedule::parse(expr).unwrap())
    }

    #[test]
    fn schedules_in_robfig_fields() {
        assert_eq!(robfig("30 4 * * 1").unwrap(), "30 4 * * 1");
        assert_eq!(robfig("0 0 13 * 5").unwrap(), "0 0 13 * 5");
        assert_eq!(robfig("*/10 * * * *").unwrap(), "*/10 * * * *");
        assert_eq!(robfig("0 9-17/2 * * *").unwrap(), "0 9-17/2 * * *");
        assert_eq!(robfig("0 0 1 JAN,jul *").unwrap(), "0 0 1 1,7 *");
        assert_eq!(robfig("0 12 * * SAT-SUN").unwrap(), "0 12 * * 0,6");
        assert_eq!(robfig("0 12 * * FRI-MON").unwrap(), "0 12 * * 0,1,5,6");
        assert_eq!(robfig("0 22-2 * * 7").unwrap(), "0 0-2,22,23 * * 0");
        assert_eq!(robfig("@weekly").unwrap(), "0 0 * * 0");
        // crontab reads `1-31` as restricted: with a weekday, every day.
        assert_eq!(robfig("0 0 1-31 * 5").unwrap(), "0 0 * * *");
        // A day-of-month step never starts with `*`, which robfig would
        // read as unrestricted or not depending on the step.
        assert_eq!(robfig("0 0 */2 * *").unwrap(), "0 0 1-31/2 * *");
        assert!(
            robfig("0 0 */2 * 5")
                .unwrap_err()
                .contains("ors two restricted")
        );
        assert!(robfig("*/30 * * * * *").unwrap_err().contains("seconds"));
        assert!(robfig("0 0 0 1 1 * 2030").unwrap_err().contains("year"));
        assert_eq!(robfig("0 30 2 * * *").unwrap(), "30 2 * * *");
    }

    #[test]
    fn one_metrics_file_per_pod() {
        assert_eq!(
            job_metrics_file(
                Path::new("/var/lib/node_exporter/textfile/strata.prom"),
                "home"
            ),
            Path::new("/var/lib/node_exporter/textfile/strata-home.prom")
        );
    }

    #[test]
    fn names() {
        assert_eq!(resource_name("home").unwrap(), "strata-home");
        assert_eq!(
            resource_name("Projects_src.v2").unwrap(),
            "strata-projects-src-v2"
        );
        assert!(resource_name(&"x".repeat(60)).is_err());
    }
}
