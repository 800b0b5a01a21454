//! `cargo xtask bench jobs`: what jobs cost the daemon. The same load, 100
//! jobs of 8 ranks each pushing the MPI families, with job ids and without,
//! measured in one run, interleaved, medians: ingest (frames decoded and
//! applied by the collectors' sessions) and rendering the page.

use std::time::Instant;

use protocol::{encode_frame, Desc, Identity, JobTag, Kind, Preamble, Request, Role, Sample, Scale, Value};
use proxy_core::{render, Format, Limits, Session, Store, Tally};

const JOBS: usize = 100;
const RANKS: usize = 8;
/// MPI functions each rank calls: three series each (hits, size, time).
const FUNCTIONS: usize = 20;
const ROUNDS: usize = 15;

/// A store and its 800 collectors' sessions, with job ids or without.
struct Node {
    store: Store,
    sessions: Vec<Session>,
    /// One update frame per collector: every series + 1.
    update: Vec<u8>,
}

fn node(with_jobs: bool) -> Node {
    let mut store = Store::new(Limits::default());
    for (name, scale) in
        [("mpi_hits_total", Scale::One), ("mpi_size_total", Scale::One), ("mpi_time_total", Scale::Nano)]
    {
        store.declare_shared(name, Kind::Counter, scale, "bench").expect("valid family");
    }
    let mut sessions = Vec::with_capacity(JOBS * RANKS);
    for c in 0..JOBS * RANKS {
        let identity = Identity { pid: 1000 + c as u32, start_time: 1, nonce: c as u64, program: "bench".into() };
        let hello = if with_jobs {
            let job = JobTag { id: format!("{}", 4000 + c / RANKS), rank: Some((c % RANKS) as u32) };
            Request::JobHello { identity, job }
        } else {
            Request::Hello { identity }
        };
        let mut bytes = Preamble::new(Role::Collector).encode().to_vec();
        encode_frame(&hello, &mut bytes).expect("small frame");
        for f in 0..FUNCTIONS {
            for (k, (name, scale)) in
                [("mpi_hits_total", Scale::One), ("mpi_size_total", Scale::One), ("mpi_time_total", Scale::Nano)]
                    .into_iter()
                    .enumerate()
            {
                let func = format!("MPI_F{f}");
                let desc = Desc::new(name, &[("function", &func)], "bench", Kind::Counter, scale);
                encode_frame(&Request::Register { id: (f * 3 + k) as u32, desc }, &mut bytes).expect("small frame");
            }
        }
        let mut s = Session::new();
        s.feed(&bytes, &mut store, 1.0, &mut Tally::default()).expect("a valid collector");
        s.output().clear();
        sessions.push(s);
    }
    let samples = (0..FUNCTIONS * 3).map(|id| Sample { id: id as u32, value: Value::Int(1 + id as u64) }).collect();
    let mut update = Vec::new();
    encode_frame(&Request::Update { samples }, &mut update).expect("small frame");
    Node { store, sessions, update }
}

impl Node {
    /// One update from every collector; seconds it took.
    fn ingest(&mut self, now: f64) -> f64 {
        let start = Instant::now();
        for s in &mut self.sessions {
            s.feed(&self.update, &mut self.store, now, &mut Tally::default()).expect("a valid update");
        }
        start.elapsed().as_secs_f64()
    }

    /// One page in text 0.0.4; seconds it took.
    fn render(&mut self, out: &mut String) -> f64 {
        let start = Instant::now();
        render(&mut self.store, Format::Text, out);
        start.elapsed().as_secs_f64()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(crate) fn run() {
    let mut jobs = node(true);
    let mut plain = node(false);
    let (mut ingest_j, mut ingest_p, mut render_j, mut render_p) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut out = String::new();
    // Warm up both, then alternate which goes first.
    jobs.ingest(1.0);
    plain.ingest(1.0);
    for round in 0..ROUNDS {
        let now = 2.0 + round as f64;
        if round % 2 == 0 {
            ingest_j.push(jobs.ingest(now));
            ingest_p.push(plain.ingest(now));
            render_j.push(jobs.render(&mut out));
            render_p.push(plain.render(&mut out));
        } else {
            ingest_p.push(plain.ingest(now));
            ingest_j.push(jobs.ingest(now));
            render_p.push(plain.render(&mut out));
            render_j.push(jobs.render(&mut out));
        }
    }
    let (series_j, series_p) = (jobs.store.series_count(), plain.store.series_count());
    let samples = (JOBS * RANKS * FUNCTIONS * 3) as f64;
    let (ij, ip) = (median(ingest_j), median(ingest_p));
    let (rj, rp) = (median(render_j), median(render_p));
    println!(
        "jobs: {JOBS} jobs of {RANKS} ranks, {} series per rank: ingest {:.1} M samples/s with job ids, {:.1} M/s \
         without; cost ratio {:.2} (target 1.30)",
        FUNCTIONS * 3,
        samples / ij / 1e6,
        samples / ip / 1e6,
        ij / ip
    );
    println!(
        "jobs: render {series_j} series with job ids (the {series_p} node series and each job's own) in {:.2} ms, \
         {series_p} without in {:.3} ms: {:.1} ns/series against {:.1}; per-series cost ratio {:.2} (target 1.30), \
         page ratio {:.1} (the page holds {:.0}x the series)",
        rj * 1e3,
        rp * 1e3,
        rj / series_j as f64 * 1e9,
        rp / series_p as f64 * 1e9,
        (rj / series_j as f64) / (rp / series_p as f64),
        rj / rp,
        series_j as f64 / series_p as f64
    );
}
