//! The four output formats of `tau_metric_client`: md, json, yaml and txt.

use protocol::{DescInfo, ValueInfo};
use serde::Serialize;
use serde_json::{json, Value};

/// A listed series, with the field order of the original tool.
#[derive(Serialize)]
struct DescOut<'a> {
    name: &'a str,
    doc: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// A value, with the field order of the original tool.
#[derive(Serialize)]
struct ValueOut<'a> {
    name: &'a str,
    ts: Value,
    value: Value,
}

pub(crate) use crate::cli::Format;

/// Inner width of the markdown title box.
const BOX_WIDTH: usize = 69;

pub(crate) fn title_box(title: &str) -> String {
    let pad = BOX_WIDTH.saturating_sub(title.chars().count());
    let (left, right) = (pad / 2, pad - pad / 2);
    format!("╔{bar}╗\n║{}{title}{}║\n╚{bar}╝\n", " ".repeat(left), " ".repeat(right), bar = "═".repeat(BOX_WIDTH))
}

/// A number as JSON: whole numbers (exact up to 2^53) without a fraction,
/// others as the shortest float that reads back the same, non-finite
/// values as null.
pub(crate) fn json_number(v: &ValueInfo) -> Value {
    if v.value.fract() == 0.0 && v.value.abs() < 9_007_199_254_740_992.0 {
        json!(v.value as i64)
    } else {
        json!(v.value)
    }
}

pub(crate) fn quoted(s: &str) -> String {
    Value::from(s).to_string()
}

pub(crate) fn pretty<T: Serialize>(v: &T, indent: &[u8]) -> String {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(indent);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    v.serialize(&mut ser).expect("serialising JSON values cannot fail");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

pub(crate) fn yaml_number(v: &ValueInfo) -> String {
    if v.value.is_nan() {
        ".nan".into()
    } else if v.value.is_infinite() {
        if v.value > 0.0 { ".inf" } else { "-.inf" }.into()
    } else {
        json_number(v).to_string()
    }
}

pub(crate) fn number_text(v: &ValueInfo) -> String {
    match json_number(v) {
        Value::Null => format!("{}", v.value),
        n => n.to_string(),
    }
}

/// `-l`: the series and their documentation.
pub(crate) fn descs(descs: &[DescInfo], format: Format) -> String {
    match format {
        Format::Md => {
            let mut out = title_box("List of tau_metric_exporter Metrics");
            out.push('\n');
            for d in descs {
                out.push_str(&format!(" • {} ({}) :\n   {}\n", d.name, d.kind.tau_name(), d.help));
            }
            out
        }
        Format::Json => {
            let list: Vec<DescOut> =
                descs.iter().map(|d| DescOut { name: &d.name, doc: &d.help, kind: d.kind.tau_name() }).collect();
            pretty(&list, b"    ") + "\n"
        }
        Format::Yaml => {
            if descs.is_empty() {
                return "[]\n".into();
            }
            descs
                .iter()
                .map(|d| {
                    format!("- name: {}\n  doc: {}\n  type: {}\n", quoted(&d.name), quoted(&d.help), d.kind.tau_name())
                })
                .collect()
        }
        Format::Txt => {
            let mut out = String::from("# name doc type\n");
            for d in descs {
                out.push_str(&format!("{} {} {}\n", d.name, quoted(&d.help), d.kind.tau_name()));
            }
            out
        }
    }
}

/// `-v` and `-g`: values with their last-change time.
pub(crate) fn values(values: &[ValueInfo], format: Format) -> String {
    match format {
        Format::Md => {
            let mut out = title_box("Values of tau_metric_exporter Metrics");
            out.push('\n');
            for v in values {
                out.push_str(&format!(" • {} = {}\n   last change at {}\n", v.name, number_text(v), ts_text(v.ts)));
            }
            out
        }
        Format::Json => pretty(&values_json(values), b"    ") + "\n",
        Format::Yaml => {
            if values.is_empty() {
                return "[]\n".into();
            }
            values
                .iter()
                .map(|v| format!("- name: {}\n  ts: {}\n  value: {}\n", quoted(&v.name), ts_text(v.ts), yaml_number(v)))
                .collect()
        }
        Format::Txt => {
            let mut out = String::from("# name ts value\n");
            for v in values {
                out.push_str(&format!("{} {} {}\n", v.name, ts_text(v.ts), number_text(v)));
            }
            out
        }
    }
}

/// Seconds since the epoch with microseconds, as the original tool printed.
pub(crate) fn ts_text(ts: f64) -> String {
    format!("{ts:.6}")
}

fn values_json(values: &[ValueInfo]) -> Vec<ValueOut<'_>> {
    values
        .iter()
        .map(|v| ValueOut { name: &v.name, ts: ts_text(v.ts).parse().unwrap_or(Value::Null), value: json_number(v) })
        .collect()
}

/// One tracking snapshot, as an element of the JSON array being written.
pub(crate) fn track_snapshot_json(values: &[ValueInfo]) -> String {
    pretty(&values_json(values), b"  ").lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::Kind;

    fn run_total() -> DescInfo {
        DescInfo {
            name: "tau_metric_proxy_run_total{operation=\"exec\"}".into(),
            help: "Number of launch with the tau_metric_proxy_run command".into(),
            kind: Kind::Counter,
        }
    }

    #[test]
    fn markdown_listing_matches_the_original_tool() {
        assert_eq!(
            descs(&[run_total()], Format::Md),
            "╔═════════════════════════════════════════════════════════════════════╗\n\
             ║                 List of tau_metric_exporter Metrics                 ║\n\
             ╚═════════════════════════════════════════════════════════════════════╝\n\
             \n \u{2022} tau_metric_proxy_run_total{operation=\"exec\"} (TAU_METRIC_COUNTER) :\n   \
             Number of launch with the tau_metric_proxy_run command\n"
        );
    }

    #[test]
    fn json_listing_matches_the_original_tool() {
        assert_eq!(
            descs(&[run_total()], Format::Json),
            "[\n    {\n        \"name\": \"tau_metric_proxy_run_total{operation=\\\"exec\\\"}\",\n        \
             \"doc\": \"Number of launch with the tau_metric_proxy_run command\",\n        \
             \"type\": \"TAU_METRIC_COUNTER\"\n    }\n]\n"
        );
    }

    #[test]
    fn txt_listing_matches_the_original_tool() {
        assert_eq!(
            descs(&[run_total()], Format::Txt),
            "# name doc type\ntau_metric_proxy_run_total{operation=\"exec\"} \
             \"Number of launch with the tau_metric_proxy_run command\" TAU_METRIC_COUNTER\n"
        );
    }

    #[test]
    fn values_in_every_format() {
        let v = [
            ValueInfo { name: "a_total".into(), ts: 1667486717.483395, value: 9.0 },
            ValueInfo { name: "t_total".into(), ts: 1.0, value: 0.25 },
            ValueInfo { name: "g".into(), ts: 2.0, value: f64::NAN },
        ];
        assert_eq!(
            values(&v, Format::Json),
            "[\n    {\n        \"name\": \"a_total\",\n        \"ts\": 1667486717.483395,\n        \"value\": 9\n    },\n    \
             {\n        \"name\": \"t_total\",\n        \"ts\": 1.0,\n        \"value\": 0.25\n    },\n    \
             {\n        \"name\": \"g\",\n        \"ts\": 2.0,\n        \"value\": null\n    }\n]\n"
        );
        assert_eq!(
            values(&v, Format::Txt),
            "# name ts value\na_total 1667486717.483395 9\nt_total 1.000000 0.25\ng 2.000000 NaN\n"
        );
        assert_eq!(
            values(&v[..2], Format::Yaml),
            "- name: \"a_total\"\n  ts: 1667486717.483395\n  value: 9\n- name: \"t_total\"\n  ts: 1.000000\n  value: 0.25\n"
        );
        assert_eq!(values(&v[2..], Format::Yaml), "- name: \"g\"\n  ts: 2.000000\n  value: .nan\n");
        assert_eq!(values(&[], Format::Yaml), "[]\n");
        assert!(values(&v[..1], Format::Md).ends_with("\n • a_total = 9\n   last change at 1667486717.483395\n"));
    }
}
