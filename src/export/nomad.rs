//! Nomad: per job a periodic batch job (HCL) whose `raw_exec` task runs
//! `strata run NAME` on the node that holds the job's disks.
//!
//! Nomad reads `periodic { crons = [...] }` with hashicorp/cronexpr (a fork
//! of gorhill/cronexpr) in `time_zone`: five fields, or seven with seconds
//! first and a year last (six would be a year last, not seconds first);
//! years 1970–2099 only, and a `*` year ends in 2099 too; the two day
//! fields or'ed when both are restricted, where only a field that is
//! exactly `*` or `?` is unrestricted (`*/2` is restricted, unlike in
//! crontab(5)). The fields are written from the parsed value sets, so those
//! differences change nothing; what cronexpr cannot say (two restricted
//! day fields that must both match, the year 2100) is refused. Its `Next`
//! steps through a DST change's day in real time, so it disagrees with
//! cron(8) for fixed-time jobs there (see [`super::go_dst_conflict`]).

use super::calendar;
use super::kubernetes::cron_days;
use super::{
    Engine, File, Settings, generated_by, global_args, go_dst_conflict, iana_zone, path_text,
};
use crate::job::Job;
use crate::schedule::Schedule;

/// The periodic job of `job`, or why not.
pub(super) fn files(
    job: &Job,
    schedule: &Schedule,
    settings: &Settings,
) -> Result<Vec<File>, String> {
    let zone = iana_zone(settings)?;
    let cron = cronexpr_schedule(schedule)?;
    if let Some(reason) = go_dst_conflict(schedule, settings, "Nomad (cronexpr)") {
        return Err(reason);
    }
    let jobs_dir = path_text(&settings.jobs_dir, "jobs directory")?;
    let strata = path_text(&settings.strata, "strata executable")?;
    let mut args = global_args(jobs_dir, settings.metrics_file.as_deref())?;
    args.extend(["run".to_string(), job.name.clone()]);
    let name = format!("strata-{}", job.name);

    let mut h = format!(
        "# {}\n\
         # The job's schedule: `{}`, read in {zone}. (cronexpr knows no year\n\
         # after 2099.)\n",
        generated_by(Engine::Nomad, job, settings),
        schedule.source(),
    );
    if !job.enabled {
        h.push_str(
            "# The job is disabled in its job file: the daemon would not run it, and\n\
             # the periodic block below is off.\n",
        );
    }
    h.push_str(&format!(
        "job {name} {{\n\
         \x20 type        = \"batch\"\n\
         \x20 datacenters = [\"*\"]\n\
         \n\
         \x20 periodic {{\n\
         \x20   crons            = [{cron}]\n\
         \x20   time_zone        = {zone}\n\
         \x20   # One run at a time, as the strata daemon runs a job.\n\
         \x20   prohibit_overlap = true\n\
         \x20   enabled          = {enabled}\n\
         \x20 }}\n",
        name = quote(&name),
        cron = quote(&cron),
        zone = quote(zone),
        enabled = job.enabled,
    ));
    if let Some(node) = &settings.node {
        h.push_str(&format!(
            "\n\
             \x20 # The source and the destination are this node's directories.\n\
             \x20 constraint {{\n\
             \x20   attribute = \"${{node.unique.name}}\"\n\
             \x20   value     = {}\n\
             \x20 }}\n",
            quote(node)
        ));
    }
    h.push_str(&format!(
        "\n\
         \x20 group \"strata\" {{\n\
         \x20   # A failed or partial run is retried at the next scheduled time.\n\
         \x20   restart {{\n\
         \x20     attempts = 0\n\
         \x20     mode     = \"fail\"\n\
         \x20   }}\n\
         \x20   reschedule {{\n\
         \x20     attempts  = 0\n\
         \x20     unlimited = false\n\
         \x20   }}\n\
         \n\
         \x20   task \"strata\" {{\n\
         \x20     # raw_exec: strata reads the source as the Nomad client's user\n\
         \x20     # (root, for a backup that keeps owners); the client must enable it.\n\
         \x20     driver = \"raw_exec\"\n\
         \n\
         \x20     config {{\n\
         \x20       command = {command}\n\
         \x20       args    = [{args}]\n\
         \x20     }}\n\
         \x20     # resources: left to you.\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n",
        command = quote(strata),
        args = args.iter().map(|a| quote(a)).collect::<Vec<_>>().join(", "),
    ));
    Ok(vec![File {
        job: job.name.clone(),
        name: format!("{name}.nomad.hcl"),
        contents: h,
    }])
}

/// The schedule in cronexpr's fields: five, or seven when it has seconds
/// or years.
fn cronexpr_schedule(schedule: &Schedule) -> Result<String, String> {
    let f = schedule.fields();
    let expr = schedule.source();
    if let Some(years) = f.years
        && years.iter().any(|&y| y > 2099)
    {
        return Err(format!(
            "`{expr}` fires in 2100, and cronexpr reads years up to 2099 only"
        ));
    }
    let (dom, dow) = cron_days(&calendar::Days::of(&f), expr, "cronexpr")?;
    let five = format!(
        "{} {} {dom} {} {dow}",
        calendar::cron_list(f.minutes, 0, 59, true),
        calendar::cron_list(f.hours, 0, 23, true),
        calendar::cron_list(f.months, 1, 12, false),
    );
    if f.seconds == [0] && f.years.is_none() {
        return Ok(five);
    }
    let years = f
        .years
        .map(|y| calendar::cron_list(y, 1970, 2099, false))
        .unwrap_or_else(|| "*".to_string());
    Ok(format!(
        "{} {five} {years}",
        calendar::cron_list(f.seconds, 0, 59, true)
    ))
}

/// A string in HCL: quoted, with `\`, `"` and newlines escaped, and `${`
/// and `%{` (template sequences) doubled so that they stay text.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                out.push(c);
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cronexpr(expr: &str) -> Result<String, String> {
        cronexpr_schedule(&Schedule::parse(expr).unwrap())
    }

    #[test]
    fn schedules_in_cronexpr_fields() {
        assert_eq!(cronexpr("30 4 * * 1").unwrap(), "30 4 * * 1");
        assert_eq!(cronexpr("0 0 13 * 5").unwrap(), "0 0 13 * 5");
        assert_eq!(cronexpr("*/10 * * * *").unwrap(), "*/10 * * * *");
        assert_eq!(cronexpr("0 12 * * SAT-SUN").unwrap(), "0 12 * * 0,6");
        assert_eq!(cronexpr("*/30 * * * * *").unwrap(), "*/30 * * * * * *");
        assert_eq!(
            cronexpr("0 0 0 1 1 * 2030-2032").unwrap(),
            "0 0 0 1 1 * 2030-2032"
        );
        assert!(cronexpr("0 0 0 1 1 * 2100").unwrap_err().contains("2099"));
        assert!(
            cronexpr("0 0 */2 * 5")
                .unwrap_err()
                .contains("ors two restricted")
        );
    }

    #[test]
    fn hcl_strings() {
        assert_eq!(quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote("/srv/${x}/%{y}/$z"), "\"/srv/$${x}/%%{y}/$z\"");
    }
}
