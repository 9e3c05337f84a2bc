//! A budget of requests per minute for an endpoint that stores a record for every request,
//! authenticated or not.
//!
//! `POST /login/passkey/options` needs no credentials and stores a ceremony until it expires.
//! Without a budget a flood of such requests would grow the database until the expired
//! ceremonies are swept. The budget is shared by all clients: behind a reverse proxy every
//! request has the proxy's address, so a per-address budget would limit everyone together anyway.

use crate::clock::UnixTime;

/// Length of a budget window, in seconds.
const WINDOW_SECONDS: UnixTime = 60;

/// The decision on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spend {
    Allowed,
    /// The budget of this window is used up. `first` is set for the first request turned away
    /// in the window, so that one log line reports a flood. The next window starts in
    /// `retry_after` seconds.
    Exhausted {
        first: bool,
        retry_after: u64,
    },
}

/// Counts the requests of the current minute against a fixed limit.
#[derive(Debug)]
pub struct MinuteBudget {
    limit: u32,
    window: UnixTime,
    used: u32,
}

impl MinuteBudget {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            window: 0,
            used: 0,
        }
    }

    /// Spends one request made at `now` from the budget of its minute.
    pub fn spend(&mut self, now: UnixTime) -> Spend {
        let window = now / WINDOW_SECONDS;
        if window != self.window {
            self.window = window;
            self.used = 0;
        }
        if self.used < self.limit {
            self.used += 1;
            return Spend::Allowed;
        }

        let first = self.used == self.limit;
        self.used = self.used.saturating_add(1);
        Spend::Exhausted {
            first,
            retry_after: (window + 1) * WINDOW_SECONDS - now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_resets_each_minute() {
        let mut budget = MinuteBudget::new(2);

        assert_eq!(budget.spend(120), Spend::Allowed);
        assert_eq!(budget.spend(130), Spend::Allowed);
        assert_eq!(
            budget.spend(170),
            Spend::Exhausted {
                first: true,
                retry_after: 10
            }
        );
        assert_eq!(
            budget.spend(179),
            Spend::Exhausted {
                first: false,
                retry_after: 1
            }
        );
        assert_eq!(budget.spend(180), Spend::Allowed);
    }

    #[test]
    fn zero_budget_allows_nothing() {
        let mut budget = MinuteBudget::new(0);

        assert_eq!(
            budget.spend(60),
            Spend::Exhausted {
                first: true,
                retry_after: 60
            }
        );
    }
}
