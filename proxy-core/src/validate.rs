//! Prometheus naming rules, checked once when a series is registered.

use protocol::{Desc, Kind};

/// Longest accepted metric or label name, in bytes.
pub(crate) const MAX_NAME_LEN: usize = 200;
/// Longest accepted label value or help text, in bytes.
pub(crate) const MAX_TEXT_LEN: usize = 4096;
/// Most labels one series may carry.
pub(crate) const MAX_LABELS: usize = 16;

/// Why a description was refused; the message names the offending part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError(pub String);

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
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
/// may appear only once.
pub fn validate_desc(desc: &Desc) -> Result<(), NameError> {
    let name = &desc.name;
    if name.len() > MAX_NAME_LEN || !is_metric_name(name) {
        return Err(NameError(format!("invalid metric name {name:?}")));
    }
    if desc.kind == Kind::Counter && (!name.ends_with("_total") || name == "_total") {
        return Err(NameError(format!("counter name {name:?} must end in \"_total\"")));
    }
    if desc.kind == Kind::Gauge && name.ends_with("_total") {
        return Err(NameError(format!("gauge name {name:?} must not end in \"_total\"")));
    }
    if desc.help.len() > MAX_TEXT_LEN {
        return Err(NameError(format!("help text of {name:?} is longer than {MAX_TEXT_LEN} bytes")));
    }
    if desc.labels.len() > MAX_LABELS {
        return Err(NameError(format!("{name:?} has more than {MAX_LABELS} labels")));
    }
    for (i, (label, value)) in desc.labels.iter().enumerate() {
        if label.len() > MAX_NAME_LEN || !is_label_name(label) {
            return Err(NameError(format!("invalid label name {label:?} in {name:?}")));
        }
        if label.starts_with("__") {
            return Err(NameError(format!("label name {label:?} in {name:?} is reserved (starts with \"__\")")));
        }
        if value.len() > MAX_TEXT_LEN {
            return Err(NameError(format!("value of label {label:?} in {name:?} is longer than {MAX_TEXT_LEN} bytes")));
        }
        if desc.labels[..i].iter().any(|(l, _)| l == label) {
            return Err(NameError(format!("label {label:?} appears twice in {name:?}")));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn err(d: Desc) -> String {
        validate_desc(&d).unwrap_err().0
    }

    #[test]
    fn good_names_pass() {
        validate_desc(&Desc::counter("mpi_hits_total", &[("function", "MPI_Send")], "x")).unwrap();
        validate_desc(&Desc::gauge("a:b_c9", &[("_x", "any \" value\n")], "")).unwrap();
    }

    #[test]
    fn bad_names_are_explained() {
        assert_eq!(err(Desc::counter("9x_total", &[], "")), "invalid metric name \"9x_total\"");
        assert_eq!(err(Desc::counter("a-b_total", &[], "")), "invalid metric name \"a-b_total\"");
        assert_eq!(err(Desc::counter("hits", &[], "")), "counter name \"hits\" must end in \"_total\"");
        assert_eq!(err(Desc::gauge("g_total", &[], "")), "gauge name \"g_total\" must not end in \"_total\"");
        assert_eq!(err(Desc::gauge("g", &[("a b", "")], "")), "invalid label name \"a b\" in \"g\"");
        assert_eq!(
            err(Desc::gauge("g", &[("__name__", "")], "")),
            "label name \"__name__\" in \"g\" is reserved (starts with \"__\")"
        );
        assert_eq!(err(Desc::gauge("g", &[("a", "1"), ("a", "2")], "")), "label \"a\" appears twice in \"g\"");
        assert_eq!(err(Desc::gauge("", &[], "")), "invalid metric name \"\"");
    }

    #[test]
    fn keys_sort_labels_and_escape_values() {
        let d = Desc::gauge("g", &[("z", "1"), ("a", "q\"\\\n")], "");
        assert_eq!(series_key(&d), "g{a=\"q\\\"\\\\\\n\",z=\"1\"}");
        assert_eq!(series_key(&Desc::gauge("g", &[], "")), "g");
    }
}
