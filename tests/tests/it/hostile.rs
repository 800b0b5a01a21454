//! Bad and hostile input on the socket, table-driven: each case has its
//! expected outcome, the daemon stays up, and a well-behaved collector's
//! data stays exact throughout.

use std::io::Read;
use std::time::Duration;

use protocol::{encode_frame, Desc, Preamble, Reply, Request, Role, Sample, Value, MAX_FRAME, PREAMBLE_LEN, VERSION};

use crate::util::{identity, wait_for, Proxy, RawPeer};

/// What the daemon must do with a case.
enum Expect {
    /// Close the connection, logging this and counting a protocol error.
    Closed(&'static str),
    /// Answer this error and keep the connection.
    ErrorReply(&'static str),
}

fn hello_bytes() -> Vec<u8> {
    let mut b = Preamble::new(Role::Collector).encode().to_vec();
    encode_frame(&Request::Hello { identity: identity("hostile") }, &mut b).unwrap();
    b
}

fn frame(req: &Request) -> Vec<u8> {
    let mut b = Vec::new();
    encode_frame(req, &mut b).unwrap();
    b
}

fn raw_frame(payload: &[u8]) -> Vec<u8> {
    let mut b = (payload.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(payload);
    b
}

fn register(id: u32, desc: Desc) -> Vec<u8> {
    frame(&Request::Register { id, desc })
}

fn float_update(v: f64) -> Vec<u8> {
    let mut b = register(0, Desc::counter("f_total", &[], "f"));
    b.extend(frame(&Request::Update { samples: vec![Sample { id: 0, value: Value::Float(v) }] }));
    b
}

fn cases() -> Vec<(&'static str, Vec<u8>, bool, Expect)> {
    // (name, bytes after the preamble+hello or raw, send hello first?, expectation)
    let mut wrong_version = Preamble::new(Role::Collector).encode();
    wrong_version[4..6].copy_from_slice(&(VERSION + 3).to_le_bytes());
    let mut get_with_bad_utf8 = vec![7u8, 1, 2, 0xff, 0xfe];
    get_with_bad_utf8.truncate(5);
    vec![
        (
            "truncated frame",
            frame(&Request::Values)[..3].to_vec(),
            true,
            Expect::Closed("closed inside a frame, 3 bytes discarded"),
        ),
        (
            "huge length prefix",
            ((MAX_FRAME as u32) * 4).to_le_bytes().to_vec(),
            true,
            Expect::Closed("exceeds the limit of 1048576 bytes"),
        ),
        ("wrong magic", b"GET / HTTP/1.1\r\n\r\n".to_vec(), false, Expect::Closed("refused: bad magic number")),
        ("wrong version", wrong_version.to_vec(), false, Expect::Closed("refused: protocol version mismatch")),
        ("unknown message type", raw_frame(&[200]), true, Expect::Closed("malformed frame")),
        ("invalid UTF-8", raw_frame(&get_with_bad_utf8), true, Expect::Closed("malformed frame")),
        ("query on a collector connection", frame(&Request::List), true, Expect::Closed("out-of-order frame: List")),
        (
            "invalid metric name",
            register(0, Desc::counter("9lives_total", &[], "x")),
            true,
            Expect::ErrorReply("invalid metric name \"9lives_total\""),
        ),
        (
            "invalid label name",
            register(0, Desc::counter("ok_total", &[("bad-label", "v")], "x")),
            true,
            Expect::ErrorReply("invalid label name \"bad-label\" in \"ok_total\""),
        ),
        (
            "type conflict",
            register(0, Desc::gauge("good_total", &[], "x")),
            true,
            Expect::ErrorReply("gauge name \"good_total\" must not end in \"_total\""),
        ),
        (
            "type conflict with an existing family",
            register(0, Desc::gauge("good", &[], "x")),
            true,
            Expect::ErrorReply(
                "name conflict: \"good\" would share the OpenMetrics family \"good\" with another metric",
            ),
        ),
        ("NaN delta", float_update(f64::NAN), true, Expect::ErrorReply("counter f_total cannot increase by NaN")),
        (
            "infinite delta",
            float_update(f64::INFINITY),
            true,
            Expect::ErrorReply("counter f_total cannot increase by inf"),
        ),
        ("negative delta", float_update(-2.0), true, Expect::ErrorReply("counter f_total cannot increase by -2")),
        (
            "update of an unregistered id",
            frame(&Request::Update { samples: vec![Sample { id: 99, value: Value::Int(1) }] }),
            true,
            Expect::ErrorReply("update for a series id that was not registered"),
        ),
    ]
}

#[test]
fn each_bad_input_has_its_outcome_and_harms_no_one_else() {
    let p = Proxy::start();
    let mut good = RawPeer::connect(&p.socket, Role::Collector);
    good.send(&Request::Hello { identity: identity("good") });
    good.send(&Request::Register { id: 0, desc: Desc::counter("good_total", &[], "Well-behaved collector") });
    let mut expected_good = 0;
    let mut protocol_errors = 0.0;
    for (name, bytes, with_hello, expect) in cases() {
        let mut s = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut all = if with_hello { hello_bytes() } else { Vec::new() };
        all.extend(bytes);
        std::io::Write::write_all(&mut s, &all).unwrap();
        if matches!(expect, Expect::Closed(_)) && name == "truncated frame" {
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
        let mut got = Vec::new();
        match expect {
            Expect::Closed(log_part) => {
                let _ = s.read_to_end(&mut got); // returns once the daemon closed
                protocol_errors += 1.0;
                let want = protocol_errors;
                let log = wait_for(Duration::from_secs(10), || {
                    let log = p.log();
                    (log.contains(log_part) && p.value("tau_metric_proxy_protocol_errors_total") == want).then_some(log)
                });
                assert!(log.is_some(), "{name}: expected a closed connection logging {log_part:?}; log:\n{}", p.log());
            }
            Expect::ErrorReply(message) => {
                let mut buf = vec![0u8; 4096];
                let mut have = Vec::new();
                let mut at = PREAMBLE_LEN;
                // The first reply that is not the Welcome to the hello.
                let reply = 'reply: loop {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "{name}: connection closed, expected an error reply");
                    have.extend_from_slice(&buf[..n]);
                    while let Some((r, used)) = protocol::decode_frame::<Reply>(&have[at.min(have.len())..]).unwrap() {
                        at += used;
                        if !matches!(r, Reply::Welcome { .. }) {
                            break 'reply r;
                        }
                    }
                };
                match reply {
                    Reply::Error { message: m, .. } => assert_eq!(m, message, "{name}"),
                    other => panic!("{name}: expected an error reply, got {other:?}"),
                }
                // The connection stays usable: a valid registration and update work.
                let mut more = frame(&Request::Register { id: 50, desc: Desc::counter("after_total", &[], "After") });
                more.extend(frame(&Request::Update { samples: vec![Sample { id: 50, value: Value::Int(1) }] }));
                std::io::Write::write_all(&mut s, &more).unwrap();
            }
        }
        expected_good += 1;
        good.send(&Request::Update { samples: vec![Sample { id: 0, value: Value::Int(1) }] });
        assert_eq!(p.wait_value("good_total", expected_good as f64), expected_good as f64, "after {name}");
    }
    // One `after_total` per error-reply case.
    let error_cases = cases().iter().filter(|c| matches!(c.3, Expect::ErrorReply(_))).count() as f64;
    assert_eq!(p.wait_value("after_total", error_cases), error_cases);
}

#[test]
fn a_registration_flood_hits_the_series_limits() {
    let p = Proxy::start_with(&["--max-series", "150", "--max-series-per-collector", "100"]);
    let base = p.values().len();
    let flood = |who: &str, n: u32| {
        let mut c = RawPeer::connect(&p.socket, Role::Collector);
        c.send(&Request::Hello { identity: identity(who) });
        let mut bytes = Vec::new();
        for i in 0..n {
            let d = Desc::counter("flood_total", &[("who", who), ("i", &i.to_string())], "Flood");
            encode_frame(&Request::Register { id: i % 120, desc: d }, &mut bytes).unwrap();
        }
        c.send_raw(&bytes);
        c
    };
    // ids 100..119 are beyond the per-collector limit: 20 refusals.
    let _a = flood("a", 120);
    // 150 - base - 100 fit on the node; the rest of b's 100 are refused.
    let _b = flood("b", 100);
    let node_room = 150 - base - 100;
    let refused = 20 + (100 - node_room);
    assert_eq!(p.wait_value("tau_metric_proxy_refused_series_total", refused as f64), refused as f64);
    let values = p.values();
    assert_eq!(values.len(), 150, "the node holds exactly its limit");
    assert_eq!(values.keys().filter(|k| k.starts_with("flood_total{i=") && k.contains("who=\"a\"")).count(), 100);
    assert!(p.log().is_empty() || !p.log().contains("panicked"));
}

#[test]
fn label_count_and_value_length_are_bounded_by_flags_and_empty_values_refused() {
    let p = Proxy::start_with(&["--max-labels", "2", "--max-label-value-length", "8"]);
    let mut c = RawPeer::connect(&p.socket, Role::Collector);
    c.send(&Request::Hello { identity: identity("labels") });
    let descs = [
        Desc::counter("l_total", &[("a", "1"), ("b", "2"), ("c", "3")], "three labels"),
        Desc::counter("l_total", &[("a", "123456789")], "nine bytes"),
        Desc::counter("l_total", &[("a", "")], "empty"),
        Desc::counter("l_total", &[("a", "12345678"), ("b", "2")], "fits"),
    ];
    let mut bytes = Vec::new();
    for (i, desc) in descs.into_iter().enumerate() {
        encode_frame(&Request::Register { id: i as u32, desc }, &mut bytes).unwrap();
    }
    c.send_raw(&bytes);
    let mut errors = Vec::new();
    while errors.len() < 3 {
        let mut len = [0u8; 4];
        c.stream.read_exact(&mut len).expect("an error reply");
        let mut frame = vec![0u8; u32::from_le_bytes(len) as usize];
        c.stream.read_exact(&mut frame).unwrap();
        let mut whole = len.to_vec();
        whole.extend(frame);
        if let Some((Reply::Error { message, .. }, _)) = protocol::decode_frame::<Reply>(&whole).unwrap() {
            errors.push(message);
        }
    }
    println!("label refusals: {errors:?}");
    assert_eq!(
        errors,
        [
            "\"l_total\" has more than 2 labels",
            "value of label \"a\" in \"l_total\" is longer than 8 bytes",
            "value of label \"a\" in \"l_total\" is empty (Prometheus would drop the label)",
        ]
    );
    let reason = |r: &str| format!("tau_metric_proxy_refusals_total{{reason=\"{r}\"}}");
    assert_eq!(p.wait_value(&reason("too_many_labels"), 1.0), 1.0);
    let values = p.values();
    assert_eq!(values[&reason("label_value_too_long")], 1.0);
    assert_eq!(values[&reason("invalid_name")], 1.0);
    assert!(values.contains_key("l_total{a=\"12345678\",b=\"2\"}"));
}
