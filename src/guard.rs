//! Checks on a plan before it is applied: `max_delete` refuses a run
//! that would remove more files from the mirror than the job allows (an
//! unmounted or half-synced source looks like a mass deletion). Pure: it
//! reads the plan and counts, touches nothing.

use serde::{Deserialize, Serialize};

/// A percentage from 0 to 100, decimals allowed, with a `%` sign (also the
/// job schema's pattern).
pub const MAX_DELETE_PERCENT: &str = r"^(100(\.0+)?|[0-9]{1,2}(\.[0-9]+)?)%$";

/// How many files a run may remove from the mirror (`max_delete`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "MaxDeleteText", into = "MaxDeleteText")]
pub enum MaxDelete {
    /// At most this many files.
    Count(u64),
    /// At most this percentage (0-100) of the files in the mirror.
    Percent(f64),
}

impl MaxDelete {
    /// The most files a run may remove from a mirror of `mirror_files`.
    pub fn limit(self, mirror_files: u64) -> u64 {
        match self {
            MaxDelete::Count(n) => n,
            // Rounded down: "10%" of 15 files allows 1, not 2.
            MaxDelete::Percent(p) => (mirror_files as f64 * p / 100.0).floor() as u64,
        }
    }
}

impl std::fmt::Display for MaxDelete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxDelete::Count(n) => write!(f, "{n}"),
            MaxDelete::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// `max_delete` as it is written: a number or a string.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
enum MaxDeleteText {
    Count(u64),
    Text(String),
}

impl TryFrom<MaxDeleteText> for MaxDelete {
    type Error = String;

    fn try_from(value: MaxDeleteText) -> Result<Self, Self::Error> {
        match value {
            MaxDeleteText::Count(n) => Ok(MaxDelete::Count(n)),
            MaxDeleteText::Text(text) => text
                .strip_suffix('%')
                .and_then(|p| p.parse::<f64>().ok())
                .filter(|p| (0.0..=100.0).contains(p))
                .map(MaxDelete::Percent)
                .ok_or_else(|| {
                    format!("max_delete: {text:?} is not a count or a percentage like \"10%\"")
                }),
        }
    }
}

impl From<MaxDelete> for MaxDeleteText {
    fn from(value: MaxDelete) -> Self {
        match value {
            MaxDelete::Count(n) => MaxDeleteText::Count(n),
            MaxDelete::Percent(_) => MaxDeleteText::Text(value.to_string()),
        }
    }
}

/// A plan that removes more than `max_delete` allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "the run would remove {removed} of the {mirror} files in the mirror, more than \
     max_delete {limit} allows (at most {allowed}): nothing was changed; check the source, \
     or run with --force to accept"
)]
pub struct TooManyDeletions {
    /// Files the plan removes from the mirror.
    pub removed: u64,
    /// Files in the mirror before the run.
    pub mirror: u64,
    /// The job's setting.
    pub limit: MaxDelete,
    /// What the setting allows for this mirror.
    pub allowed: u64,
}

/// Whether removing `removed` files respects `limit` for a mirror of
/// `mirror` files.
pub fn check_deletions(
    removed: u64,
    mirror: u64,
    limit: Option<MaxDelete>,
) -> Result<(), TooManyDeletions> {
    let Some(limit) = limit else {
        return Ok(());
    };
    let allowed = limit.limit(mirror);
    if removed > allowed {
        return Err(TooManyDeletions {
            removed,
            mirror,
            limit,
            allowed,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_percentages() {
        for (deleted, mirror, limit, ok) in [
            (0, 0, MaxDelete::Count(0), true),
            (5, 100, MaxDelete::Count(5), true),
            (6, 100, MaxDelete::Count(5), false),
            (10, 100, MaxDelete::Percent(10.0), true),
            (11, 100, MaxDelete::Percent(10.0), false),
            // 10% of 15 is 1.5: one file may go, not two.
            (2, 15, MaxDelete::Percent(10.0), false),
            (1, 15, MaxDelete::Percent(10.0), true),
            (1, 1000, MaxDelete::Percent(0.0), false),
            (1000, 1000, MaxDelete::Percent(100.0), true),
        ] {
            let got = check_deletions(deleted, mirror, Some(limit));
            assert_eq!(
                got.is_ok(),
                ok,
                "{deleted} of {mirror} with {limit}: {got:?}"
            );
        }
        assert!(check_deletions(50, 50, None).is_ok());
    }

    #[test]
    fn the_message_says_what_and_how_to_override() {
        let e = check_deletions(30, 100, Some(MaxDelete::Percent(10.0))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the run would remove 30 of the 100 files in the mirror, more than max_delete 10% \
             allows (at most 10): nothing was changed; check the source, or run with --force \
             to accept"
        );
    }
}
