//! The UNIX side's memory is bounded in bytes: connections in all, each
//! connection's read buffer (its longest frame) and a collector's unread
//! replies, and how sparse a collector's ids may be. Each limit is a flag
//! and each refusal is counted in `tau_metric_proxy_refusals_total`.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use protocol::{encode_frame, Desc, Reply, Request, Role, Sample, Value};

use crate::util::{identity, wait_for, Proxy, RawPeer};

fn reason(r: &str) -> String {
    format!("tau_metric_proxy_refusals_total{{reason=\"{r}\"}}")
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches("kB").trim().parse().unwrap()
}

#[test]
fn connections_and_their_read_buffers_are_bounded_by_flags() {
    const MAX: usize = 200;
    const FRAME: usize = 16 << 10;
    let max = MAX.to_string();
    let frame = FRAME.to_string();
    let p = Proxy::start_with(&["--max-connections", &max, "--max-frame", &frame]);
    let before = rss_kib(p.pid());
    // MAX - 1 collectors each holding a frame one byte short of the limit
    // in their read buffers...
    let mut held = Vec::new();
    for i in 0..MAX - 1 {
        let mut peer = RawPeer::connect(&p.socket, Role::Collector);
        peer.send(&Request::Hello { identity: identity("holder") });
        let mut partial = (FRAME as u32).to_le_bytes().to_vec();
        partial.resize(4 + FRAME - 1, i as u8);
        peer.send_raw(&partial);
        held.push(peer);
    }
    let mut long = RawPeer::connect(&p.socket, Role::Collector);
    long.send(&Request::Hello { identity: identity("long") });
    // ...and one more, closed as soon as it is accepted, before any preamble.
    let mut over = UnixStream::connect(&p.socket).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(over.read(&mut buf).unwrap(), 0, "the connection beyond --max-connections is closed at once");
    let logged = wait_for(Duration::from_secs(10), || {
        p.log().contains("connections are open: no more until some close (see --max-connections)").then_some(())
    });
    assert!(logged.is_some(), "no log line about the connection limit:\n{}", p.log());
    let during = rss_kib(p.pid());
    // A frame announced one byte over the limit closes only its connection.
    long.send_raw(&((FRAME + 1) as u32).to_le_bytes());
    assert!(long.closed_by_daemon(), "a frame over --max-frame did not close its connection");
    // Room for the query clients again.
    held.truncate(MAX / 2);
    let frame_limit = p.wait_value(&reason("frame_limit"), 1.0);
    let values = p.values();
    println!(
        "{MAX} connections each holding {} KiB of a frame: RSS {} -> {} KiB ({:.1} KiB per connection); \
         connection {} closed at accept; frame of {} bytes refused",
        FRAME >> 10,
        before,
        during,
        (during as f64 - before as f64) / MAX as f64,
        MAX + 1,
        FRAME + 1
    );
    assert_eq!(values[&reason("connection_limit")], 1.0);
    assert_eq!(frame_limit, 1.0);
    assert_eq!(values["tau_metric_proxy_protocol_errors_total"], 0.0, "a limit is no protocol error");
    assert!(
        p.log().contains(&format!(
            "closing connection of collector long (pid {}): frame of {} bytes exceeds this proxy's limit of {FRAME} \
             bytes (see --max-frame)",
            std::process::id(),
            FRAME + 1
        )),
        "{}",
        p.log()
    );
}

#[test]
fn a_collectors_unread_replies_are_dropped_beyond_its_queue_and_counted() {
    let p = Proxy::start_with(&["--max-reply-queue", "2048", "--max-id-gap", "10"]);
    let mut c = RawPeer::connect(&p.socket, Role::Collector);
    c.send(&Request::Hello { identity: identity("deaf") });
    // 20,000 updates of an id never registered, one error reply each,
    // never read: beyond what the socket takes, 2 KiB are queued, no more.
    const BAD: usize = 20_000;
    let mut bytes = Vec::new();
    for _ in 0..BAD {
        encode_frame(&Request::Update { samples: vec![Sample { id: 99, value: Value::Int(1) }] }, &mut bytes).unwrap();
    }
    // Ids may be at most 10 past those registered: 11 is refused, 10 is not.
    for (id, name) in [(11, "far_total"), (10, "near_total")] {
        encode_frame(&Request::Register { id, desc: Desc::counter(name, &[], "x") }, &mut bytes).unwrap();
    }
    encode_frame(&Request::Update { samples: vec![Sample { id: 10, value: Value::Int(3) }] }, &mut bytes).unwrap();
    c.send_raw(&bytes);
    assert_eq!(p.wait_value("near_total", 3.0), 3.0, "the collector's last frames were handled");
    let values = p.values();
    let dropped = values[&reason("reply_queue_limit")] as usize;
    assert_eq!(values[&reason("sparse_id")], 1.0);
    assert!(!values.contains_key("far_total"));
    // Every reply is either received or counted as dropped.
    let mut received = 0;
    let want = 1 + BAD + 1 - dropped;
    while received < want {
        c.recv();
        received += 1;
    }
    println!("{BAD} error replies never read, queue of 2 KiB: {received} received once read, {dropped} dropped");
    assert!(dropped > 0 && dropped < BAD, "{dropped}");
    assert!(p.log().contains("does not read its replies; dropping them beyond 2048 bytes (see --max-reply-queue)"));
    // Nothing else is queued: the next reply is the one asked for now.
    c.send(&Request::Update { samples: vec![Sample { id: 98, value: Value::Int(1) }] });
    assert!(matches!(c.recv(), Reply::Error { message, .. } if message.contains("not registered")));
}
