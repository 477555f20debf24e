//! A misbehaving registry on 127.0.0.1 (plain HTTP, which Staves allows for loopback): it accepts connections and
//! then stalls, or stalls a blob `PUT`, or answers an upload with HTTP 500 and a huge body. Each connection is
//! served by a thread of its own; a stalled one is held open (never read, never answered) until the server is
//! dropped, or at most [`HANG_GUARD`], so a client without deadlines fails its test instead of hanging forever.
//!
//! Used by `staves-core/tests/registry_stall.rs` and `staves-cli/tests/registry_stall.rs` (each includes this file
//! with `#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a stalled connection is held at most: only a guard against a hung test, never an assertion.
pub const HANG_GUARD: Duration = Duration::from_secs(300);

/// How the registry misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accept every connection, then read nothing and answer nothing.
    StallEverything,
    /// Act as a registry (`/v2/` 200, every blob missing, uploads opened), but stop reading a blob `PUT` whose
    /// body is larger than this many bytes, and never answer it; smaller ones are accepted.
    StallBlobPut(u64),
    /// Act as a registry, but answer the upload `POST` with HTTP 500 and a body of this many bytes (streamed, never
    /// held in memory), for as long as the client reads it.
    HugeErrorBody(u64),
}

/// The server; stops (and closes every held connection) on drop.
pub struct StallingRegistry {
    port: u16,
    stop: Arc<AtomicBool>,
    events: Mutex<Receiver<String>>,
}

impl StallingRegistry {
    /// Start it on a free port of 127.0.0.1.
    pub fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, events) = std::sync::mpsc::channel();
        let server_stop = stop.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if server_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { break };
                let (stop, sender) = (server_stop.clone(), sender.clone());
                std::thread::spawn(move || serve(stream, mode, &stop, &sender));
            }
        });
        Self {
            port,
            stop,
            events: Mutex::new(events),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Wait until the server reports an event starting with `prefix` (`stalled PUT`, `error body`), and return it.
    /// Panics after [`HANG_GUARD`].
    pub fn wait_for(&self, prefix: &str) -> String {
        let events = self.events.lock().unwrap();
        let end = Instant::now() + HANG_GUARD;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match events.recv_timeout(left) {
                Ok(event) if event.starts_with(prefix) => return event,
                Ok(_) => {}
                Err(e) => panic!("the registry never reported `{prefix}`: {e}"),
            }
        }
    }

    /// Every event reported so far.
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().try_iter().collect()
    }
}

impl Drop for StallingRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Hold `stream` open without reading it until the server stops (or the guard passes).
fn hold(stream: TcpStream, stop: &AtomicBool) {
    let end = Instant::now() + HANG_GUARD;
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stream);
}

fn serve(stream: TcpStream, mode: Mode, stop: &AtomicBool, events: &Sender<String>) {
    if mode == Mode::StallEverything {
        let _ = events.send("stalled connection".to_owned());
        return hold(stream, stop);
    }
    let mut reader = BufReader::new(stream);
    // Staves tries HTTPS first: a TLS hello is not a request line, so drop that connection.
    match reader.fill_buf() {
        Ok(buffer) if buffer.first().is_some_and(u8::is_ascii_alphabetic) => {}
        _ => return,
    }
    // One request after another on the connection (the client keeps connections alive).
    loop {
        let mut head = String::new();
        let mut length: u64 = 0;
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            head.push_str(&line);
        }
        let request_line = head.lines().next().unwrap_or_default().to_owned();
        let (method, path) = {
            let mut words = request_line.split(' ');
            (
                words.next().unwrap_or_default().to_owned(),
                words.next().unwrap_or_default().to_owned(),
            )
        };
        if method == "PUT" {
            if let Mode::StallBlobPut(limit) = mode {
                if length > limit {
                    let _ = events.send(format!("stalled PUT of {length} bytes: {path}"));
                    return hold(reader.into_inner(), stop);
                }
            }
        }
        // Read (and forget) the request body.
        if std::io::copy(&mut (&mut reader).take(length), &mut std::io::sink()).is_err() {
            return;
        }
        let stream = reader.get_mut();
        let answer = if method == "GET" && path == "/v2/" {
            ok("200 OK", "{}")
        } else if method == "HEAD" && path.contains("/blobs/") {
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned()
        } else if method == "POST" && path.contains("/blobs/uploads/") {
            if let Mode::HugeErrorBody(size) = mode {
                return huge_error(stream, size, events);
            }
            "HTTP/1.1 202 Accepted\r\nLocation: /v2/upload/session-1?_state=x\r\nContent-Length: 0\r\n\r\n"
                .to_owned()
        } else if method == "PUT" {
            // Where the blob (or manifest) now is, as the distribution spec says.
            "HTTP/1.1 201 Created\r\nLocation: /v2/team/app/blobs/uploaded\r\nContent-Length: 0\r\n\r\n"
                .to_owned()
        } else {
            ok(
                "404 Not Found",
                r#"{"errors":[{"code":"NOT_FOUND","message":"nothing here"}]}"#,
            )
        };
        if stream.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn ok(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Answer 500 with a `size`-byte body, written until the client hangs up; reports how much was written.
fn huge_error(stream: &mut TcpStream, size: u64, events: &Sender<String>) {
    let head = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\nContent-Length: {size}\r\n\r\n"
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    let chunk = vec![b'x'; 64 * 1024];
    let mut written: u64 = 0;
    while written < size {
        let n = chunk
            .len()
            .min(usize::try_from(size - written).unwrap_or(usize::MAX));
        if stream.write_all(&chunk[..n]).is_err() {
            break;
        }
        written += n as u64;
    }
    let _ = events.send(format!("error body: wrote {written} of {size} bytes"));
}
