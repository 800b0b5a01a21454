//! Responses of the HTTP endpoint and their bytes on the wire.

/// The page served at `/`.
pub(super) const INDEX: &str = "<!DOCTYPE html>\n<html><head><title>tau_metric_proxy</title></head>\n\
<body><h1>tau_metric_proxy</h1>\n<p>Node-local aggregating gateway for Prometheus.</p>\n\
<p><a href=\"/metrics\">Metrics</a></p>\n</body></html>\n";

/// A response: status, extra headers, body, and whether the body is sent.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) content_type: &'static str,
    pub(super) extra: &'static str,
    /// The body; the rendered page is not copied here but taken from the
    /// server's render buffer (see `page`).
    pub(super) body: Vec<u8>,
    /// The body is the page just rendered into the server's render buffer.
    pub(super) page: bool,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// An error response with a one-line plain text body.
pub(super) fn error(status: u16, message: &str) -> Response {
    Response {
        status,
        content_type: "text/plain; charset=utf-8",
        extra: "",
        body: format!("{message}\n").into_bytes(),
        page: false,
    }
}

/// Appends `resp` with `body` to `out` (the head only, for HEAD).
pub(super) fn write_response(out: &mut Vec<u8>, resp: &Response, body: &[u8], is_head: bool, keep_alive: bool) {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: {}\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        body.len(),
        resp.extra,
        if keep_alive { "keep-alive" } else { "close" }
    );
    out.extend_from_slice(head.as_bytes());
    if !is_head {
        out.extend_from_slice(body);
    }
}
