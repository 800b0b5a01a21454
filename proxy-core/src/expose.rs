//! Prometheus text format 0.0.4 and OpenMetrics 1.0 rendering.

use std::fmt::Write;
use std::sync::Arc;

use protocol::Kind;

use crate::store::{om_family_name, Layout, Store, Val};

/// An exposition format, chosen from the scraper's `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// Picks the format the `Accept` header prefers: OpenMetrics when it
    /// gives it a higher quality (`q`) than text 0.0.4, else text (the
    /// default, also for a tie or no header). Media types are compared
    /// without regard to case; `*/*`, `text/*` and `application/*` stand
    /// for a type not named.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else { return Format::Text };
        // Quality given by name, and by wildcard, for each format.
        let (mut om, mut text) = (None::<f32>, None::<f32>);
        let (mut om_wild, mut text_wild) = (0f32, 0f32);
        for range in accept.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0)
                .clamp(0.0, 1.0);
            let max = |slot: &mut Option<f32>| *slot = Some(slot.map_or(q, |o| o.max(q)));
            match media.as_str() {
                "application/openmetrics-text" => max(&mut om),
                "text/plain" => max(&mut text),
                "*/*" => {
                    om_wild = om_wild.max(q);
                    text_wild = text_wild.max(q);
                }
                "application/*" => om_wild = om_wild.max(q),
                "text/*" => text_wild = text_wild.max(q),
                _ => {}
            }
        }
        let (om, text) = (om.unwrap_or(om_wild), text.unwrap_or(text_wild));
        if om > 0.0 && om > text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// What a scrape renders, taken from the store under its lock in one
/// quick copy: the shared layout (keys, families) and every value in
/// exposition order. Rendering it needs no lock.
#[derive(Debug, Default)]
pub struct Scrape {
    layout: Arc<Layout>,
    values: Vec<Val>,
}

impl Scrape {
    /// Number of series it holds.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The series of family `name`, in exposition order, each as its key
    /// (`name{labels}`, see [`crate::labels_of_key`]) and its value in
    /// exposition units (seconds, bytes); none when the family has none.
    pub fn family<'a>(&'a self, name: &str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        let layout = &*self.layout;
        let range = layout.families.iter().find(|f| f.name == name).map_or(0..0, |f| f.range.clone());
        range.map(move |k| {
            let start = if k == 0 { 0 } else { layout.ends[k - 1] };
            let value = match self.values[k] {
                Val::Int(i) => i as f64,
                Val::Float(v) => v,
            };
            (&layout.text[start..layout.ends[k]], value)
        })
    }
}

impl Store {
    /// Copies what a scrape shows into `scrape` (its buffer reused),
    /// refreshing the render order first after new series.
    pub fn scrape(&mut self, scrape: &mut Scrape) {
        self.prepare_render();
        scrape.layout = self.order.layout.clone();
        scrape.values.clear();
        scrape.values.extend(self.order.series.iter().map(|&sid| self.series[sid as usize].val()));
    }
}

/// Renders every family of `store` into `out` (cleared first). Takes the
/// store mutably only to refresh its render order after new series.
pub fn render(store: &mut Store, format: Format, out: &mut String) {
    let mut scrape = Scrape::default();
    store.scrape(&mut scrape);
    render_scrape(&scrape, format, out);
}

/// Renders a [`Scrape`] into `out` (cleared first).
pub fn render_scrape(scrape: &Scrape, format: Format, out: &mut String) {
    let layout = &*scrape.layout;
    out.clear();
    out.reserve(layout.text.len() + 24 * scrape.values.len());
    for fam in &layout.families {
        let range = &fam.range;
        if range.is_empty() {
            continue;
        }
        let type_name = match fam.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let family_name = match format {
            Format::Text => fam.name.as_str(),
            Format::OpenMetrics => om_family_name(&fam.name, fam.kind),
        };
        out.push_str("# HELP ");
        out.push_str(family_name);
        out.push(' ');
        escape_help(&fam.help, format, out);
        out.push_str("\n# TYPE ");
        out.push_str(family_name);
        out.push(' ');
        out.push_str(type_name);
        out.push('\n');
        let mut start = if range.start == 0 { 0 } else { layout.ends[range.start - 1] };
        for k in range.clone() {
            let end = layout.ends[k];
            out.push_str(&layout.text[start..end]);
            out.push(' ');
            start = end;
            write_value(scrape.values[k], out);
            out.push('\n');
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
}

fn escape_help(help: &str, format: Format, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if format == Format::OpenMetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

fn write_value(v: Val, out: &mut String) {
    let v = match v {
        Val::Int(i) => return write_u64(i, out),
        Val::Float(v) => v,
    };
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // Rust prints the shortest string that parses back to the same f64.
        let _ = write!(out, "{v}");
    }
}

fn write_u64(mut v: u64, out: &mut String) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&buf[i..]).unwrap_or("0"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Limits;
    use protocol::{Desc, Identity, Sample, Scale, Value};

    fn store() -> Store {
        let mut st = Store::new(Limits::default());
        let (a, _) = st.hello(Identity { pid: 1, start_time: 1, nonce: 1, program: "t".into() });
        st.register(a, 0, &Desc::counter("mpi_hits_total", &[("function", "MPI_Send")], "Number of calls")).unwrap();
        st.register(a, 1, &Desc::counter("mpi_hits_total", &[("function", "MPI_Bcast")], "Number of calls")).unwrap();
        st.register(a, 2, &Desc::gauge("odd", &[("path", "C:\\dir\n\"x\"")], "Help with \\ and \"quotes\"\nand lines"))
            .unwrap();
        st.register(
            a,
            3,
            &Desc::counter("mpi_time_total", &[("function", "MPI_Send")], "Seconds").with_scale(Scale::Nano),
        )
        .unwrap();
        st.register(a, 4, &Desc::gauge("nan_gauge", &[], "n")).unwrap();
        st.update(
            a,
            &[
                Sample { id: 0, value: Value::Int(u64::MAX) },
                Sample { id: 1, value: Value::Int(3) },
                Sample { id: 2, value: Value::Float(-0.25) },
                Sample { id: 3, value: Value::Int(1_234_567_891) },
                Sample { id: 4, value: Value::Float(f64::NEG_INFINITY) },
            ],
            1.0,
        );
        st
    }

    #[test]
    fn text_format_is_pinned() {
        let mut out = String::new();
        render(&mut store(), Format::Text, &mut out);
        assert_eq!(
            out,
            "# HELP mpi_hits_total Number of calls\n\
             # TYPE mpi_hits_total counter\n\
             mpi_hits_total{function=\"MPI_Bcast\"} 3\n\
             mpi_hits_total{function=\"MPI_Send\"} 18446744073709551615\n\
             # HELP mpi_time_total Seconds\n\
             # TYPE mpi_time_total counter\n\
             mpi_time_total{function=\"MPI_Send\"} 1.234567891\n\
             # HELP nan_gauge n\n\
             # TYPE nan_gauge gauge\n\
             nan_gauge -Inf\n\
             # HELP odd Help with \\\\ and \"quotes\"\\nand lines\n\
             # TYPE odd gauge\n\
             odd{path=\"C:\\\\dir\\n\\\"x\\\"\"} -0.25\n"
        );
    }

    #[test]
    fn a_family_of_a_scrape_is_its_keys_and_values_in_exposition_units() {
        let mut scrape = Scrape::default();
        store().scrape(&mut scrape);
        let hits: Vec<(&str, f64)> = scrape.family("mpi_hits_total").collect();
        assert_eq!(
            hits,
            [
                ("mpi_hits_total{function=\"MPI_Bcast\"}", 3.0),
                ("mpi_hits_total{function=\"MPI_Send\"}", u64::MAX as f64)
            ]
        );
        let time: Vec<(&str, f64)> = scrape.family("mpi_time_total").collect();
        assert_eq!(time, [("mpi_time_total{function=\"MPI_Send\"}", 1.234567891)]);
        assert_eq!(
            scrape.family("odd").map(|(k, _)| crate::labels_of_key(k)).collect::<Vec<_>>(),
            [vec![("path".to_owned(), "C:\\dir\n\"x\"".to_owned())]]
        );
        assert_eq!(scrape.family("no_such_family").count(), 0);
    }

    #[test]
    fn openmetrics_is_pinned() {
        let mut out = String::new();
        render(&mut store(), Format::OpenMetrics, &mut out);
        assert_eq!(
            out,
            "# HELP mpi_hits Number of calls\n\
             # TYPE mpi_hits counter\n\
             mpi_hits_total{function=\"MPI_Bcast\"} 3\n\
             mpi_hits_total{function=\"MPI_Send\"} 18446744073709551615\n\
             # HELP mpi_time Seconds\n\
             # TYPE mpi_time counter\n\
             mpi_time_total{function=\"MPI_Send\"} 1.234567891\n\
             # HELP nan_gauge n\n\
             # TYPE nan_gauge gauge\n\
             nan_gauge -Inf\n\
             # HELP odd Help with \\\\ and \\\"quotes\\\"\\nand lines\n\
             # TYPE odd gauge\n\
             odd{path=\"C:\\\\dir\\n\\\"x\\\"\"} -0.25\n\
             # EOF\n"
        );
    }

    #[test]
    fn accept_header_negotiation() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4;q=0.5,*/*;q=0.1")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            Format::OpenMetrics
        );
        let om = |a: &str| Format::negotiate(Some(a));
        assert_eq!(om("Application/OpenMetrics-Text; Version=1.0.0"), Format::OpenMetrics, "case does not matter");
        assert_eq!(om("application/openmetrics-text;q=0.2,text/plain;q=0.9"), Format::Text, "q-values decide");
        assert_eq!(om("text/plain;q=0.1,application/openmetrics-text;q=0.3"), Format::OpenMetrics);
        assert_eq!(om("application/openmetrics-text;q=0"), Format::Text, "q=0 refuses it");
        assert_eq!(om("*/*"), Format::Text, "a tie keeps the default");
        assert_eq!(om("application/*;q=0.8, text/plain;q=0.5"), Format::OpenMetrics);
        assert_eq!(om("application/json"), Format::Text);
    }

    #[test]
    fn empty_store_renders_nothing_but_eof() {
        let mut st = Store::new(Limits::default());
        let mut out = String::from("stale");
        render(&mut st, Format::Text, &mut out);
        assert_eq!(out, "");
        render(&mut st, Format::OpenMetrics, &mut out);
        assert_eq!(out, "# EOF\n");
    }
}
