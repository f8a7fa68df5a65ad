//! The process's limit on open file descriptors (`RLIMIT_NOFILE`), which
//! every connection, store connection and key file counts against.
//!
//! This module owns reading the limit and raising the soft limit to the hard
//! one, which any process may do. It must never lower a limit, nor touch the
//! hard limit (only a privileged process could raise it). The binary raises
//! at start-up; the server reads the result to size its connection cap.

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// Where an unlimited hard limit (`RLIM_INFINITY`) leaves the soft one:
/// Linux refuses an infinite `RLIMIT_NOFILE`, and its own ceiling
/// (`fs.nr_open`) defaults to this.
const UNLIMITED_TARGET: u64 = 1 << 20;

/// The descriptor limits, as numbers (an unlimited one reads as `u64::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdLimit {
    /// What the process may open now.
    pub soft: u64,
    /// What the soft limit may be raised to without privilege.
    pub hard: u64,
}

/// The limits in force.
pub fn current() -> FdLimit {
    from_rlimit(&getrlimit(Resource::Nofile))
}

/// Raises the soft limit to the hard one (or to 2^20 when the hard limit is
/// unlimited). Returns the limits before and after; on failure (a sandbox
/// may refuse) the limits are left as they were, and both are the same.
pub fn raise() -> (FdLimit, FdLimit) {
    let before = getrlimit(Resource::Nofile);
    let was = from_rlimit(&before);
    let target = before.maximum.unwrap_or(UNLIMITED_TARGET);
    if before.current.is_some_and(|soft| soft >= target) || before.current.is_none() {
        return (was, was);
    }
    let raised = Rlimit {
        current: Some(target),
        maximum: before.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => (was, current()),
        Err(_) => (was, was),
    }
}

fn from_rlimit(r: &Rlimit) -> FdLimit {
    FdLimit {
        soft: r.current.unwrap_or(u64::MAX),
        hard: r.maximum.unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_never_lowers() {
        let (before, after) = raise();
        assert!(after.soft >= before.soft);
        assert_eq!(after.hard, before.hard);
        assert!(after.soft == after.hard || after.hard == u64::MAX, "{after:?}");
        assert_eq!(current(), after);
        // A second raise changes nothing.
        assert_eq!(raise(), (after, after));
    }
}
