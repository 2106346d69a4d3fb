//! Commands on one SSH connection, against a real sshd: what a backup's tar streams rely on
//! when the next tar is started ahead of need.

mod common;

use std::io::Read;
use std::time::Duration;

use common::Sshd;
use snapnest::config::{SshSpec, Transfer};
use snapnest::source::ssh::{ChannelReader, Connection};

fn connect(sshd: &Sshd) -> Connection {
    let spec = SshSpec {
        address: "127.0.0.1".into(),
        port: sshd.port,
        user: "root".into(),
        identity: Some(sshd.client_key.clone()),
        host_key: Some(sshd.fingerprint.clone()),
        transfer: Transfer::Auto,
        authorize_from: None,
    };
    Connection::connect("channels", &spec, Duration::from_secs(20), true).unwrap()
}

/// Everything `ch` writes to stdout until it ends, and its exit status.
fn output(conn: &Connection, mut ch: ssh2::Channel) -> (String, i32) {
    let mut out = Vec::new();
    let mut stderr = Vec::new();
    ChannelReader {
        conn,
        channel: &mut ch,
        stderr: &mut stderr,
    }
    .read_to_end(&mut out)
    .unwrap();
    let status = conn.finish(ch, &mut stderr).unwrap();
    (String::from_utf8(out).unwrap(), status)
}

#[test]
fn output_sent_before_the_input_ends_is_kept() {
    let sshd = Sshd::start();
    let conn = connect(&sshd);
    // Like a tar started ahead of its names: it writes before its input arrives.
    let mut ch = conn.spawn("echo early; cat; echo late").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    conn.send_input(&mut ch, b"middle\n").unwrap();
    assert_eq!(output(&conn, ch), ("early\nmiddle\nlate\n".into(), 0));
}

#[test]
fn a_waiting_command_and_a_running_one_keep_their_own_streams() {
    let sshd = Sshd::start();
    let conn = connect(&sshd);
    let mut spare = conn.spawn("echo spare; cat").unwrap();
    let mut busy = conn
        .spawn("head -c 3000000 /dev/zero | tr '\\0' b; cat")
        .unwrap();
    // More input than fits in a packet, while the other command's output pours in.
    let names: Vec<u8> = (0..200_000)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    conn.send_input(&mut busy, &names).unwrap();
    let (out, status) = output(&conn, busy);
    assert_eq!(status, 0);
    assert_eq!(out.len(), 3_000_000 + names.len());
    assert!(out.as_bytes()[..3_000_000].iter().all(|&b| b == b'b'));
    assert_eq!(out.as_bytes()[3_000_000..], names[..]);
    conn.send_input(&mut spare, b"later\n").unwrap();
    assert_eq!(output(&conn, spare), ("spare\nlater\n".into(), 0));
}
