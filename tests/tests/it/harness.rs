//! The helpers themselves: a failed check on a command reports the command
//! line, its exit status, stdout, stderr and the log of each daemon the
//! test has running; a hung command is killed and reported.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::util::{cmd, Proxy};

/// The message `check` panics with.
fn panic_message(check: impl FnOnce()) -> String {
    let payload = catch_unwind(AssertUnwindSafe(check)).expect_err("the check passed; it should have failed");
    match (payload.downcast_ref::<String>(), payload.downcast_ref::<&str>()) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => (*s).to_owned(),
        (None, None) => panic!("a panic without a message"),
    }
}

#[test]
fn a_failed_check_shows_the_command_its_status_its_output_and_the_daemon_log() {
    let p = Proxy::start();
    let out = cmd("sh").args(["-c", "echo out; echo err >&2; exit 3"]).env("GREETING", "a b").run();
    // The checks that hold pass quietly.
    out.assert_exit(3).assert_failure().assert_stdout("out\n").assert_stderr("err\n");
    let message = panic_message(|| {
        out.assert_success();
    });
    let line = "env GREETING='a b' sh -c 'echo out; echo err >&2; exit 3'";
    assert!(message.starts_with(&format!("`{line}`: expected success\n")), "{message}");
    for part in [
        format!("===== command: {line}\n"),
        "===== status: exit status: 3 after ".to_owned(),
        "===== stdout:\nout\n===== stderr:\nerr\n".to_owned(),
        format!("===== daemon log {}:\n", p.dir.join("daemon.log").display()),
        format!("UNIX push gateway running on {}\n", p.socket.display()),
    ] {
        assert!(message.contains(&part), "{part:?} missing in:\n{message}");
    }
    assert!(message.ends_with("\n====="), "{message}");
    // Once the daemon is gone, its log is no longer part of the report.
    drop(p);
    let message = panic_message(|| {
        out.assert_exit(0);
    });
    assert!(message.starts_with(&format!("`{line}`: expected exit status 0\n")), "{message}");
    assert!(!message.contains("daemon log"), "{message}");
}

#[test]
fn a_wrong_output_is_shown_next_to_the_expected_one() {
    let out = cmd("printf").arg("one\\ntwo").run();
    let message = panic_message(|| {
        out.assert_success().assert_stdout("one\ntwo\n");
    });
    assert!(message.contains("stdout differs\n  expected: \"one\\ntwo\\n\"\n       got: \"one\\ntwo\"\n"), "{message}");
    assert!(message.contains("===== stdout:\none\ntwo\n(no newline at the end)\n===== stderr: (empty)\n"), "{message}");
}

#[test]
fn a_hung_command_is_killed_and_reported_with_what_it_printed() {
    let child = cmd("sh").args(["-c", "echo started; exec sleep 60"]).spawn();
    let message = panic_message(|| {
        child.finish_within(Duration::from_millis(300));
    });
    assert!(message.contains("`: did not end within 300ms (killed)\n"), "{message}");
    assert!(message.contains("===== status: signal: 9 (SIGKILL)"), "{message}");
    assert!(message.contains("===== stdout:\nstarted\n"), "{message}");
}
