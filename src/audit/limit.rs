//! A cap on how many refused anonymous requests the audit log records per minute.
//!
//! Anyone can send requests that are refused (a guessed enrollment code, a bad password, a
//! forged proof), and each refusal would otherwise add an entry that is never deleted. Above
//! the cap, such refusals are counted instead, and one entry records how many were left out.
//! Refusals of signed-in sessions and known users are always recorded.

use crate::clock::UnixTime;

/// Maximum anonymous refusals recorded in one minute.
pub const MAX_REFUSALS_PER_MINUTE: u32 = 60;
/// Length of a counting window, in seconds.
const WINDOW_SECONDS: UnixTime = 60;

/// The decision whether to record a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Record it. `suppressed` refusals of earlier windows were left out and not yet reported.
    Record { suppressed: u64 },
    /// Leave it out; it is counted.
    Suppress { first: bool },
}

/// Counts refused decisions per minute.
#[derive(Debug, Default)]
pub struct RefusalLimiter {
    window: UnixTime,
    recorded: u32,
    suppressed: u64,
}

impl RefusalLimiter {
    /// Decides whether a refusal made at `now` is recorded.
    pub fn admit(&mut self, now: UnixTime) -> Admission {
        let window = now / WINDOW_SECONDS;
        if window != self.window {
            self.window = window;
            self.recorded = 0;
        }
        if self.recorded >= MAX_REFUSALS_PER_MINUTE {
            self.suppressed += 1;
            return Admission::Suppress {
                first: self.suppressed == 1,
            };
        }
        self.recorded += 1;
        Admission::Record {
            suppressed: std::mem::take(&mut self.suppressed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_caps_and_reports_suppressed() {
        let mut limiter = RefusalLimiter::default();
        for _ in 0..MAX_REFUSALS_PER_MINUTE {
            assert_eq!(limiter.admit(120), Admission::Record { suppressed: 0 });
        }

        assert_eq!(limiter.admit(150), Admission::Suppress { first: true });
        assert_eq!(limiter.admit(179), Admission::Suppress { first: false });
        assert_eq!(limiter.admit(180), Admission::Record { suppressed: 2 });
        assert_eq!(limiter.admit(181), Admission::Record { suppressed: 0 });
    }
}
