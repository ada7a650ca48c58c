//! A synchronous connection to a D-Bus bus: the address, the authentication, method calls and
//! signals, on one CLOEXEC Unix socket (std opens it with SOCK_CLOEXEC) and no thread.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use super::wire::{self, Call, Kind, Message};

/// An error reply to a method call: the error's name (`org.freedesktop.systemd1.NoSuchUnit`)
/// and its message.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {message}")]
pub struct MethodError {
    pub name: String,
    pub message: String,
}

pub struct Connection {
    socket: UnixStream,
    /// How long a call or a wait for a signal may take.
    timeout: Duration,
    last_serial: Cell<u32>,
    /// Signals that arrived while a call waited for its reply, oldest first.
    signals: RefCell<VecDeque<Message>>,
}

impl Connection {
    /// Connects to the first address of `addresses` (D-Bus's `;`-separated list) that
    /// accepts, authenticates, and says Hello to the bus.
    pub fn open(addresses: &str, timeout: Duration) -> Result<Connection> {
        let socket = connect(addresses)?;
        socket.set_read_timeout(Some(timeout))?;
        socket.set_write_timeout(Some(timeout))?;
        authenticate(&socket, nix::unistd::geteuid().as_raw())
            .with_context(|| format!("authenticating to {addresses}"))?;
        let connection = Connection {
            socket,
            timeout,
            last_serial: Cell::new(0),
            signals: RefCell::new(VecDeque::new()),
        };
        let hello = Call {
            destination: "org.freedesktop.DBus",
            path: "/org/freedesktop/DBus",
            interface: "org.freedesktop.DBus",
            member: "Hello",
        };
        connection
            .call(&hello, "", &[])
            .context("the bus's Hello")?;
        Ok(connection)
    }

    /// Calls a method and waits for its reply; an error reply is a [`MethodError`].
    pub fn call(&self, call: &Call, signature: &str, body: &[u8]) -> Result<Message> {
        let serial = self.last_serial.get() + 1;
        self.last_serial.set(serial);
        (&self.socket)
            .write_all(&wire::method_call(serial, call, signature, body))
            .context("writing to the bus")?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let message = self.receive(deadline)?;
            match message.kind {
                Kind::Signal => self.signals.borrow_mut().push_back(message),
                _ if message.reply_serial != Some(serial) => {}
                Kind::Error => {
                    return Err(MethodError {
                        name: message.error_name.clone().unwrap_or_default(),
                        message: message.error_message(),
                    }
                    .into());
                }
                _ => return Ok(message),
            }
        }
    }

    /// The next signal (of those the bus routes here), waiting until `deadline` at most.
    pub fn next_signal(&self, deadline: Instant) -> Result<Message> {
        if let Some(signal) = self.signals.borrow_mut().pop_front() {
            return Ok(signal);
        }
        loop {
            let message = self.receive(deadline)?;
            if message.kind == Kind::Signal {
                return Ok(message);
            }
        }
    }

    /// Reads one whole message, waiting until `deadline` at most.
    fn receive(&self, deadline: Instant) -> Result<Message> {
        let mut prefix = [0u8; wire::PREFIX];
        self.read_exact(&mut prefix, deadline)?;
        let mut bytes = prefix.to_vec();
        bytes.resize(wire::message_length(&prefix)?, 0);
        self.read_exact(&mut bytes[wire::PREFIX..], deadline)?;
        Message::parse(&bytes)
    }

    fn read_exact(&self, buf: &mut [u8], deadline: Instant) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            ensure!(
                !left.is_zero(),
                "no answer from the bus in {:?}",
                self.timeout
            );
            self.socket.set_read_timeout(Some(left))?;
            match (&self.socket).read(&mut buf[done..]) {
                Ok(0) => bail!("the bus closed the connection"),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {}
                Err(e) => return Err(e).context("reading from the bus"),
            }
        }
        Ok(())
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// A Unix socket address of a D-Bus address: `unix:path=…` or `unix:abstract=…`.
fn socket_address(address: &str) -> Result<SocketAddr> {
    let Some(keys) = address.strip_prefix("unix:") else {
        bail!("{address:?}: berth reaches buses over unix: addresses only");
    };
    for pair in keys.split(',') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = unescape(value).with_context(|| format!("{address:?}"))?;
        match key {
            "path" => return Ok(SocketAddr::from_pathname(value.as_str())?),
            "abstract" => return Ok(SocketAddr::from_abstract_name(value.as_bytes())?),
            _ => {}
        }
    }
    bail!("{address:?}: a unix: address without path= or abstract=")
}

/// A value of a D-Bus address: `%xx` is the byte xx.
fn unescape(value: &str) -> Result<String> {
    let mut bytes = Vec::with_capacity(value.len());
    let mut rest = value.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail.get(..2).and_then(|h| std::str::from_utf8(h).ok());
            let escaped = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(escaped) = escaped else {
                bail!("a % not followed by two hex digits");
            };
            bytes.push(escaped);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).context("an address value is not UTF-8")
}

/// The socket of the first of `addresses` that accepts a connection.
fn connect(addresses: &str) -> Result<UnixStream> {
    let mut failures = Vec::new();
    for address in addresses.split(';').filter(|a| !a.is_empty()) {
        match socket_address(address).and_then(|a| Ok(UnixStream::connect_addr(&a)?)) {
            Ok(socket) => return Ok(socket),
            Err(e) => failures.push(format!("{address}: {e:#}")),
        }
    }
    match failures.is_empty() {
        true => bail!("no bus address in {addresses:?}"),
        false => bail!("cannot connect to {}", failures.join("; ")),
    }
}

/// SASL EXTERNAL, as sd-bus does it: without an identity, so that the bus takes the one the
/// kernel gives it (SO_PEERCRED). Claiming `euid` instead, as libdbus always does, is refused
/// from a user namespace: there the process's uid (0) is not the one the bus sees. A bus that
/// rejects the empty form is asked again with `euid`.
fn authenticate(socket: impl Read + Write, euid: u32) -> Result<()> {
    let mut socket = socket;
    // The credentials byte: the kernel's SO_PEERCRED says the rest on Linux.
    socket.write_all(b"\0AUTH EXTERNAL\r\n")?;
    let mut reply = read_line(&mut socket)?;
    if reply == "DATA" || reply.starts_with("DATA ") {
        socket.write_all(b"DATA\r\n")?;
        reply = read_line(&mut socket)?;
    }
    if reply.starts_with("REJECTED") {
        let hex: String = (euid.to_string().bytes())
            .map(|b| format!("{b:02x}"))
            .collect();
        socket.write_all(format!("AUTH EXTERNAL {hex}\r\n").as_bytes())?;
        reply = read_line(&mut socket)?;
    }
    ensure!(
        reply.starts_with("OK "),
        "the bus refused EXTERNAL authentication: {reply:?}"
    );
    socket.write_all(b"BEGIN\r\n")?;
    Ok(())
}

/// One line of the authentication protocol, without its CRLF. Read a byte at a time: the
/// bus sends nothing after OK until BEGIN, so nothing is read ahead.
fn read_line(socket: &mut impl Read) -> Result<String> {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        ensure!(line.len() < 1024, "an authentication line beyond 1 kB");
        let mut byte = [0u8];
        match socket.read(&mut byte) {
            Ok(0) => bail!("the bus closed the connection while authenticating"),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => bail!("no answer from the bus while authenticating"),
            Err(e) => return Err(e).context("reading from the bus"),
        }
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line).context("an authentication line is not UTF-8")
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;

    use super::*;

    /// A bus's side of the authentication: reads the client's lines and answers each with
    /// the next of `answers`; returns what the client sent.
    fn fake_bus(socket: UnixStream, answers: &'static [&'static str]) -> Vec<String> {
        let mut reader = std::io::BufReader::new(&socket);
        let mut nul = [0u8];
        reader.read_exact(&mut nul).unwrap();
        assert_eq!(nul, [0], "the credentials byte comes first");
        let mut sent = Vec::new();
        let mut answers = answers.iter();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 {
                return sent;
            }
            let line = line.strip_suffix("\r\n").expect("CRLF").to_string();
            let begin = line == "BEGIN";
            sent.push(line);
            if begin {
                return sent;
            }
            let answer = answers.next().expect("the client sent more than expected");
            (&socket)
                .write_all(format!("{answer}\r\n").as_bytes())
                .unwrap();
        }
    }

    fn exchange(answers: &'static [&'static str]) -> (Result<()>, Vec<String>) {
        let (client, server) = UnixStream::pair().unwrap();
        let bus = std::thread::spawn(move || fake_bus(server, answers));
        let result = authenticate(&client, 1000);
        drop(client);
        (result, bus.join().unwrap())
    }

    #[test]
    fn external_without_an_identity_lets_the_bus_use_the_peers_credentials() {
        let (result, sent) = exchange(&["DATA", "OK 0123456789abcdef0123456789abcdef"]);
        result.unwrap();
        assert_eq!(sent, ["AUTH EXTERNAL", "DATA", "BEGIN"]);
    }

    #[test]
    fn a_bus_that_rejects_the_empty_form_is_told_the_uid_in_hex() {
        let (result, sent) = exchange(&["REJECTED EXTERNAL", "OK 0123456789abcdef"]);
        result.unwrap();
        // "1000" as ASCII bytes in hex.
        assert_eq!(sent, ["AUTH EXTERNAL", "AUTH EXTERNAL 31303030", "BEGIN"]);
    }

    #[test]
    fn a_refusal_is_an_error_naming_the_reply() {
        let (result, sent) = exchange(&["DATA", "REJECTED EXTERNAL", "REJECTED EXTERNAL"]);
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("REJECTED"), "{err}");
        assert_eq!(
            sent,
            ["AUTH EXTERNAL", "DATA", "AUTH EXTERNAL 31303030"],
            "no BEGIN after a refusal"
        );
    }

    #[test]
    fn addresses_are_unix_paths_or_abstract_names_with_escapes() {
        let path = socket_address("unix:path=/run/user/1000/bus,guid=abc").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/user/1000/bus"))
        );
        let abs = socket_address("unix:guid=1,abstract=/tmp/dbus%2dX").unwrap();
        assert_eq!(abs.as_abstract_name(), Some(&b"/tmp/dbus-X"[..]));
        assert!(socket_address("tcp:host=localhost,port=1").is_err());
        assert!(socket_address("unix:tmpdir=/tmp").is_err());
        assert!(socket_address("unix:path=/a%2").is_err());
    }
}
