//! systemd: a `strata-NAME.service` (one `strata run NAME`) and a
//! `strata-NAME.timer` whose `OnCalendar=` lines fire exactly when cron
//! would fire the job's schedule.
//!
//! A calendar spec (systemd.time(7)) has a field for every cron field, with
//! lists, ranges `a..b` and steps `a..b/n`, seconds and years; what it
//! lacks is crontab's day rule: a spec's weekday and date must **both**
//! match, while cron fires on a day matching **either** once both are
//! restricted. A timer may have several `OnCalendar=` lines and fires at
//! each line's times, so that schedule becomes two lines, one per field.
//!
//! Around DST changes, systemd (calendarspec.c, `find_next`) searches in
//! wall-clock time and places each match with mktime(3); a match that
//! mktime moves (it does not exist) is dropped and the search goes on.
//! So a wall-clock time in a spring-forward gap never fires, and a
//! repeated one fires once, in the pass mktime picks: the first, as glibc
//! starts from the offset of the time it searches from (seen with
//! `systemd-analyze calendar --base-time` under `TZ=Europe/Berlin`, and
//! in the tests). cron(8) agrees for a fold and a fixed-time job, and for
//! a gap and a wildcard job. It differs for a fixed-time job in a gap
//! (cron runs it when the gap ends) and a wildcard job in a fold (cron
//! runs both passes): those are refused.

use super::calendar::{self, Days, Run};
use super::{Engine, File, Settings, generated_by, global_args, path_text};
use crate::job::Job;
use crate::schedule::{Fields, Schedule};

/// The service and the timer of `job`, or why not.
pub(super) fn files(
    job: &Job,
    schedule: &Schedule,
    settings: &Settings,
) -> Result<Vec<File>, String> {
    check_dst(schedule, settings)?;
    let lines = on_calendar(&schedule.fields());
    let suffix = if settings.zone_given {
        format!(" {}", settings.zone.name())
    } else {
        String::new()
    };
    let unit = format!("strata-{}", job.name);
    let jobs_dir = path_text(&settings.jobs_dir, "jobs directory")?;
    let strata = path_text(&settings.strata, "strata executable")?;
    let source = path_text(&job.source, "source")?;
    // An object-store destination is no mount: wait for the network.
    let (after, mounts) = if job.object.is_some() {
        (
            "After=local-fs.target remote-fs.target network-online.target\n\
             Wants=network-online.target\n",
            mount_word(source),
        )
    } else {
        let destination = path_text(&job.destination, "destination")?;
        (
            "After=local-fs.target remote-fs.target\n",
            format!("{} {}", mount_word(source), mount_word(destination)),
        )
    };

    let mut exec = vec![exec_word(strata)];
    for arg in global_args(jobs_dir, settings.metrics_file.as_deref())? {
        exec.push(exec_word(&arg));
    }
    exec.push("run".to_string());
    exec.push(exec_word(&job.name));

    let header = generated_by(Engine::Systemd, job, settings);
    let mut service = format!(
        "# {header}\n\
         [Unit]\n\
         Description=strata backup job {name}\n\
         Documentation=man:strata(1)\n\
         # Sources and destinations are usually local disks: wait for them, and\n\
         # fail rather than back up an empty mount point.\n\
         {after}\
         RequiresMountsFor={mounts}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart={exec}\n\
         # A first run of a large tree can take long. If it is stopped, the next\n\
         # run repairs the interrupted state (SPEC §4), with no manual step.\n\
         TimeoutStartSec=infinity\n\
         # Backups should not get in the way of interactive work.\n\
         Nice=10\n\
         IOSchedulingClass=idle\n\
         # Hardening that a root backup of /home keeps working under.\n\
         NoNewPrivileges=yes\n\
         ProtectKernelTunables=yes\n\
         ProtectKernelModules=yes\n\
         ProtectKernelLogs=yes\n\
         ProtectControlGroups=yes\n\
         ProtectClock=yes\n\
         ProtectHostname=yes\n\
         RestrictRealtime=yes\n\
         LockPersonality=yes\n\
         # Not set, on purpose: ProtectHome= (hides /home), ProtectSystem=strict\n\
         # and PrivateTmp= (a source, a destination, strata's state in\n\
         # /var/lib/strata or a hook may live anywhere), RestrictSUIDSGID= (the\n\
         # mirror keeps setuid and setgid bits), CapabilityBoundingSet= (owners,\n\
         # ACLs and extended attributes need root's capabilities).\n",
        name = job.name,
        exec = exec.join(" "),
    );
    if !job.enabled {
        service.push_str("# The job is disabled in its job file: the daemon would not run it.\n");
    }

    let mut timer = format!(
        "# {header}\n\
         # The job's schedule: `{expr}`.\n",
        expr = schedule.source(),
    );
    if lines.len() > 1 {
        timer.push_str(
            "# Both day fields are restricted, so cron fires on a day that matches\n\
             # either one; one OnCalendar= line would need both to match. Each line\n\
             # below covers one field; the timer fires at the times of every line.\n",
        );
    }
    if settings.zone_given {
        timer.push_str(&format!(
            "# Read in {zone}, as asked with --time-zone (the strata daemon reads\n\
             # schedules in the machine's zone). Checked against {zone}'s DST changes.\n",
            zone = settings.zone,
        ));
    } else {
        timer.push_str(&format!(
            "# Local time, as cron and the strata daemon read schedules. Checked\n\
             # against the DST changes of {zone}, the zone of the machine that\n\
             # exported it: export again for a host in another zone.\n",
            zone = settings.zone,
        ));
    }
    if !job.enabled {
        timer.push_str(
            "# The job is disabled in its job file: the daemon would not run it, so\n\
             # enable this timer only if that is what you want.\n",
        );
    }
    timer.push_str(&format!(
        "[Unit]\n\
         Description=Schedule of strata backup job {name}\n\
         \n\
         [Timer]\n",
        name = job.name,
    ));
    for line in &lines {
        timer.push_str(&format!("OnCalendar={line}{suffix}\n"));
    }
    timer.push_str(&format!(
        "# Catch up on a time missed while the machine was off, once, as the\n\
         # strata daemon does at start-up.\n\
         Persistent=true\n\
         # Fire on the second (systemd's default lets a timer slip by a minute).\n\
         AccuracySec=1s\n\
         Unit={unit}.service\n\
         \n\
         [Install]\n\
         WantedBy=timers.target\n"
    ));
    Ok(vec![
        File {
            job: job.name.clone(),
            name: format!("{unit}.service"),
            contents: service,
        },
        File {
            job: job.name.clone(),
            name: format!("{unit}.timer"),
            contents: timer,
        },
    ])
}

/// Refuse where a systemd timer would fire the job at other times than
/// cron(8) around the zone's DST changes (see the module header).
fn check_dst(schedule: &Schedule, settings: &Settings) -> Result<(), String> {
    let meet = calendar::meetings(schedule, &settings.zone, &settings.now);
    let zone = &settings.zone;
    let expr = schedule.source();
    if !schedule.is_wildcard()
        && let Some(hit) = meet.gap
    {
        return Err(format!(
            "`{expr}` is a fixed-time job and {} does not exist in {zone} ({}): \
             cron(8) runs it once at {}, when the gap ends, but a systemd timer skips it",
            hit.wall.format("%Y-%m-%d %H:%M:%S"),
            hit.window.describe(),
            calendar::clock(&hit.window.to),
        ));
    }
    if schedule.is_wildcard()
        && let Some(hit) = meet.fold
    {
        return Err(format!(
            "`{expr}` is a wildcard job and {} occurs twice in {zone} ({}): \
             cron(8) runs it in both passes, but a systemd timer only in the first",
            hit.wall.format("%Y-%m-%d %H:%M:%S"),
            hit.window.describe(),
        ));
    }
    Ok(())
}

/// The `OnCalendar=` values (without a zone) whose times together are the
/// schedule's wall-clock times: one, or two for crontab's either-day rule.
pub fn on_calendar(fields: &Fields<'_>) -> Vec<String> {
    let years = match fields.years {
        Some(years) => list(years, 1970, 2100, 4),
        None => "*".to_string(),
    };
    let months = list(fields.months, 1, 12, 2);
    let time = format!(
        "{}:{}:{}",
        list(fields.hours, 0, 23, 2),
        list(fields.minutes, 0, 59, 2),
        list(fields.seconds, 0, 59, 2)
    );
    let spec = |dow: Option<&[u32]>, dom: &str| {
        let date = format!("{years}-{months}-{dom}");
        match dow {
            Some(dow) => format!("{} {date} {time}", weekdays(dow)),
            None => format!("{date} {time}"),
        }
    };
    match Days::of(fields) {
        Days::Every => vec![spec(None, "*")],
        Days::Month(dom) => vec![spec(None, &list(dom, 1, 31, 2))],
        Days::Week(dow) => vec![spec(Some(dow), "*")],
        Days::Both { dom, dow } => vec![spec(Some(dow), &list(dom, 1, 31, 2))],
        Days::Either { dom, dow } => vec![spec(None, &list(dom, 1, 31, 2)), spec(Some(dow), "*")],
    }
}

/// A value set in calendar-spec syntax: `*`, or a list of `07`, `09..17`
/// and `09..17/2`, numbers zero-padded to `width`.
fn list(values: &[u32], min: u32, max: u32, width: usize) -> String {
    if calendar::is_all(values, min, max) {
        return "*".to_string();
    }
    calendar::runs(values)
        .iter()
        .map(|&Run { first, last, step }| {
            if first == last {
                format!("{first:0width$}")
            } else if step == 1 {
                format!("{first:0width$}..{last:0width$}")
            } else {
                format!("{first:0width$}..{last:0width$}/{step}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Days of week (0–6 from Sunday) as systemd writes them, Monday first:
/// `Mon..Fri`, `Sat,Sun`, `Mon,Wed,Fri`.
fn weekdays(days: &[u32]) -> String {
    const NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    let mut monday_first: Vec<usize> = days.iter().map(|&d| (d as usize + 6) % 7).collect();
    monday_first.sort_unstable();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < monday_first.len() {
        let mut j = i;
        while j + 1 < monday_first.len() && monday_first[j + 1] == monday_first[j] + 1 {
            j += 1;
        }
        if j - i >= 2 {
            parts.push(format!(
                "{}..{}",
                NAMES[monday_first[i]], NAMES[monday_first[j]]
            ));
        } else {
            parts.extend(monday_first[i..=j].iter().map(|&d| NAMES[d].to_string()));
        }
        i = j + 1;
    }
    parts.join(",")
}

/// One word of `ExecStart=`: quoted when it holds anything but plain path
/// characters, with `%` (specifiers) and `$` (variables) doubled.
fn exec_word(word: &str) -> String {
    quote(word).replace('$', "$$")
}

/// One path of `RequiresMountsFor=` (quoted as `ExecStart=` words are;
/// specifiers expanded, variables not).
fn mount_word(path: &str) -> String {
    quote(path)
}

fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@=,".contains(c));
    let word = if plain {
        word.to_string()
    } else {
        format!("\"{}\"", word.replace('\\', "\\\\").replace('"', "\\\""))
    };
    word.replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(expr: &str) -> Vec<String> {
        on_calendar(&Schedule::parse(expr).unwrap().fields())
    }

    #[test]
    fn cron_fields_become_calendar_specs() {
        assert_eq!(spec("30 4 * * 1"), ["Mon *-*-* 04:30:00"]);
        assert_eq!(
            spec("0 0 13 * 5"),
            ["*-*-13 00:00:00", "Fri *-*-* 00:00:00"]
        );
        assert_eq!(spec("*/10 * * * *"), ["*-*-* *:00..50/10:00"]);
        assert_eq!(spec("0 9-17/2 * * *"), ["*-*-* 09..17/2:00:00"]);
        assert_eq!(spec("0 0 1 jan,jul *"), ["*-01,07-01 00:00:00"]);
        assert_eq!(spec("0 12 * * SAT-SUN"), ["Sat,Sun *-*-* 12:00:00"]);
        assert_eq!(spec("0 12 * * FRI-MON"), ["Mon,Fri..Sun *-*-* 12:00:00"]);
        assert_eq!(spec("0 12 * * 0,7"), ["Sun *-*-* 12:00:00"]);
        assert_eq!(spec("0 22-2 * * *"), ["*-*-* 00..02,22,23:00:00"]);
        assert_eq!(spec("@daily"), ["*-*-* 00:00:00"]);
        assert_eq!(spec("@hourly"), ["*-*-* *:00:00"]);
        assert_eq!(spec("@weekly"), ["Sun *-*-* 00:00:00"]);
        assert_eq!(spec("@monthly"), ["*-*-01 00:00:00"]);
        assert_eq!(spec("@yearly"), ["*-01-01 00:00:00"]);
        assert_eq!(
            spec("*/15 9-18 * * MON-FRI"),
            ["Mon..Fri *-*-* 09..18:00..45/15:00"]
        );
        assert_eq!(spec("0 0 */2 * 5"), ["Fri *-*-01..31/2 00:00:00"]);
        assert_eq!(
            spec("*/20 0 0 1 1 * 2030-2032"),
            ["2030..2032-01-01 00:00:00..40/20"]
        );
        // crontab's `1-31` is restricted, so with a weekday it ors: every day.
        assert_eq!(spec("0 0 1-31 * 5"), ["*-*-* 00:00:00"]);
    }

    #[test]
    fn words_are_quoted_for_unit_files() {
        assert_eq!(exec_word("/usr/bin/strata"), "/usr/bin/strata");
        assert_eq!(exec_word("/srv/my jobs"), "\"/srv/my jobs\"");
        assert_eq!(exec_word("/srv/100%/$HOME"), "\"/srv/100%%/$$HOME\"");
        assert_eq!(mount_word("/a \"b\"\\c"), "\"/a \\\"b\\\"\\\\c\"");
    }
}
