//! Prometheus naming rules, checked once when a series is registered.

use protocol::{Desc, Kind};

/// Longest accepted metric or label name, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 200;
/// Longest accepted help text, in bytes.
pub(crate) const MAX_TEXT_LEN: usize = 4096;

/// Why a description was refused; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// Not a Prometheus metric name, or longer than 200 bytes.
    InvalidMetricName { name: String },
    /// A counter whose name does not end in `_total`.
    CounterWithoutTotal { name: String },
    /// A gauge whose name ends in `_total`.
    GaugeWithTotal { name: String },
    /// Help text longer than 4096 bytes.
    HelpTooLong { name: String },
    /// Not a Prometheus label name, or longer than 200 bytes.
    InvalidLabelName { name: String, label: String },
    /// A label name starting with `__`.
    ReservedLabelName { name: String, label: String },
    /// An empty label value: Prometheus takes `x{a=""}` for `x`, so it
    /// would show two series under one name.
    EmptyLabelValue { name: String, label: String },
    /// The same label given twice.
    DuplicateLabel { name: String, label: String },
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::InvalidMetricName { name } => write!(f, "invalid metric name {name:?}"),
            NameError::CounterWithoutTotal { name } => write!(f, "counter name {name:?} must end in \"_total\""),
            NameError::GaugeWithTotal { name } => write!(f, "gauge name {name:?} must not end in \"_total\""),
            NameError::HelpTooLong { name } => write!(f, "help text of {name:?} is longer than {MAX_TEXT_LEN} bytes"),
            NameError::InvalidLabelName { name, label } => write!(f, "invalid label name {label:?} in {name:?}"),
            NameError::ReservedLabelName { name, label } => {
                write!(f, "label name {label:?} in {name:?} is reserved (starts with \"__\")")
            }
            NameError::EmptyLabelValue { name, label } => {
                write!(f, "value of label {label:?} in {name:?} is empty (Prometheus would drop the label)")
            }
            NameError::DuplicateLabel { name, label } => write!(f, "label {label:?} appears twice in {name:?}"),
        }
    }
}

impl std::error::Error for NameError {}

fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a description against the Prometheus data model.
///
/// Counters must end in `_total` (OpenMetrics derives the family name by
/// removing it), label names may not start with `__` (reserved), and a label
/// may appear only once, with a value that is not empty. The number of
/// labels and the length of values are the store's limits
/// ([`crate::Limits`]).
pub fn validate_desc(desc: &Desc) -> Result<(), NameError> {
    let name = &desc.name;
    let named = || name.clone();
    if name.len() > MAX_NAME_LEN || !is_metric_name(name) {
        return Err(NameError::InvalidMetricName { name: named() });
    }
    if desc.kind == Kind::Counter && (!name.ends_with("_total") || name == "_total") {
        return Err(NameError::CounterWithoutTotal { name: named() });
    }
    if desc.kind == Kind::Gauge && name.ends_with("_total") {
        return Err(NameError::GaugeWithTotal { name: named() });
    }
    if desc.help.len() > MAX_TEXT_LEN {
        return Err(NameError::HelpTooLong { name: named() });
    }
    for (i, (label, value)) in desc.labels.iter().enumerate() {
        let labelled = || label.clone();
        if label.len() > MAX_NAME_LEN || !is_label_name(label) {
            return Err(NameError::InvalidLabelName { name: named(), label: labelled() });
        }
        if label.starts_with("__") {
            return Err(NameError::ReservedLabelName { name: named(), label: labelled() });
        }
        if value.is_empty() {
            return Err(NameError::EmptyLabelValue { name: named(), label: labelled() });
        }
        if desc.labels[..i].iter().any(|(l, _)| l == label) {
            return Err(NameError::DuplicateLabel { name: named(), label: labelled() });
        }
    }
    Ok(())
}

/// Escapes a label value for both exposition formats: `\`, `"` and newline.
pub(crate) fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The series' canonical name, `family{a="x",b="y"}` with labels sorted by
/// name and values escaped as in the exposition. It is how clients name a
/// series and the store's key.
pub fn series_key(desc: &Desc) -> String {
    let mut labels: Vec<&(String, String)> = desc.labels.iter().collect();
    labels.sort();
    let mut key = desc.name.clone();
    if !labels.is_empty() {
        key.push('{');
        for (i, (k, v)) in labels.into_iter().enumerate() {
            if i > 0 {
                key.push(',');
            }
            key.push_str(k);
            key.push_str("=\"");
            escape_label_value(v, &mut key);
            key.push('"');
        }
        key.push('}');
    }
    key
}

/// The labels of a key made by [`series_key`], unescaped, in its order.
pub fn labels_of_key(key: &str) -> Vec<(String, String)> {
    let Some(open) = key.find('{') else { return Vec::new() };
    let mut labels = Vec::new();
    let mut rest = &key[open + 1..];
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].to_owned();
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = eq + 2 + i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.push((name, value));
        // Past the closing quote: `,` before the next label or `}`.
        rest = rest.get(end + 1..).unwrap_or("");
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(d: Desc) -> NameError {
        validate_desc(&d).unwrap_err()
    }

    fn s(v: &str) -> String {
        v.to_owned()
    }

    #[test]
    fn good_names_pass() {
        validate_desc(&Desc::counter("mpi_hits_total", &[("function", "MPI_Send")], "x")).unwrap();
        validate_desc(&Desc::gauge("a:b_c9", &[("_x", "any \" value\n")], "")).unwrap();
    }

    #[test]
    fn bad_names_are_refused_by_rule() {
        use NameError::*;
        assert_eq!(err(Desc::counter("9x_total", &[], "")), InvalidMetricName { name: s("9x_total") });
        assert_eq!(err(Desc::counter("a-b_total", &[], "")), InvalidMetricName { name: s("a-b_total") });
        assert_eq!(err(Desc::counter("hits", &[], "")), CounterWithoutTotal { name: s("hits") });
        assert_eq!(err(Desc::counter("_total", &[], "")), CounterWithoutTotal { name: s("_total") });
        assert_eq!(err(Desc::gauge("g_total", &[], "")), GaugeWithTotal { name: s("g_total") });
        assert_eq!(err(Desc::gauge("g", &[("a b", "x")], "")), InvalidLabelName { name: s("g"), label: s("a b") });
        assert_eq!(
            err(Desc::gauge("g", &[("__name__", "x")], "")),
            ReservedLabelName { name: s("g"), label: s("__name__") }
        );
        assert_eq!(
            err(Desc::gauge("g", &[("a", "1"), ("a", "2")], "")),
            DuplicateLabel { name: s("g"), label: s("a") }
        );
        assert_eq!(err(Desc::gauge("", &[], "")), InvalidMetricName { name: s("") });
        let long = "x".repeat(MAX_TEXT_LEN + 1);
        assert_eq!(err(Desc::gauge("g", &[], &long)), HelpTooLong { name: s("g") });
        assert_eq!(
            err(Desc::gauge("g", &[("a", "1"), ("b", "")], "")),
            EmptyLabelValue { name: s("g"), label: s("b") }
        );
    }

    #[test]
    fn each_refusal_keeps_its_message() {
        use NameError::*;
        let (g, a) = (|| s("g"), || s("a"));
        let cases = [
            (InvalidMetricName { name: s("9x_total") }, "invalid metric name \"9x_total\""),
            (CounterWithoutTotal { name: s("hits") }, "counter name \"hits\" must end in \"_total\""),
            (GaugeWithTotal { name: s("g_total") }, "gauge name \"g_total\" must not end in \"_total\""),
            (HelpTooLong { name: g() }, "help text of \"g\" is longer than 4096 bytes"),
            (InvalidLabelName { name: g(), label: s("a b") }, "invalid label name \"a b\" in \"g\""),
            (
                ReservedLabelName { name: g(), label: s("__name__") },
                "label name \"__name__\" in \"g\" is reserved (starts with \"__\")",
            ),
            (
                EmptyLabelValue { name: g(), label: a() },
                "value of label \"a\" in \"g\" is empty (Prometheus would drop the label)",
            ),
            (DuplicateLabel { name: g(), label: a() }, "label \"a\" appears twice in \"g\""),
        ];
        for (e, text) in cases {
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn keys_sort_labels_and_escape_values() {
        let d = Desc::gauge("g", &[("z", "1"), ("a", "q\"\\\n")], "");
        assert_eq!(series_key(&d), "g{a=\"q\\\"\\\\\\n\",z=\"1\"}");
        assert_eq!(series_key(&Desc::gauge("g", &[], "")), "g");
    }

    #[test]
    fn labels_come_back_from_keys() {
        for labels in [vec![], vec![("a", "q\"\\\n,}=\"x")], vec![("a", "1"), ("b", "x\\"), ("c", "={\"")]] {
            let d = Desc::gauge("g", &labels, "");
            let back = labels_of_key(&series_key(&d));
            let want: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(back, want);
        }
    }
}
