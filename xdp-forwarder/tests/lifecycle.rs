//! Attachments are BPF links owned by the process: when it dies (SIGKILL, no destructors run),
//! nothing stays attached. Also: a normal drop detaches; a missing interface is its own error.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use xdp_forwarder::{Direction, Error, FanoutKey, KernelPath, NextHop, Options, Output, TcHook};

const CHILD_ENV: &str = "XDP_FWD_LIFECYCLE_CHILD_NS";

fn options(t_b0: &str, t_b1: &str) -> Options {
    Options {
        media_interface: t_b0.to_string(),
        guard: true,
        rewrite: true,
        fanout: vec![
            TcHook {
                interface: t_b0.to_string(),
                direction: Direction::Ingress,
            },
            TcHook {
                interface: t_b1.to_string(),
                direction: Direction::Egress,
            },
        ],
        ..Default::default()
    }
}

/// The tests of this file compare system-wide BPF link lists: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// XDP attachments in namespace `ns`, as `ip link` shows them.
fn xdp_attached(ns: &str) -> String {
    let links = ip_out(&["-n", ns, "link", "show"]);
    let xdp: Vec<&str> = links.lines().filter(|l| l.contains("xdp")).collect();
    xdp.join("\n")
}

/// System-wide BPF links (`bpftool link show`: "ID: TYPE prog N"), when bpftool is installed.
/// TCX links show as "type 11" with older bpftool versions.
fn bpf_links() -> Option<Vec<String>> {
    let out = Command::new("bpftool")
        .args(["link", "show"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| {
                l.split(':')
                    .next()
                    .is_some_and(|id| id.trim().parse::<u32>().is_ok())
            })
            .map(|l| l.trim().to_string())
            .collect(),
    )
}

/// Not a test on its own: the child process of `links_go_away_when_the_process_is_killed`.
#[test]
#[ignore = "child process of links_go_away_when_the_process_is_killed"]
fn lifecycle_child() {
    let Ok(ns) = std::env::var(CHILD_ENV) else {
        return;
    };
    let devs = std::env::var("XDP_FWD_LIFECYCLE_DEVS").expect("devs");
    let (b0, b1) = devs.split_once(',').expect("two devs");
    enter_netns(&ns);
    let mut kp = KernelPath::open(&options(b0, b1)).expect("child open");
    kp.set_outputs(
        FanoutKey {
            port: 5004,
            ssrc: 1,
        },
        &[Output {
            dst: SocketAddr::new(C_V4.into(), 6001),
            src: SocketAddr::new(B1_V4.into(), 7001),
            ssrc: 2,
            payload_type: None,
            next_hop: NextHop::Fib { interface: None },
        }],
    )
    .expect("outputs");
    println!("ATTACHED");
    std::io::stdout().flush().expect("flush");
    // Wait to be killed.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    std::thread::sleep(Duration::from_secs(30));
}

#[test]
fn links_go_away_when_the_process_is_killed() {
    require_root!("links_go_away_when_the_process_is_killed");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topo::new("lk");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "lifecycle_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, &t.ns_b)
        .env("XDP_FWD_LIFECYCLE_DEVS", format!("{},{}", t.b0, t.b1))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let before = bpf_links();
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.any(|l| l.map(|l| l.contains("ATTACHED")).unwrap_or(false));
    assert!(ready, "child did not attach");
    // Keep draining the child's stdout so it never sees a broken pipe.
    std::thread::spawn(move || for _ in lines {});

    let xdp = xdp_attached(&t.ns_b);
    eprintln!("while the child lives, ip link: {xdp}");
    assert!(xdp.contains(&t.b0), "XDP attached to {}: {xdp}", t.b0);
    let child_links: Option<Vec<String>> = before.as_ref().and_then(|before| {
        bpf_links().map(|now| now.into_iter().filter(|l| !before.contains(l)).collect())
    });
    if let Some(links) = &child_links {
        eprintln!("while the child lives, its BPF links: {links:?}");
        // guard (XDP) + fanout on two hooks (TCX): three links.
        assert_eq!(links.len(), 3, "{links:?}");
    }

    child.kill().expect("SIGKILL child");
    let status = child.wait().expect("wait");
    eprintln!("child ended: {status}");

    let xdp = xdp_attached(&t.ns_b);
    assert!(xdp.is_empty(), "XDP still attached: {xdp}");
    match (&child_links, bpf_links()) {
        (Some(links), Some(now)) => {
            // Links go away once the kernel has released the dead process's descriptors.
            let left: Vec<&String> = links.iter().filter(|l| now.contains(l)).collect();
            eprintln!("after the child died, its links left: {left:?}");
            assert!(left.is_empty(), "links survived the process: {left:?}");
        }
        _ => eprintln!("(bpftool not installed: TC detachment checked by traffic only)"),
    }

    // Functional check: a packet to the former fan-out port reaches B's stack untouched.
    enter_netns(&t.ns_b);
    let sock = udp_bind(SocketAddr::new(B0_V4.into(), 5004));
    let p = rtp_packet(96, 1, 1, 100, RtpShape::default());
    let a0 = t.a0.clone();
    let frame = udp_frame(
        MAC_A0,
        MAC_B0,
        A_V4.into(),
        B0_V4.into(),
        40000,
        5004,
        &p,
        FrameOpts::default(),
    );
    spawn_in(&t.ns_a, move || RawSock::open(&a0).send(&frame))
        .join()
        .expect("send");
    assert_eq!(drain(&sock, Duration::from_millis(300)), vec![p]);
}

#[test]
fn drop_detaches_and_errors_are_distinct() {
    require_root!("drop_detaches_and_errors_are_distinct");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topo::new("ld");
    enter_netns(&t.ns_b);
    let before = bpf_links();
    let kp = KernelPath::open(&options(&t.b0, &t.b1)).expect("open");
    assert!(!xdp_attached(&t.ns_b).is_empty());
    drop(kp);
    assert!(xdp_attached(&t.ns_b).is_empty(), "drop detaches XDP");
    if let (Some(before), Some(after)) = (before, bpf_links()) {
        let new: Vec<_> = after.iter().filter(|l| !before.contains(l)).collect();
        assert!(new.is_empty(), "drop detaches every link: {new:?}");
    }

    let err = KernelPath::open(&Options {
        media_interface: "nosuchif0".into(),
        guard: true,
        ..Default::default()
    })
    .expect_err("missing interface");
    assert!(matches!(err, Error::InterfaceMissing { .. }), "{err}");
    assert!(err.is_unavailable());
    eprintln!("{err}");

    // Two XDP owners on one interface: the second attach fails as an attach error.
    let _first = KernelPath::open(&options(&t.b0, &t.b1)).expect("first");
    let err = KernelPath::open(&Options {
        media_interface: t.b0.clone(),
        guard: true,
        ..Default::default()
    })
    .expect_err("second XDP owner");
    assert!(matches!(err, Error::Attach { .. }), "{err}");
    eprintln!("{err}");
}

#[test]
fn without_capabilities_open_says_not_permitted() {
    require_root!("without_capabilities_open_says_not_permitted");
    // Capabilities are per thread: drop the effective ones in a fresh thread only.
    let err = std::thread::spawn(|| {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy, Default)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut hdr = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let mut data = [Data::default(); 2];
        // SAFETY: valid header and two-element data array, as capget/capset v3 expect.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()),
                0
            );
            data[0].effective &= !(1 << 12 | 1 << 21); // CAP_NET_ADMIN, CAP_SYS_ADMIN
            data[1].effective &= !(1 << (39 - 32)); // CAP_BPF
            assert_eq!(libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()), 0);
        }
        KernelPath::open(&Options {
            media_interface: "lo".into(),
            guard: true,
            ..Default::default()
        })
        .expect_err("no capabilities")
    })
    .join()
    .expect("thread");
    eprintln!("{err}");
    assert!(matches!(err, Error::NotPermitted { .. }), "{err}");
    assert!(err.to_string().contains("CAP_BPF"));
}
