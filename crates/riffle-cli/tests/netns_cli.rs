//! A job spread over addresses that are not 127.0.0.1 (issue 16, item 3): two network
//! namespaces made by the test (`ip netns`, a veth pair between them, 10.213.x.1 and .2), one
//! process of the job in each, started by `riffle supervise --hosts … --launcher 'ip netns exec
//! …'`. The link is taken down mid-run: the supervisor sees no checkpoint complete for its
//! progress timeout (not a hang), restarts the job, and once the link is back up the job ends
//! with exactly the output of an uninterrupted run.
//!
//! Needs root and iproute2 (`ip`), as CI's machine has; the test fails, saying so, without them.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::riffle;

const DEADLINE: Duration = Duration::from_secs(180);

/// Runs `ip` with `args`, which must succeed.
fn ip(args: &[&str]) {
    let o = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("this test needs iproute2's ip (apt-get install iproute2) and root: {e}"));
    assert!(
        o.status.success(),
        "ip {}: {} (this test needs root to make network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Two namespaces joined by a veth pair, removed when dropped.
struct Namespaces {
    names: [String; 2],
    hosts: [String; 2],
}

impl Namespaces {
    fn new() -> Namespaces {
        let id = std::process::id();
        let names = [format!("rf{id}n0"), format!("rf{id}n1")];
        let subnet = 1 + id % 250;
        let hosts = [format!("10.213.{subnet}.1"), format!("10.213.{subnet}.2")];
        let ns = Namespaces { names, hosts };
        for name in &ns.names {
            ip(&["netns", "add", name]);
            ip(&["-n", name, "link", "set", "lo", "up"]);
        }
        ip(&[
            "link",
            "add",
            "rfv0",
            "netns",
            &ns.names[0],
            "type",
            "veth",
            "peer",
            "name",
            "rfv1",
            "netns",
            &ns.names[1],
        ]);
        for i in 0..2 {
            let cidr = format!("{}/24", ns.hosts[i]);
            ip(&["-n", &ns.names[i], "addr", "add", &cidr, "dev", &format!("rfv{i}")]);
            ip(&["-n", &ns.names[i], "link", "set", &format!("rfv{i}"), "up"]);
        }
        ns
    }

    fn link(&self, state: &str) {
        ip(&["-n", &self.names[0], "link", "set", "rfv0", state]);
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

#[test]
fn a_job_over_two_network_namespaces_survives_its_link_going_down() {
    let ns = Namespaces::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ck, out) = (dir.path().join("ck"), dir.path().join("out"));
    let lines = 300_000;
    let mut supervisor = riffle()
        .args(["supervise", "--processes", "2", "--progress-timeout", "3s"])
        .args(["--restart-strategy", "fixed-delay:attempts=10,delay=200ms"])
        .arg("--hosts")
        .arg(ns.hosts.join(","))
        .arg("--launcher")
        .arg(format!("ip netns exec rf{}n{{i}}", std::process::id()))
        .arg("--")
        .args(common::generated_wordcount(lines, 30_000))
        .arg("--checkpoint-dir")
        .arg(&ck)
        .args(["--checkpoint-interval", "200ms"])
        .arg("--sink")
        .arg(format!("file://{}", out.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("riffle starts");
    let lines_seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let reader = {
        let stderr = supervisor.stderr.take().expect("stderr");
        let seen = Arc::clone(&lines_seen);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                seen.lock().expect("lines").push(line);
            }
        })
    };
    let text = || lines_seen.lock().expect("lines").join("\n");
    let wait_for = |what: &str| {
        let start = Instant::now();
        while !text().contains(what) {
            assert!(start.elapsed() < DEADLINE, "no '{what}':\n{}", text());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Running across the namespaces: some checkpoints complete.
    let start = Instant::now();
    while std::fs::read_dir(&ck).map_or(0, |d| {
        d.filter_map(|e| e.ok())
            .filter(|e| e.path().join("MANIFEST").exists())
            .count()
    }) < 3
    {
        assert!(start.elapsed() < DEADLINE, "no checkpoints:\n{}", text());
        std::thread::sleep(Duration::from_millis(20));
    }
    ns.link("down");
    wait_for("attempt 1 failed: no checkpoint completed");
    ns.link("up");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = supervisor.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > DEADLINE {
            let _ = supervisor.kill();
            panic!("the supervisor did not finish:\n{}", text());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    assert!(status.success(), "{}", text());
    assert!(text().contains(&format!("on {}:", ns.hosts[0])), "{}", text());
    let want = common::sorted_stdout(riffle().args(common::generated_wordcount(lines, 0)));
    assert_eq!(common::committed_lines(&out), want, "{}", text());
}
