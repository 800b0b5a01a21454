//! Unit tests of the connection state machine.

use super::*;
use crate::store::Limits;
use protocol::{Desc, Identity, JobTag, Sample, Value};

fn frames(reqs: &[Request]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in reqs {
        encode_frame(r, &mut out).unwrap();
    }
    out
}

/// Every reply queued, after as many turns as the session has work.
fn replies_of(s: &mut Session, st: &mut Store) -> Vec<Reply> {
    let mut buf = Vec::new();
    loop {
        s.turn(st, 0.0).unwrap();
        buf.append(s.output());
        if !s.has_work() {
            break;
        }
    }
    s.output().append(&mut buf);
    replies(s)
}

fn replies(s: &mut Session) -> Vec<Reply> {
    let mut out = Vec::new();
    let buf = std::mem::take(s.output());
    let mut at = PREAMBLE_LEN.min(buf.len());
    while let Some((r, used)) = decode_frame::<Reply>(&buf[at..]).unwrap() {
        out.push(r);
        at += used;
    }
    out
}

fn collector_bytes(reqs: &[Request]) -> Vec<u8> {
    let mut b = Preamble::new(Role::Collector).encode().to_vec();
    b.extend(frames(reqs));
    b
}

#[test]
fn byte_by_byte_feeding_gives_the_same_result() {
    let id = Identity { pid: 1, start_time: 0, nonce: 9, program: "p".into() };
    let bytes = collector_bytes(&[
        Request::Hello { identity: id },
        Request::Register { id: 0, desc: Desc::counter("x_total", &[], "x") },
        Request::Update { samples: vec![Sample { id: 0, value: Value::Int(7) }] },
    ]);
    let mut st = Store::new(Limits::default());
    let mut s = Session::new();
    let mut tally = Tally::default();
    for b in &bytes {
        s.feed(std::slice::from_ref(b), &mut st, 1.0, &mut tally).unwrap();
    }
    assert_eq!(st.get(&["x_total".into()]).unwrap()[0].value, 7.0);
    assert_eq!((tally.frames, tally.bytes), (3, (bytes.len() - PREAMBLE_LEN) as u64));
    assert_eq!(s.describe(), "collector p (pid 1)");
}

#[test]
fn liveness_follows_the_kernel_not_the_claimed_pid() {
    let claimed = Identity { pid: 1, start_time: 0, nonce: 3, program: "liar".into() };
    let bytes = collector_bytes(&[Request::Hello { identity: claimed }]);
    let mut st = Store::new(Limits::default());
    let mut s = Session::for_peer(ProcessRef { pid: 4242, start_time: 77 });
    s.feed(&bytes, &mut st, 1.0, &mut Tally::default()).unwrap();
    s.disconnect(&mut st, 2.0);
    let mut asked = Vec::new();
    let folded = st.fold_departed(
        |p| {
            asked.push(p);
            false
        },
        3.0,
    );
    assert_eq!((folded, asked), (1, vec![ProcessRef { pid: 4242, start_time: 77 }]));
}

#[test]
fn large_replies_are_split_and_marked() {
    let mut st = Store::new(Limits::default());
    let (slot, _) = st.hello(Identity { pid: 1, start_time: 0, nonce: 1, program: "p".into() });
    let long = "v".repeat(1000);
    for i in 0..300 {
        let labels = [("i", i.to_string()), ("l", long.clone()), ("m", long.clone()), ("n", long.clone())];
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        st.register(slot, i, &Desc::counter("x_total", &labels, "x")).unwrap();
    }
    let mut s = Session::new();
    let mut b = Preamble::new(Role::Query).encode().to_vec();
    b.extend(frames(&[Request::Values]));
    s.feed(&b, &mut st, 1.0, &mut Tally::default()).unwrap();
    let r = replies_of(&mut s, &mut st);
    assert!(r.len() > 1, "{} frames", r.len());
    let mut total = 0;
    for (i, reply) in r.iter().enumerate() {
        let Reply::Values { values, last, .. } = reply else { panic!("{reply:?}") };
        assert_eq!(*last, i + 1 == r.len());
        total += values.len();
    }
    assert_eq!(total, 300);
}

#[test]
fn pipelined_queries_are_served_one_frame_per_turn_as_replies_drain() {
    let mut st = Store::new(Limits::default());
    let (slot, _) = st.hello(Identity { pid: 1, start_time: 0, nonce: 1, program: "p".into() });
    let long = "v".repeat(1000);
    for i in 0..1000 {
        st.register(slot, i, &Desc::counter("x_total", &[("i", &i.to_string()), ("l", &long)], "x")).unwrap();
    }
    let mut s = Session::new();
    let mut b = Preamble::new(Role::Query).encode().to_vec();
    b.extend(frames(&vec![Request::Values; 100]));
    s.feed(&b, &mut st, 1.0, &mut Tally::default()).unwrap();
    assert!(s.output().len() == PREAMBLE_LEN && s.has_work() && !s.wants_input());
    // Without reading: one frame, then nothing more however many turns.
    let mut turns = 0;
    while s.has_work() {
        s.turn(&mut st, 0.0).unwrap();
        turns += 1;
    }
    assert!(turns <= 2, "{turns} turns: a frame's worth, then the peer must read");
    for _ in 0..10 {
        s.turn(&mut st, 0.0).unwrap();
    }
    let queued = s.output().len();
    assert!(queued < 2 * REPLY_CHUNK_BYTES, "{queued} bytes queued");
    assert!(!s.wants_input(), "a peer that does not read is not read");
    // Reading: every answer whole and in order, one frame per turn.
    let r = replies_of(&mut s, &mut st);
    let mut answers = 0;
    let mut in_answer = 0;
    for reply in &r {
        let Reply::Values { values, last, .. } = reply else { panic!("{reply:?}") };
        in_answer += values.len();
        if *last {
            assert_eq!(in_answer, 1000);
            (answers, in_answer) = (answers + 1, 0);
        }
    }
    assert_eq!(answers, 100);
    assert!(r.len() >= 400, "each answer of about 1 MB comes in several frames: {}", r.len());
    assert!(s.wants_input() && !s.has_work());
}

#[test]
fn out_of_order_frames_end_the_session() {
    let mut st = Store::new(Limits::default());
    let mut s = Session::new();
    let b = collector_bytes(&[Request::List]);
    assert_eq!(
        s.feed(&b, &mut st, 1.0, &mut Tally::default()),
        Err(SessionEnd::Protocol(Violation::OutOfOrder { request: "List", state: "collector-before-hello" }))
    );
}

#[test]
fn each_violation_keeps_its_message() {
    let cases = [
        (Violation::Preamble(PreambleError::BadRole(7)), "refused: unknown peer role 7"),
        (Violation::ClaimsDaemon, "peer claims to be a daemon"),
        (Violation::Frame(FrameError::Oversized(1 << 21)), "frame of 2097152 bytes exceeds the limit of 1048576 bytes"),
        (
            Violation::OutOfOrder { request: "List", state: "collector-before-hello" },
            "out-of-order frame: List is not valid in state collector-before-hello",
        ),
    ];
    for (v, text) in cases {
        assert_eq!(v.to_string(), text);
    }
}

#[test]
fn bad_preambles_end_the_session() {
    let mut st = Store::new(Limits::default());
    let end = |bytes: &[u8], st: &mut Store| Session::new().feed(bytes, st, 1.0, &mut Tally::default());
    assert_eq!(end(&Preamble::new(Role::Daemon).encode(), &mut st), Err(SessionEnd::Protocol(Violation::ClaimsDaemon)));
    assert!(matches!(
        end(b"HTTP/1.1", &mut st),
        Err(SessionEnd::Protocol(Violation::Preamble(PreambleError::BadMagic(_))))
    ));
}

#[test]
fn refusals_reach_the_peer_as_their_text() {
    let id = Identity { pid: 1, start_time: 0, nonce: 9, program: "p".into() };
    let bytes = collector_bytes(&[
        Request::Hello { identity: id },
        Request::Register { id: 0, desc: Desc::gauge("g_total", &[], "") },
        Request::Update {
            samples: vec![Sample { id: 3, value: Value::Int(1) }, Sample { id: 4, value: Value::Int(1) }],
        },
    ]);
    let mut st = Store::new(Limits::default());
    let mut s = Session::new();
    s.feed(&bytes, &mut st, 1.0, &mut Tally::default()).unwrap();
    assert_eq!(
        replies(&mut s),
        [
            Reply::Welcome { resumed: false },
            Reply::Error { id: Some(0), message: "gauge name \"g_total\" must not end in \"_total\"".into() },
            Reply::Error {
                id: Some(3),
                message: "update for a series id that was not registered (and 1 more errors in this request)".into()
            },
        ]
    );
}

#[test]
fn a_job_hello_with_a_bad_job_id_ends_the_session_before_anything_is_kept() {
    let mut st = Store::new(Limits::default());
    let mut s = Session::new();
    let identity = Identity { pid: 1, start_time: 0, nonce: 9, program: "p".into() };
    let job = JobTag { id: "a b".into(), rank: Some(0) };
    let end = s.feed(&collector_bytes(&[Request::JobHello { identity, job }]), &mut st, 1.0, &mut Tally::default());
    let bad = Violation::BadJob("a job id holds printable ASCII but not ' '".into());
    assert_eq!(bad.to_string(), "bad job id: a job id holds printable ASCII but not ' '");
    assert_eq!(end, Err(SessionEnd::Protocol(bad)));
    assert_eq!(st.known_collectors(), 0);
}

#[test]
fn peers_of_versions_1_and_2_are_served_in_their_version() {
    for (version, welcome) in [(1, false), (2, true), (3, true)] {
        let mut st = Store::new(Limits::default());
        let mut s = Session::new();
        let mut bytes = Preamble { version, role: Role::Collector }.encode().to_vec();
        let identity = Identity { pid: 1, start_time: 0, nonce: 9, program: "old".into() };
        bytes.extend(frames(&[
            Request::Hello { identity },
            Request::Register { id: 0, desc: Desc::counter("x_total", &[], "x") },
            Request::Update { samples: vec![Sample { id: 0, value: Value::Int(7) }] },
        ]));
        s.feed(&bytes, &mut st, 1.0, &mut Tally::default()).unwrap();
        let theirs: [u8; PREAMBLE_LEN] = s.output()[..PREAMBLE_LEN].try_into().unwrap();
        assert_eq!(Preamble::decode(&theirs), Ok(Preamble { version, role: Role::Daemon }));
        let want = if welcome { vec![Reply::Welcome { resumed: false }] } else { vec![] };
        assert_eq!(replies(&mut s), want, "version {version}");
        assert_eq!(st.get(&["x_total".into()]).unwrap()[0].value, 7.0, "version {version}");
    }
}

#[test]
fn frames_over_the_sessions_limit_end_it_and_are_counted() {
    let hello = Request::Hello { identity: Identity { pid: 1, start_time: 0, nonce: 1, program: "p".into() } };
    let get = Request::Get { names: vec!["n".repeat(90)] };
    for (role, first) in [(Role::Collector, hello), (Role::Query, get)] {
        let mut st = Store::new(Limits::default());
        let mut s = Session::new().with_max_frame(100);
        let mut b = Preamble::new(role).encode().to_vec();
        let fits = frames(&[first]);
        assert!(fits.len() - 4 <= 100, "the first frame is within the limit");
        b.extend(fits);
        // The next frame announces 101 bytes: refused before it arrives whole.
        b.extend(101u32.to_le_bytes());
        b.extend([0u8; 10]);
        let mut result = s.feed(&b, &mut st, 1.0, &mut Tally::default());
        while result.is_ok() && s.has_work() {
            result = s.turn(&mut st, 0.0);
            s.output().clear();
        }
        let refusal = Refusal::FrameLimit { len: 101, limit: 100 };
        assert_eq!(result, Err(SessionEnd::Refused(refusal.clone())), "{role:?}");
        assert_eq!(st.refusals(RefusalKind::FrameLimit), 1);
        assert_eq!(refusal.to_string(), "frame of 101 bytes exceeds this proxy's limit of 100 bytes (see --max-frame)");
    }
}

#[test]
fn a_collectors_unread_replies_are_dropped_beyond_its_queue_and_counted() {
    let mut st = Store::new(Limits::default());
    let mut s = Session::new().with_max_reply_queue(300);
    let mut reqs = vec![Request::Hello { identity: Identity { pid: 1, start_time: 0, nonce: 1, program: "p".into() } }];
    // Each update of an unregistered id earns an error reply of ~50 bytes.
    reqs.extend((0..40).map(|i| Request::Update { samples: vec![Sample { id: i, value: Value::Int(1) }] }));
    s.feed(&collector_bytes(&reqs), &mut st, 1.0, &mut Tally::default()).unwrap();
    let kept = replies(&mut s).len() as u64;
    let dropped = s.take_dropped_replies();
    println!("reply queue of 300 bytes: {kept} replies kept, {dropped} dropped");
    assert!(kept > 1 && dropped > 0);
    assert_eq!(kept + dropped, 41, "the welcome and 40 errors, each kept or dropped");
    assert_eq!(s.take_dropped_replies(), 0, "taken once");
}

#[test]
fn a_jobs_query_lists_the_jobs_by_start_even_none() {
    let mut st = Store::new(Limits::default());
    let mut q = Session::new();
    let mut bytes = Preamble::new(Role::Query).encode().to_vec();
    bytes.extend(frames(&[Request::Jobs]));
    q.feed(&bytes, &mut st, 1.0, &mut Tally::default()).unwrap();
    assert_eq!(replies_of(&mut q, &mut st), [Reply::Jobs { jobs: vec![], last: true }]);
    let mut c = Session::new();
    let identity = Identity { pid: 1, start_time: 0, nonce: 9, program: "ring".into() };
    let job = JobTag { id: "4242".into(), rank: Some(3) };
    c.feed(&collector_bytes(&[Request::JobHello { identity, job }]), &mut st, 5.0, &mut Tally::default()).unwrap();
    q.output().extend_from_slice(&[0; PREAMBLE_LEN]); // as if the preamble were still unread
    q.feed(&frames(&[Request::Jobs]), &mut st, 6.0, &mut Tally::default()).unwrap();
    let info = JobInfo {
        id: "4242".into(),
        ranks: vec![3],
        ranks_connected: 1,
        collectors: 1,
        live_collectors: 1,
        start: 5.0,
        end: None,
        commands: vec!["ring".into()],
    };
    assert_eq!(replies_of(&mut q, &mut st), [Reply::Jobs { jobs: vec![info], last: true }]);
}
