//! Cron schedules. (Stand-in until the real module lands: accepts anything.)

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    source: String,
}

/// A schedule that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

impl Schedule {
    /// Parse a schedule.
    pub fn parse(expr: &str) -> Result<Schedule, ScheduleError> {
        Ok(Schedule {
            source: expr.to_string(),
        })
    }
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }
}
