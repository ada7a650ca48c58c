//! `linux.netDevices` (runtime-spec 1.3): host network interfaces moved into the container's
//! network namespace, renamed when asked, with their permanent global addresses, and up.
//!
//! As runc does it: `create` moves them after the clone, before the init goes on (the new
//! namespace exists from the clone on; a joined one is known by its fd), each in one
//! RTM_NEWLINK that renames and moves at once, after setting it down on the host. The kernel
//! drops an interface's addresses when it changes namespace, so they are read first and added
//! again inside (only IFA_F_PERMANENT ones of global scope: the others belong to the host).
//!
//! Nothing moves them back: as the spec requires (and runc does), their lifetime is the
//! namespace's. When it goes, the kernel returns physical interfaces to the host and destroys
//! virtual ones (veth, dummy, macvlan...).

mod netlink;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use anyhow::{Context, Result, bail};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use nix::unistd::Pid;
use oci_spec::runtime::{Linux, LinuxNamespaceType, Spec};

use netlink::RouteSocket;

/// IFNAMSIZ less the terminating NUL.
const MAX_NAME_LEN: usize = 15;

/// The interfaces to move: host name → name in the container.
pub struct NetDevices(BTreeMap<String, String>);

/// What the config asks, checked without the host: valid names, no two interfaces given the
/// same name, and a network namespace of the container's own to move them to.
pub fn validate(spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let Some(devices) = NetDevices::of(linux)? else {
        return Ok(());
    };
    let has_network_namespace =
        (linux.namespaces().iter().flatten()).any(|ns| ns.typ() == LinuxNamespaceType::Network);
    if !has_network_namespace {
        bail!("linux.netDevices: the container has no network namespace to move them to");
    }
    let mut targets = BTreeMap::new();
    for (host, container) in &devices.0 {
        if let Some(other) = targets.insert(container, host) {
            bail!("linux.netDevices: {other} and {host} would both be named {container}");
        }
    }
    Ok(())
}

impl NetDevices {
    /// The config's interfaces, names checked as the kernel checks them.
    fn of(linux: &Linux) -> Result<Option<NetDevices>> {
        let Some(config) = linux.net_devices().as_ref().filter(|d| !d.is_empty()) else {
            return Ok(None);
        };
        let mut devices = BTreeMap::new();
        for (host, device) in config {
            check_name(host).with_context(|| format!("linux.netDevices: {host:?}"))?;
            let container = device.name().clone().unwrap_or_else(|| host.clone());
            check_name(&container)
                .with_context(|| format!("linux.netDevices.{host}.name: {container:?}"))?;
            devices.insert(host.clone(), container);
        }
        Ok(Some(NetDevices(devices)))
    }

    /// The interfaces `create` moves, with what only this host can tell checked before
    /// anything is created: berth may move interfaces (not rootless, as with runc) and each one
    /// exists.
    pub fn plan(linux: &Linux, rootless: bool) -> Result<Option<NetDevices>> {
        let devices = NetDevices::of(linux)?;
        if let Some(devices) = &devices {
            devices.check_host(rootless)?;
        }
        Ok(devices)
    }

    fn check_host(&self, rootless: bool) -> Result<()> {
        if rootless {
            bail!("linux.netDevices: a rootless container cannot move network interfaces");
        }
        for host in self.0.keys() {
            netlink::require_interface(host).context("linux.netDevices")?;
        }
        Ok(())
    }

    /// Moves every interface into the container's network namespace: `joined`, or else the
    /// new one the init was cloned into. Called single-threaded, before the init goes on.
    pub fn move_into_container(&self, joined: Option<BorrowedFd>, init: Pid) -> Result<()> {
        let opened;
        let netns = match joined {
            Some(fd) => fd,
            None => {
                let path = format!("/proc/{init}/ns/net");
                opened = std::fs::File::open(&path).with_context(|| format!("opening {path}"))?;
                opened.as_fd()
            }
        };
        let mut host = RouteSocket::open()?;
        let mut container = RouteSocket::open_in(netns)?;
        for (host_name, container_name) in &self.0 {
            move_interface(&mut host, &mut container, netns, host_name, container_name)
                .with_context(|| format!("linux.netDevices: moving {host_name}"))?;
        }
        Ok(())
    }
}

/// The kernel's dev_valid_name, plus the length limit.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        bail!("an interface name has 1 to {MAX_NAME_LEN} bytes");
    }
    if name == "."
        || name == ".."
        || name.contains(['/', ':'])
        || name.contains(char::is_whitespace)
    {
        bail!("not a valid interface name");
    }
    Ok(())
}

fn move_interface(
    host: &mut RouteSocket,
    container: &mut RouteSocket,
    netns: BorrowedFd,
    host_name: &str,
    container_name: &str,
) -> Result<()> {
    // The kernel moves it first and renames it after: a taken name would fail half-way.
    if !container_name.contains("%d") && link_by_name(container, container_name).is_ok() {
        bail!("the container's network namespace already has an interface {container_name}");
    }
    let index = netlink::require_interface(host_name)?;
    let addresses = permanent_global_addresses(host, index)?;
    let was_up = link(host, index)?.header.flags.contains(LinkFlags::Up);
    // Down first, so that nothing on the host uses it half-way.
    set_up(host, index, false).context("setting it down")?;
    let mut change = LinkMessage::default();
    change.header.index = index;
    change.attributes = vec![
        LinkAttribute::IfName(container_name.to_string()),
        LinkAttribute::NetNsFd(netns.as_raw_fd()),
    ];
    if let Err(err) = host.request(RouteNetlinkMessage::NewLink(change)) {
        if was_up {
            let _ = set_up(host, index, true);
        }
        return Err(err).context(format!(
            "into the container's namespace as {container_name}"
        ));
    }
    let moved = find_moved(container, index, container_name)?;
    for mut address in addresses {
        address.header.index = moved;
        container
            .request(RouteNetlinkMessage::NewAddress(address))
            .context("adding its address in the container's namespace")?;
    }
    set_up(container, moved, true).context("setting it up in the container's namespace")
}

/// The interface's permanent addresses of global scope (RFC 3549 2.3.3.2), as requests to add
/// them again: address, local address and broadcast kept; the label (it names the interface),
/// lifetimes and flags not.
fn permanent_global_addresses(host: &mut RouteSocket, index: u32) -> Result<Vec<AddressMessage>> {
    let answers = host
        .dump(RouteNetlinkMessage::GetAddress(AddressMessage::default()))
        .context("listing its addresses")?;
    let addresses = answers.into_iter().filter_map(|answer| match answer {
        RouteNetlinkMessage::NewAddress(address) if address.header.index == index => Some(address),
        _ => None,
    });
    Ok(addresses
        .filter(|address| address.header.scope == AddressScope::Universe && is_permanent(address))
        .map(|address| {
            let mut copy = AddressMessage::default();
            copy.header.family = address.header.family;
            copy.header.prefix_len = address.header.prefix_len;
            copy.attributes = (address.attributes.into_iter())
                .filter(|attribute| {
                    matches!(
                        attribute,
                        AddressAttribute::Address(_)
                            | AddressAttribute::Local(_)
                            | AddressAttribute::Broadcast(_)
                    )
                })
                .collect();
            copy
        })
        .collect())
}

/// IFA_FLAGS when the kernel sent it (it holds all 32 bits), else the header's 8.
fn is_permanent(address: &AddressMessage) -> bool {
    let extended = address
        .attributes
        .iter()
        .find_map(|attribute| match attribute {
            AddressAttribute::Flags(flags) => Some(flags.contains(AddressFlags::Permanent)),
            _ => None,
        });
    extended.unwrap_or(address.header.flags.contains(AddressHeaderFlags::Permanent))
}

/// The interface's index in the container's namespace: the kernel keeps the index unless it is
/// taken there. A `%d` name is the kernel's to complete, so the interface is found by its index.
fn find_moved(container: &mut RouteSocket, index: u32, name: &str) -> Result<u32> {
    let Some((prefix, suffix)) = name.split_once("%d") else {
        return link_by_name(container, name)
            .map(|found| found.header.index)
            .with_context(|| format!("finding {name} in the container's namespace"));
    };
    let found = link(container, index)
        .ok()
        .and_then(|found| interface_name(&found));
    match found {
        Some(found) if found.starts_with(prefix) && found.ends_with(suffix) => Ok(index),
        _ => bail!("cannot find the interface named after {name} in the container's namespace"),
    }
}

fn link(socket: &mut RouteSocket, index: u32) -> Result<LinkMessage> {
    let mut query = LinkMessage::default();
    query.header.index = index;
    single_link(socket.request(RouteNetlinkMessage::GetLink(query)))
}

fn link_by_name(socket: &mut RouteSocket, name: &str) -> Result<LinkMessage> {
    let mut query = LinkMessage::default();
    query.attributes = vec![LinkAttribute::IfName(name.to_string())];
    single_link(socket.request(RouteNetlinkMessage::GetLink(query)))
}

fn single_link(answer: std::io::Result<Vec<RouteNetlinkMessage>>) -> Result<LinkMessage> {
    let answer = answer.context("RTM_GETLINK")?;
    answer
        .into_iter()
        .find_map(|message| match message {
            RouteNetlinkMessage::NewLink(link) => Some(link),
            _ => None,
        })
        .context("RTM_GETLINK: no interface in the answer")
}

fn interface_name(link: &LinkMessage) -> Option<String> {
    link.attributes
        .iter()
        .find_map(|attribute| match attribute {
            LinkAttribute::IfName(name) => Some(name.clone()),
            _ => None,
        })
}

fn set_up(socket: &mut RouteSocket, index: u32, up: bool) -> std::io::Result<()> {
    let mut change = LinkMessage::default();
    change.header.index = index;
    change.header.flags = if up {
        LinkFlags::Up
    } else {
        LinkFlags::empty()
    };
    change.header.change_mask = LinkFlags::Up;
    socket
        .request(RouteNetlinkMessage::NewLink(change))
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(linux: serde_json::Value) -> Spec {
        let mut json = serde_json::to_value(crate::spec::default_spec(false)).unwrap();
        for (key, value) in linux.as_object().unwrap() {
            json["linux"][key] = value.clone();
        }
        serde_json::from_value(json).unwrap()
    }

    fn error(linux: serde_json::Value) -> String {
        format!("{:#}", validate(&spec(linux)).unwrap_err())
    }

    #[test]
    fn names_follow_the_kernel_rules() {
        for good in ["eth0", "a-b_c.d", "net%d", "fifteen-bytes-x"] {
            check_name(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-bytes-xy"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let err = error(serde_json::json!({"netDevices": {"eth0": {"name": "a b"}}}));
        assert_eq!(
            err,
            "linux.netDevices.eth0.name: \"a b\": not a valid interface name"
        );
    }

    #[test]
    fn two_interfaces_may_not_get_one_name() {
        let err = error(serde_json::json!({"netDevices": {"eth0": {"name": "x"}, "x": {}}}));
        assert_eq!(err, "linux.netDevices: eth0 and x would both be named x");
    }

    #[test]
    fn a_network_namespace_is_required() {
        let err = error(serde_json::json!({
            "netDevices": {"eth0": {}},
            "namespaces": [{"type": "mount"}, {"type": "pid"}],
        }));
        assert!(err.contains("no network namespace"), "{err}");
        validate(&spec(serde_json::json!({"netDevices": {"eth0": {}}}))).unwrap();
    }
}
