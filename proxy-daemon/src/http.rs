//! The HTTP endpoint Prometheus scrapes: `/metrics`, `/metrics/` and `/`.

use std::net::IpAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use proxy_core::{render, Format, Store};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::server::{now, SelfMetrics};

const INDEX: &str = "<!DOCTYPE html>\n<html><head><title>tau_metric_proxy</title></head>\n\
<body><h1>tau_metric_proxy</h1>\n<p>Node-local aggregating gateway for Prometheus.</p>\n\
<p><a href=\"/metrics\">Metrics</a></p>\n</body></html>\n";

/// The running HTTP server and its thread.
pub(crate) struct Http {
    server: Arc<Server>,
    thread: JoinHandle<()>,
}

impl Http {
    /// Binds `addr:port` and serves in a thread of its own.
    pub(crate) fn start(addr: IpAddr, port: u16, store: Arc<Mutex<Store>>, selfm: SelfMetrics) -> Result<Http, String> {
        let server = Server::http((addr, port)).map_err(|e| format!("cannot listen on {addr}:{port}: {e}"))?;
        let bound = server.server_addr().to_ip().map(|a| a.to_string()).unwrap_or_else(|| format!("{addr}:{port}"));
        log::info!("now listening on {bound}");
        let server = Arc::new(server);
        let s = server.clone();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || serve(&s, &store, selfm))
            .map_err(|e| format!("cannot start the HTTP thread: {e}"))?;
        Ok(Http { server, thread })
    }

    pub(crate) fn stop(self) {
        self.server.unblock();
        let _ = self.thread.join();
    }
}

fn serve(server: &Server, store: &Mutex<Store>, selfm: SelfMetrics) {
    let mut body = String::new();
    for req in server.incoming_requests() {
        respond(req, store, selfm, &mut body);
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

fn respond(req: Request, store: &Mutex<Store>, selfm: SelfMetrics, body: &mut String) {
    if !matches!(req.method(), Method::Get | Method::Head) {
        let r = Response::from_string("only GET and HEAD are supported\n")
            .with_status_code(405)
            .with_header(header("Allow", "GET, HEAD"));
        let _ = req.respond(r);
        return;
    }
    let path = req.url().split('?').next().unwrap_or("");
    match path {
        "/metrics" | "/metrics/" => {
            let accept = req.headers().iter().find(|h| h.field.equiv("Accept")).map(|h| h.value.as_str().to_owned());
            let format = Format::negotiate(accept.as_deref());
            {
                let mut st = store.lock();
                let counter = match format {
                    Format::Text => selfm.scrapes_text,
                    Format::OpenMetrics => selfm.scrapes_openmetrics,
                };
                st.internal_add(counter, 1, now());
                render(&st, format, body);
            }
            let r = Response::from_data(body.as_bytes()).with_header(header("Content-Type", format.content_type()));
            let _ = req.respond(r);
        }
        "/" => {
            let r = Response::from_string(INDEX).with_header(header("Content-Type", "text/html; charset=utf-8"));
            let _ = req.respond(r);
        }
        _ => {
            let _ = req.respond(Response::from_string("not found: try /metrics\n").with_status_code(404));
        }
    }
}
