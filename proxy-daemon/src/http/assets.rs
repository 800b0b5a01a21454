//! The live page's files, embedded in the binary (`proxy-daemon/page/`):
//! its HTML, script and style, and uPlot, the chart library, as built by
//! its npm package, with its licence. Served with an `ETag` and
//! `Cache-Control: no-cache`, so a browser asks again on each load and
//! gets `304 Not Modified` while the daemon is the same; gzip-compressed
//! once, at start, for browsers that accept it.

use std::io::Write;
use std::sync::Arc;

use flate2::write::GzEncoder;

use super::response::{Body, Response};

/// Path, type and bytes of each file.
const FILES: [(&str, &str, &[u8]); 6] = [
    ("/", "text/html; charset=utf-8", include_bytes!("../../page/index.html")),
    ("/page/page.js", "text/javascript; charset=utf-8", include_bytes!("../../page/page.js")),
    ("/page/page.css", "text/css; charset=utf-8", include_bytes!("../../page/page.css")),
    ("/page/uPlot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("../../page/uplot/uPlot.iife.min.js")),
    ("/page/uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../../page/uplot/uPlot.min.css")),
    ("/page/uPlot.LICENSE.txt", "text/plain; charset=utf-8", include_bytes!("../../page/uplot/LICENSE")),
];

/// One file, plain and compressed, with its entity tags.
#[derive(Debug)]
pub(super) struct Asset {
    pub(super) path: &'static str,
    pub(super) content_type: &'static str,
    plain: Arc<[u8]>,
    gzip: Arc<[u8]>,
    etag: String,
    etag_gzip: String,
}

/// Headers of every file: revalidate each time, by entity tag; scripts,
/// styles and anything else only from the daemon itself (the page shows
/// names that collectors chose: none of them may become code).
const HEADERS: &str = "Cache-Control: no-cache\r\nVary: Accept-Encoding\r\nX-Content-Type-Options: nosniff\r\n\
Content-Security-Policy: default-src 'self'; img-src 'self' data:; frame-ancestors 'none'\r\n";

impl Asset {
    /// The response to a client that does (`gzip`) or does not accept
    /// gzip and sent `if_none_match`: 304 when that names this form.
    pub(super) fn response(&self, gzip: bool, if_none_match: Option<&str>) -> Response {
        let (body, etag) = if gzip { (&self.gzip, &self.etag_gzip) } else { (&self.plain, &self.etag) };
        let not_modified = if_none_match.is_some_and(|v| {
            v.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
        });
        let encoding = if gzip && !not_modified { "Content-Encoding: gzip\r\n" } else { "" };
        Response {
            status: if not_modified { 304 } else { 200 },
            content_type: self.content_type,
            extra: format!("{HEADERS}ETag: {etag}\r\n{encoding}").into(),
            body: if not_modified { Body::Unrendered } else { Body::Page(body.clone()) },
        }
    }
}

/// Every file, read from the binary and compressed.
pub(super) fn load() -> Vec<Asset> {
    FILES
        .iter()
        .map(|&(path, content_type, bytes)| {
            let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
            // Writing to a Vec cannot fail.
            let _ = gz.write_all(bytes);
            let tag = fnv1a(bytes);
            Asset {
                path,
                content_type,
                plain: Arc::from(bytes),
                gzip: Arc::from(gz.finish().unwrap_or_default()),
                etag: format!("\"{tag:016x}\""),
                etag_gzip: format!("\"{tag:016x}-gz\""),
            }
        })
        .collect()
}

/// 64-bit FNV-1a: a content hash for entity tags (not a defence against
/// anyone: the files are the daemon's own).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_file_has_its_tags_and_a_gzip_form_that_inflates_to_it() {
        let assets = load();
        assert_eq!(assets.len(), FILES.len());
        for a in &assets {
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a.gzip[..]), &mut plain).unwrap();
            assert_eq!(plain, &a.plain[..], "{}", a.path);
            assert_ne!(a.etag, a.etag_gzip);
        }
        let page = &assets[0];
        let status = |gzip: bool, inm: Option<&str>| page.response(gzip, inm).status;
        assert_eq!(status(false, None), 200);
        assert_eq!(status(false, Some(&page.etag)), 304);
        assert_eq!(status(false, Some(&format!("\"x\", W/{}", page.etag))), 304);
        assert_eq!(status(true, Some(&page.etag)), 200, "the plain tag names the plain form only");
        assert_eq!(status(true, Some(&page.etag_gzip)), 304);
        assert_eq!(status(true, Some("*")), 304);
        let r = page.response(true, None);
        assert!(r.extra.contains("Content-Encoding: gzip\r\n") && r.extra.contains(&page.etag_gzip), "{}", r.extra);
        assert!(matches!(r.body, Body::Page(b) if b.len() == page.gzip.len()));
        assert!(matches!(page.response(false, Some(&page.etag)).body, Body::Unrendered), "304 has no body");
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
