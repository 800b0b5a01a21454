//! Request heads out of a connection's input: where a head ends, the size
//! limits (414, 431), and the strict parse of the request line and the few
//! headers the endpoint cares about (400, 505). No I/O here: bytes in,
//! a parsed head or a refusal out.

/// Longest request line accepted (414 beyond).
const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Largest request head accepted, request line and headers (431 beyond).
const MAX_HEAD: usize = 32 * 1024;
/// Input held for pipelined requests waiting for an earlier response.
const MAX_BACKLOG: usize = 4 * MAX_HEAD;

/// A request refused: the error status to answer before closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) status: u16,
    pub(super) message: &'static str,
}

const fn refuse(status: u16, message: &'static str) -> Refusal {
    Refusal { status, message }
}

/// What a connection's buffered input holds.
#[derive(Debug)]
pub(super) enum Next {
    /// Not a whole head yet, within the limits: wait for more.
    Partial,
    /// A whole head, taken out of the input (blank line included).
    Head(Vec<u8>),
    /// Beyond the limits.
    Refused(Refusal),
}

/// Takes the first request head out of `input`, if it is whole, checking
/// the limits on the request line and on the head.
pub(super) fn take_head(input: &mut Vec<u8>) -> Next {
    let Some(end) = head_end(&input[..input.len().min(MAX_HEAD)]) else {
        let line_len = input.iter().position(|&b| b == b'\n').unwrap_or(input.len());
        return if line_len > MAX_REQUEST_LINE {
            Next::Refused(refuse(414, "request line too long"))
        } else if input.len() > MAX_HEAD {
            Next::Refused(refuse(431, "request headers too large"))
        } else {
            Next::Partial
        };
    };
    if input[..end].iter().position(|&b| b == b'\n').unwrap_or(end) > MAX_REQUEST_LINE {
        return Next::Refused(refuse(414, "request line too long"));
    }
    Next::Head(input.drain(..end).collect())
}

/// Input waiting while a response is in flight: refused beyond a bound.
pub(super) fn check_backlog(input: &[u8]) -> Result<(), Refusal> {
    if input.len() > MAX_BACKLOG {
        Err(refuse(431, "too many pipelined requests"))
    } else {
        Ok(())
    }
}

/// Where the request head ends (after the blank line), if it has.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            if buf.get(i + 1) == Some(&b'\n') {
                return Some(i + 2);
            }
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// The parts of a request head the endpoint cares about.
#[derive(Debug)]
pub(super) struct Head<'a> {
    pub(super) method: &'a str,
    pub(super) path: &'a str,
    pub(super) http11: bool,
    pub(super) accept: Option<&'a str>,
    pub(super) connection: Option<&'a str>,
    pub(super) has_body: bool,
}

impl Head<'_> {
    /// Whether the connection stays open after the response: as the
    /// client asks, by default with HTTP/1.1 only, never after a body we
    /// do not read.
    pub(super) fn keep_alive(&self) -> bool {
        !self.has_body
            && match self.connection {
                Some(c) if c.eq_ignore_ascii_case("close") => false,
                Some(c) if c.eq_ignore_ascii_case("keep-alive") => true,
                _ => self.http11,
            }
    }
}

/// Parses a head taken by [`take_head`].
pub(super) fn parse(head: &[u8]) -> Result<Head<'_>, Refusal> {
    let Ok(head) = std::str::from_utf8(head) else {
        return Err(refuse(400, "request head is not UTF-8"));
    };
    parse_head(head)
}

fn parse_head(head: &str) -> Result<Head<'_>, Refusal> {
    let mut lines = head.split('\n').map(|l| l.trim_end_matches('\r'));
    let request = lines.next().unwrap_or("");
    let mut parts = request.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(refuse(400, "malformed request line"));
    };
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Err(refuse(505, "only HTTP/1.0 and HTTP/1.1 are supported")),
        _ => return Err(refuse(400, "malformed request line")),
    };
    let mut h = Head {
        method,
        path: target.split('?').next().unwrap_or(""),
        http11,
        accept: None,
        connection: None,
        has_body: false,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(refuse(400, "malformed header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("accept") {
            h.accept = Some(value);
        } else if name.eq_ignore_ascii_case("connection") {
            h.connection = Some(value);
        } else if (name.eq_ignore_ascii_case("content-length") && value != "0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            h.has_body = true;
        }
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_end_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nrest"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    #[test]
    fn request_heads_are_parsed_strictly() {
        let h = parse_head("GET /metrics?x=1 HTTP/1.1\r\nAccept: a/b\r\nConnection: close\r\n").ok().unwrap();
        assert_eq!(
            (h.method, h.path, h.http11, h.accept, h.connection),
            ("GET", "/metrics", true, Some("a/b"), Some("close"))
        );
        assert_eq!(parse_head("GET /\r\n").err().map(|r| r.status), Some(400));
        assert_eq!(parse_head("GET / HTTP/2.0\r\n").err().map(|r| r.status), Some(505));
        assert_eq!(parse_head("GET / HTTP/1.1\r\nno colon\r\n").err().map(|r| r.status), Some(400));
        assert!(parse_head("GET / HTTP/1.1\r\nContent-Length: 3\r\n").ok().unwrap().has_body);
    }

    #[test]
    fn whole_heads_are_taken_and_pipelined_bytes_stay() {
        let mut input = b"GET / HTTP/1.1\r\n\r\nGET /metrics HT".to_vec();
        assert!(matches!(take_head(&mut input), Next::Head(h) if h == b"GET / HTTP/1.1\r\n\r\n"));
        assert_eq!(input, b"GET /metrics HT");
        assert!(matches!(take_head(&mut input), Next::Partial));
        assert_eq!(input, b"GET /metrics HT");
    }

    #[test]
    fn heads_beyond_the_limits_are_refused() {
        let status = |input: Vec<u8>| match take_head(&mut input.clone()) {
            Next::Refused(r) => Some(r.status),
            _ => None,
        };
        let long_line = [b"GET /".to_vec(), vec![b'a'; MAX_REQUEST_LINE], b" HTTP/1.1\r\n".to_vec()].concat();
        assert_eq!(status(long_line.clone()), Some(414), "a long line, head unfinished");
        assert_eq!(status([long_line, b"\r\n".to_vec()].concat()), Some(414), "a long line in a whole head");
        let many_headers = [b"GET / HTTP/1.1\r\n".to_vec(), b"X: y\r\n".repeat(MAX_HEAD / 5)].concat();
        assert_eq!(status(many_headers), Some(431));
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: y\r\n".to_vec()), None, "unfinished, within the limits");
        assert!(check_backlog(&vec![0; MAX_BACKLOG]).is_ok());
        assert_eq!(check_backlog(&vec![0; MAX_BACKLOG + 1]).map_err(|r| r.status), Err(431));
    }

    #[test]
    fn heads_must_be_utf8_and_keep_alive_follows_the_client() {
        assert_eq!(parse(b"GET /\xff HTTP/1.1\r\n\r\n").err().map(|r| r.status), Some(400));
        let keep = |head: &str| parse(head.as_bytes()).ok().unwrap().keep_alive();
        assert!(keep("GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!keep("GET / HTTP/1.1\r\nContent-Length: 2\r\n\r\n"), "a body we do not read");
        assert!(keep("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
    }
}
