//! Responses of the HTTP endpoint and their bytes on the wire.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// What a response carries.
#[derive(Debug)]
pub(super) enum Body {
    /// A small body, copied into the connection's buffer.
    Bytes(Vec<u8>),
    /// A rendered page, shared by every connection sending it.
    Page(Arc<[u8]>),
    /// The head of a page that is not rendered (HEAD), or of a 304: no
    /// length, no body.
    Unrendered,
}

/// A response: status, extra headers and body.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) content_type: &'static str,
    /// Extra header lines, each ending in CRLF.
    pub(super) extra: Cow<'static, str>,
    pub(super) body: Body,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// An error response with a one-line plain text body.
pub(super) fn error(status: u16, message: &str) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        extra: Cow::Borrowed(""),
        body: Body::Bytes(format!("{message}\n").into_bytes()),
    }
}

/// Appends the head of `resp` to `out`, and its body unless `is_head`;
/// returns the shared page to send after `out`, if any.
pub(super) fn write_response(out: &mut Vec<u8>, resp: Response, is_head: bool, keep_alive: bool) -> Option<Arc<[u8]>> {
    let length = match &resp.body {
        Body::Bytes(b) => format!("Content-Length: {}\r\n", b.len()),
        Body::Page(p) => format!("Content-Length: {}\r\n", p.len()),
        Body::Unrendered => String::new(),
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\n{length}Date: {}\r\n{}Connection: {}\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        http_date(SystemTime::now()),
        resp.extra,
        if keep_alive { "keep-alive" } else { "close" }
    );
    out.extend_from_slice(head.as_bytes());
    match resp.body {
        Body::Bytes(b) if !is_head => {
            out.extend_from_slice(&b);
            None
        }
        Body::Page(p) if !is_head => Some(p),
        _ => None,
    }
}

/// `Date` in the IMF-fixdate form HTTP uses: `Tue, 01 Dec 2026 08:50:00 GMT`.
pub(super) fn http_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = client::civil_date(days as i64);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_imf_fixdate() {
        let at = |s: u64| http_date(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(1_795_941_000), "Sun, 29 Nov 2026 08:30:00 GMT");
    }
}
