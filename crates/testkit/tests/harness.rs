//! The harness itself: servers start on distinct ports, keep their AOF data across a crash, and
//! vanish on drop.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use testkit::{Aof, RedisServer};

/// Sends raw RESP commands and returns the raw reply.
fn redis(port: u16, commands: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    s.write_all(commands.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.ends_with(b"\r\n") {
            break;
        }
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn two_servers_run_side_by_side_on_their_own_ports() {
    let a = RedisServer::start().unwrap();
    let b = RedisServer::start().unwrap();
    assert_ne!(a.port(), b.port());
    redis(a.port(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\na\r\n");
    assert_eq!(redis(b.port(), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), "$-1\r\n");
    assert!(a.url().starts_with("redis://127.0.0.1:"));
}

#[test]
fn a_crashed_server_restarts_from_its_aof_on_the_same_port() {
    let mut s = RedisServer::builder().aof(Aof::Always).start().unwrap();
    let port = s.port();
    assert_eq!(redis(port, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nkept!\r\n"), "+OK\r\n");
    s.restart().unwrap();
    assert_eq!(s.port(), port);
    assert_eq!(redis(port, "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), "$5\r\nkept!\r\n");
}

#[test]
fn without_aof_a_crash_loses_everything() {
    let mut s = RedisServer::start().unwrap();
    redis(s.port(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
    s.restart().unwrap();
    assert_eq!(redis(s.port(), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), "$-1\r\n");
}

#[test]
fn a_password_is_required_when_set() {
    let s = RedisServer::builder().password("s3cret").start().unwrap();
    assert!(redis(s.port(), "*1\r\n$4\r\nPING\r\n").starts_with("-NOAUTH"));
    assert_eq!(s.url(), format!("redis://:s3cret@127.0.0.1:{}", s.port()));
}

#[test]
fn dropping_the_server_stops_it_and_removes_its_directory() {
    let s = RedisServer::start().unwrap();
    let (port, dir) = (s.port(), s.dir().to_owned());
    assert!(dir.exists());
    drop(s);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    assert!(!dir.exists());
}
