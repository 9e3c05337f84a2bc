//! HTML pages and JSON views of records. Every value put into HTML is escaped.

use serde::Serialize;

use crate::store::SessionRecord;

/// A session as the owner and operators see it: no credential, challenge or key material.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub id: String,
    pub user_id: String,
    pub state: &'static str,
    pub algorithm: Option<&'static str>,
    pub assurance: &'static str,
    pub created_at: u64,
    pub expires_at: u64,
    pub last_proof_at: Option<u64>,
    pub cookie_expires_at: Option<u64>,
    pub refresh_count: u64,
    pub current: bool,
    /// The enrolled device the session belongs to, if any.
    pub device_id: Option<String>,
}

impl SessionView {
    pub fn new(session: &SessionRecord, current_id: Option<&str>) -> Self {
        Self {
            id: session.id.clone(),
            user_id: session.user_id.clone(),
            state: session.state_name(),
            algorithm: session.key.as_ref().map(|key| key.alg.name()),
            assurance: session.assurance.name(),
            created_at: session.created_at,
            expires_at: session.expires_at,
            last_proof_at: session.last_proof_at,
            cookie_expires_at: session.is_bound().then_some(session.credential_expires_at),
            refresh_count: session.refresh_count,
            current: current_id == Some(session.id.as_str()),
            device_id: session.device_id.clone(),
        }
    }
}

pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Wraps a page body in the shared layout.
pub fn page(title: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · devbound</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #1b1f24; }}
table {{ border-collapse: collapse; width: 100%; }} td, th {{ text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #ddd; }}
.notice {{ background: #fff4d6; padding: .6rem .8rem; border-radius: 4px; }}
.ok {{ color: #176b2c; }} code {{ font-size: .9em; }}
label {{ display: block; margin: .6rem 0; }} input {{ font-size: 1rem; padding: .3rem; }}
</style></head>
<body><h1>{title}</h1>
{body}
</body></html>
"#,
        title = escape(title)
    )
}

/// Formats a Unix time as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn utc(time: u64) -> String {
    let days = time / 86_400;
    let seconds = time % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_400_000), "2026-12-04 16:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }

    #[test]
    fn escape_covers_html_metacharacters() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
