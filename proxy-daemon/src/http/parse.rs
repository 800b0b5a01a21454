//! Request heads out of a connection's input: where a head ends, the size
//! limits (414, 431), and the parse of the request line and the few
//! headers the endpoint cares about, with `httparse` (400, 505). No I/O
//! here: bytes in, a parsed head or a refusal out.

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

/// Headers parsed at most in one request head (431 beyond).
const MAX_HEADERS: usize = 128;

/// The parts of a request head the endpoint cares about.
#[derive(Debug)]
pub(super) struct Head<'a> {
    pub(super) method: &'a str,
    pub(super) path: &'a str,
    /// What follows `?` in the target, empty without one.
    pub(super) query: &'a str,
    pub(super) http11: bool,
    pub(super) accept: Option<&'a str>,
    /// `Connection` says `close` (any token of its list).
    conn_close: bool,
    /// `Connection` says `keep-alive`.
    conn_keep_alive: bool,
    /// `Accept-Encoding` accepts gzip (q above 0, by name or `*`).
    pub(super) gzip: bool,
    /// `If-None-Match`, as sent.
    pub(super) if_none_match: Option<&'a str>,
    pub(super) has_body: bool,
}

impl Head<'_> {
    /// Whether the connection stays open after the response: as the
    /// client asks, by default with HTTP/1.1 only, never after a body we
    /// do not read.
    pub(super) fn keep_alive(&self) -> bool {
        !self.has_body && !self.conn_close && (self.http11 || self.conn_keep_alive)
    }
}

/// Parses a head taken by [`take_head`], with `httparse`.
pub(super) fn parse(head: &[u8]) -> Result<Head<'_>, Refusal> {
    if std::str::from_utf8(head).is_err() {
        return Err(refuse(400, "request head is not UTF-8"));
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(refuse(400, "malformed request line")),
        Err(httparse::Error::TooManyHeaders) => return Err(refuse(431, "request headers too large")),
        Err(httparse::Error::Version) => return Err(version_refusal(head)),
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue | httparse::Error::NewLine)
            if !first_line_bad(head) =>
        {
            return Err(refuse(400, "malformed header line"))
        }
        Err(_) => return Err(refuse(400, "malformed request line")),
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Err(refuse(400, "malformed request line"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut h = Head {
        method,
        path,
        query,
        http11: version == 1,
        accept: None,
        conn_close: false,
        conn_keep_alive: false,
        gzip: false,
        if_none_match: None,
        has_body: false,
    };
    for header in req.headers.iter() {
        // Values of a head that is UTF-8 as a whole are UTF-8.
        let value = std::str::from_utf8(header.value).unwrap_or("").trim();
        let name = header.name;
        if name.eq_ignore_ascii_case("accept") {
            h.accept = Some(value);
        } else if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                h.conn_close |= token.eq_ignore_ascii_case("close");
                h.conn_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            h.gzip = accepts_gzip(value);
        } else if name.eq_ignore_ascii_case("if-none-match") {
            h.if_none_match = Some(value);
        } else if (name.eq_ignore_ascii_case("content-length") && value != "0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            h.has_body = true;
        }
    }
    Ok(h)
}

/// A version httparse refuses: 505 for another HTTP version, else 400.
fn version_refusal(head: &[u8]) -> Refusal {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    let version = line.rsplit(|&b| b == b' ').next().unwrap_or(b"");
    if line.split(|&b| b == b' ').count() == 3 && version.starts_with(b"HTTP/") {
        refuse(505, "only HTTP/1.0 and HTTP/1.1 are supported")
    } else {
        refuse(400, "malformed request line")
    }
}

/// Whether the request line itself is not `METHOD TARGET HTTP/x.y`.
fn first_line_bad(head: &[u8]) -> bool {
    let line = head.split(|&b| b == b'\n').next().unwrap_or(b"");
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut headers = [httparse::EMPTY_HEADER; 0];
    let probe = [line, b"\r\n\r\n"].concat();
    !matches!(httparse::Request::new(&mut headers).parse(&probe), Ok(httparse::Status::Complete(_)))
}

/// Whether an `Accept-Encoding` value accepts gzip: `gzip` (or `x-gzip`)
/// with a quality above 0, or `*` above 0 when gzip is not named.
pub(super) fn accepts_gzip(value: &str) -> bool {
    let (mut named, mut any) = (None, None);
    for coding in value.split(',') {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, v)| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            named = Some(q > 0.0);
        } else if name == "*" {
            any = Some(q > 0.0);
        }
    }
    named.or(any).unwrap_or(false)
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
        let h = parse(b"GET /metrics?x=1 HTTP/1.1\r\nAccept: a/b\r\nConnection: close\r\nIf-None-Match: \"e\"\r\n\r\n")
            .ok()
            .unwrap();
        assert_eq!(
            (h.method, h.path, h.query, h.http11, h.accept, h.keep_alive(), h.if_none_match),
            ("GET", "/metrics", "x=1", true, Some("a/b"), false, Some("\"e\""))
        );
        assert_eq!(parse(b"GET /a HTTP/1.1\r\n\r\n").ok().map(|h| (h.path, h.query)), Some(("/a", "")));
        let status = |head: &str| parse(head.as_bytes()).err().map(|r| (r.status, r.message));
        assert_eq!(status("GET /\r\n\r\n"), Some((400, "malformed request line")));
        assert_eq!(status("NONSENSE\r\n\r\n"), Some((400, "malformed request line")));
        assert_eq!(status("GET / HTTP/2.0\r\n\r\n"), Some((505, "only HTTP/1.0 and HTTP/1.1 are supported")));
        assert_eq!(status("GET / HTTP/1.1\r\nno colon\r\n\r\n"), Some((400, "malformed header line")));
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(MAX_HEADERS + 1));
        assert_eq!(status(&many), Some((431, "request headers too large")));
        assert!(parse(b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\n").ok().unwrap().has_body);
    }

    #[test]
    fn gzip_follows_accept_encoding_and_its_qualities() {
        let gz =
            |v: &str| parse(format!("GET / HTTP/1.1\r\nAccept-Encoding: {v}\r\n\r\n").as_bytes()).ok().unwrap().gzip;
        assert!(gz("gzip"));
        assert!(gz("deflate, GZIP;q=0.5"));
        assert!(gz("*"));
        assert!(!gz("gzip;q=0"));
        assert!(!gz("gzip;q=0, *"), "named beats the wildcard");
        assert!(!gz("identity"));
        assert!(!parse(b"GET / HTTP/1.1\r\n\r\n").ok().unwrap().gzip);
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
        assert!(!keep("GET / HTTP/1.1\r\nConnection: keep-alive, Close\r\n\r\n"), "a token list");
        assert!(keep("GET / HTTP/1.0\r\nConnection: TE, keep-alive\r\n\r\n"));
    }
}
