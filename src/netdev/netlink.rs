//! A synchronous rtnetlink socket: one request at a time, its acknowledgement or its dump.
//! Messages are built and parsed by `netlink-packet-route`; the socket is nix's.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result, bail};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    socket,
};

/// Big enough for one datagram of a dump (the kernel fills at most 32 KiB per read).
const RECEIVE_BUFFER: usize = 64 * 1024;

/// A NETLINK_ROUTE socket of one network namespace (the one it was opened in, for good).
pub struct RouteSocket {
    fd: OwnedFd,
    sequence: u32,
}

impl RouteSocket {
    /// A socket in the caller's network namespace.
    pub fn open() -> Result<RouteSocket> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )
        .context("socket(NETLINK_ROUTE)")?;
        bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).context("bind(NETLINK_ROUTE)")?;
        Ok(RouteSocket { fd, sequence: 0 })
    }

    /// A socket in the network namespace `netns`: the caller enters it for the socket() call
    /// only. Must be called single-threaded (setns changes the calling thread).
    pub fn open_in(netns: BorrowedFd) -> Result<RouteSocket> {
        let own = std::fs::File::open("/proc/thread-self/ns/net")
            .context("opening /proc/thread-self/ns/net")?;
        setns(netns, CloneFlags::CLONE_NEWNET).context("setns into the network namespace")?;
        let socket = RouteSocket::open();
        setns(own.as_fd(), CloneFlags::CLONE_NEWNET)
            .context("setns back into the runtime's network namespace")?;
        socket
    }

    /// Sends `message` and returns the kernel's answers up to its acknowledgement.
    pub fn request(
        &mut self,
        message: RouteNetlinkMessage,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.send(message, NLM_F_REQUEST | NLM_F_ACK)?;
        self.receive_until_done()
    }

    /// Sends a dump request and returns every message of the answer.
    pub fn dump(&mut self, message: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.send(message, NLM_F_REQUEST | NLM_F_DUMP)?;
        self.receive_until_done()
    }

    fn send(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.sequence += 1;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        send(self.fd.as_raw_fd(), &bytes, MsgFlags::empty())?;
        Ok(())
    }

    /// Reads answers to the last request until its acknowledgement (an error message with
    /// code 0), its end of dump, or an error.
    fn receive_until_done(&self) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut messages = Vec::new();
        let mut buffer = vec![0; RECEIVE_BUFFER];
        loop {
            let len = recv(self.fd.as_raw_fd(), &mut buffer, MsgFlags::empty())?;
            let mut rest = &buffer[..len];
            while !rest.is_empty() {
                let packet = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let size = (packet.header.length as usize).min(rest.len());
                rest = &rest[align(size).min(rest.len())..];
                if packet.header.sequence_number != self.sequence {
                    continue;
                }
                match packet.payload {
                    NetlinkPayload::InnerMessage(message) => messages.push(message),
                    NetlinkPayload::Error(error) if error.code.is_none() => return Ok(messages),
                    NetlinkPayload::Error(error) => return Err(error.to_io()),
                    NetlinkPayload::Done(_) => return Ok(messages),
                    _ => {}
                }
            }
        }
    }
}

/// Netlink messages start on 4-byte boundaries.
fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// The index of the caller's namespace's interface `name`; the error names it.
pub fn require_interface(name: &str) -> Result<u32> {
    match nix::net::if_::if_nametoindex(name) {
        Ok(index) => Ok(index),
        Err(nix::errno::Errno::ENODEV) => bail!("no network interface {name} on the host"),
        Err(e) => Err(e).with_context(|| format!("looking up network interface {name}")),
    }
}
