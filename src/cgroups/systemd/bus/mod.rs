//! berth's few calls to systemd's manager over D-Bus (`org.freedesktop.systemd1`).
//!
//! The client is berth's own (`connection`, `wire`): synchronous, no thread (berth stays
//! single-threaded when it clones the init), and the connection is a CLOEXEC socket that the
//! container never sees. It authenticates as sd-bus does, so that root in a user namespace
//! reaches the user's bus (see `connection::authenticate`).

mod connection;
mod wire;

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::properties::{Property, Value};
use connection::{Connection, MethodError};
use wire::{Call, Writer};

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// The bus itself (its name, path and interface), which tells who a connection's peer is.
const DBUS: &str = "org.freedesktop.DBus";
const DBUS_PATH: &str = "/org/freedesktop/DBus";
/// The system bus where $DBUS_SYSTEM_BUS_ADDRESS does not say otherwise (the spec's default).
const SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";
/// How long berth waits for a call and for a job, as runc.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What to do instead, in every error about reaching systemd.
const HINT: &str = "run without --systemd-cgroup to let berth manage cgroups itself";

pub struct Bus {
    conn: Connection,
}

/// A D-Bus error's name (`org.freedesktop.systemd1.NoSuchUnit`), looked up in an error chain.
fn dbus_error_name(err: &anyhow::Error) -> Option<&str> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<MethodError>())
        .map(|e| e.name.as_str())
}

/// A method of systemd's manager.
fn manager(member: &str) -> Call<'_> {
    Call {
        destination: SYSTEMD,
        path: MANAGER_PATH,
        interface: MANAGER,
        member,
    }
}

/// A method of the bus itself.
fn bus_driver(member: &str) -> Call<'_> {
    Call {
        destination: DBUS,
        path: DBUS_PATH,
        interface: DBUS,
        member,
    }
}

/// A body marshalled by `write`.
fn body(write: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::default();
    write(&mut w);
    w.into_bytes()
}

impl Bus {
    /// The system's systemd, or the user's (rootless) on the session bus as runc finds it:
    /// $DBUS_SESSION_BUS_ADDRESS, else $XDG_RUNTIME_DIR/bus.
    pub fn connect(user: bool) -> Result<Bus> {
        if !user && !std::path::Path::new("/run/systemd/system").is_dir() {
            bail!(
                "--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); {HINT}"
            );
        }
        let (address, bus) = if user {
            (user_bus_address()?, "the user's session bus")
        } else {
            (system_bus_address(), "the system bus")
        };
        let conn = Connection::open(&address, TIMEOUT).map_err(|e| {
            anyhow::anyhow!("--systemd-cgroup: cannot reach systemd on {bus}: {e:#}; {HINT}")
        })?;
        Ok(Bus { conn })
    }

    /// The uid of the systemd that serves the user's session bus, when one answers: the user
    /// whose instance it is (runc reads the same owner from `busctl --user status`).
    pub fn user_bus_systemd_uid() -> Option<u32> {
        let bus = Bus::connect(true).ok()?;
        let call = bus_driver("GetConnectionUnixUser");
        let reply = (bus.conn.call(&call, "s", &body(|w| w.str(SYSTEMD)))).ok()?;
        reply.body("u").and_then(|mut r| r.u32()).ok()
    }

    /// The cgroup of the systemd instance's own root: "/" for the system's, the user's
    /// `user@<uid>.service` for a user instance.
    pub fn manager_cgroup(&self) -> Result<String> {
        let get = Call {
            interface: "org.freedesktop.DBus.Properties",
            ..manager("Get")
        };
        let args = body(|w| {
            w.str(MANAGER);
            w.str("ControlGroup");
        });
        let cgroup = (self.conn.call(&get, "ss", &args))
            .and_then(|reply| {
                let mut r = reply.body("v")?;
                r.variant("s")?;
                r.str()
            })
            .context("asking systemd for its ControlGroup")?;
        Ok(if cgroup.is_empty() {
            "/".into()
        } else {
            cgroup
        })
    }

    /// StartTransientUnit, then waits until its job is done. A failed unit of the same name
    /// (left by an earlier container) is reset and the start tried once more, as runc does.
    pub fn start_transient_unit(&self, unit: &str, properties: &[Property]) -> Result<()> {
        self.watch_jobs()?;
        let args = body(|w| {
            w.str(unit);
            w.str("replace");
            write_properties(w, properties);
            // Auxiliary units (`a(sa(sv))`): none.
            w.array(8, |_| {});
        });
        let start = || -> Result<String> {
            let reply =
                (self.conn).call(&manager("StartTransientUnit"), "ssa(sv)a(sa(sv))", &args)?;
            reply.body("o")?.str()
        };
        let job = match start() {
            Err(e) if dbus_error_name(&e) == Some("org.freedesktop.systemd1.UnitExists") => {
                self.reset_failed(unit);
                start()
            }
            other => other,
        }
        .with_context(|| format!("systemd: starting unit {unit}"))?;
        match self.wait_for_job(&job)?.as_str() {
            "done" => Ok(()),
            result => {
                self.reset_failed(unit);
                bail!("systemd: starting unit {unit} failed: job result {result:?}")
            }
        }
    }

    /// StopUnit and waits for its job; a unit that does not exist (any more) is no error.
    pub fn stop_unit(&self, unit: &str) -> Result<()> {
        self.watch_jobs()?;
        let args = body(|w| {
            w.str(unit);
            w.str("replace");
        });
        let stop = (self.conn.call(&manager("StopUnit"), "ss", &args))
            .and_then(|reply| reply.body("o")?.str());
        match stop {
            Ok(job) => {
                let result = self.wait_for_job(&job)?;
                if result != "done" {
                    crate::logging::log(
                        crate::logging::Level::Warning,
                        &format!("systemd: stopping unit {unit}: job result {result:?}"),
                    );
                }
            }
            Err(e) if dbus_error_name(&e) == Some("org.freedesktop.systemd1.NoSuchUnit") => {}
            Err(e) => return Err(e).with_context(|| format!("systemd: stopping unit {unit}")),
        }
        self.reset_failed(unit);
        Ok(())
    }

    /// SetUnitProperties, at runtime only (nothing is written to /etc).
    pub fn set_unit_properties(&self, unit: &str, properties: &[Property]) -> Result<()> {
        let args = body(|w| {
            w.str(unit);
            w.bool(true);
            write_properties(w, properties);
        });
        (self
            .conn
            .call(&manager("SetUnitProperties"), "sba(sv)", &args))
        .with_context(|| format!("systemd: setting the properties of unit {unit}"))?;
        Ok(())
    }

    /// AttachProcessesToUnit: `pid` into the unit's own cgroup. A user's systemd asks the
    /// system's to do it where it may not itself.
    pub fn attach_process(&self, unit: &str, pid: u32) -> Result<()> {
        let args = body(|w| {
            w.str(unit);
            w.str("");
            w.array(4, |w| w.u32(pid));
        });
        (self
            .conn
            .call(&manager("AttachProcessesToUnit"), "ssau", &args))
        .with_context(|| format!("systemd: moving process {pid} into unit {unit}"))?;
        Ok(())
    }

    /// Lets systemd forget a failed unit, so the name can be used again.
    fn reset_failed(&self, unit: &str) {
        let args = body(|w| w.str(unit));
        let _ = self.conn.call(&manager("ResetFailedUnit"), "s", &args);
    }

    /// Asks for the manager's JobRemoved signals (systemd sends them to subscribers).
    fn watch_jobs(&self) -> Result<()> {
        let rule =
            format!("type='signal',sender='{SYSTEMD}',interface='{MANAGER}',member='JobRemoved'");
        (self
            .conn
            .call(&bus_driver("AddMatch"), "s", &body(|w| w.str(&rule))))
        .context("systemd: watching for job results")?;
        (self.conn.call(&manager("Subscribe"), "", &[]))
            .context("systemd: subscribing to job results")?;
        Ok(())
    }

    /// Reads signals until JobRemoved for `job` arrives; returns its result ("done", "failed",
    /// "timeout", ...).
    fn wait_for_job(&self, job: &str) -> Result<String> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let signal = (self.conn.next_signal(deadline))
                .with_context(|| format!("systemd: waiting for job {job}"))?;
            let is_job_removed = signal.interface.as_deref() == Some(MANAGER)
                && signal.member.as_deref() == Some("JobRemoved");
            if !is_job_removed {
                continue;
            }
            let (path, result) = job_removed(&signal).context("systemd: a JobRemoved signal")?;
            if path == job {
                return Ok(result);
            }
        }
    }
}

/// JobRemoved's job path and result, of its `(uoss)`: id, job, unit, result.
fn job_removed(signal: &wire::Message) -> Result<(String, String)> {
    let mut r = signal.body("uoss")?;
    r.u32()?;
    let path = r.str()?;
    r.str()?;
    Ok((path, r.str()?))
}

fn system_bus_address() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| SYSTEM_BUS.to_string())
}

fn user_bus_address() -> Result<String> {
    if let Some(address) = std::env::var("DBUS_SESSION_BUS_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty())
    {
        return Ok(address);
    }
    let runtime_dir = std::env::var("XDG_RUNTIME_DIR").unwrap_or_default();
    let socket = std::path::Path::new(&runtime_dir).join("bus");
    if runtime_dir.is_empty() || !socket.exists() {
        bail!(
            "--systemd-cgroup (rootless): no user session bus: DBUS_SESSION_BUS_ADDRESS is unset \
             and $XDG_RUNTIME_DIR/bus does not exist (install dbus-user-session); {HINT}"
        );
    }
    Ok(format!("unix:path={}", socket.display()))
}

/// Properties as StartTransientUnit and SetUnitProperties take them: `a(sv)`.
fn write_properties(w: &mut Writer, properties: &[Property]) {
    w.array(8, |w| {
        for (name, value) in properties {
            w.structure(|w| {
                w.str(name);
                write_variant(w, value);
            });
        }
    });
}

fn write_variant(w: &mut Writer, value: &Value) {
    match value {
        Value::Bool(b) => w.variant("b", |w| w.bool(*b)),
        Value::U64(n) => w.variant("t", |w| w.u64(*n)),
        Value::Str(s) => w.variant("s", |w| w.str(s)),
        Value::Strs(v) => w.variant("as", |w| w.array(4, |w| v.iter().for_each(|s| w.str(s)))),
        Value::Pids(v) => w.variant("au", |w| w.array(4, |w| v.iter().for_each(|p| w.u32(*p)))),
        Value::Bits(v) => w.variant("ay", |w| w.array(1, |w| v.iter().for_each(|b| w.byte(*b)))),
        Value::DeviceRules(v) => w.variant("a(ss)", |w| {
            w.array(8, |w| {
                for (device, access) in v {
                    w.structure(|w| {
                        w.str(device);
                        w.str(access);
                    });
                }
            })
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_are_an_array_of_name_and_variant() {
        let props = [
            ("PIDs", Value::Pids(vec![5])),
            (
                "DeviceAllow",
                Value::DeviceRules(vec![("d".into(), "r".into())]),
            ),
        ];
        let bytes = body(|w| write_properties(w, &props));
        #[rustfmt::skip]
        let expected = [
            70, 0, 0, 0, 0, 0, 0, 0, // a(sv): 70 bytes from offset 8
            4, 0, 0, 0, b'P', b'I', b'D', b's', 0, // s
            2, b'a', b'u', 0, 0, 0, 0, // v "au", padding to 24
            4, 0, 0, 0, 5, 0, 0, 0, // au: [5]
            11, 0, 0, 0, b'D', b'e', b'v', b'i', b'c', b'e', b'A', b'l', b'l', b'o', b'w', 0,
            5, b'a', b'(', b's', b's', b')', 0, 0, // v "a(ss)", padding to 56
            14, 0, 0, 0, 0, 0, 0, 0, // a(ss): 14 bytes from 64
            1, 0, 0, 0, b'd', 0, 0, 0, 1, 0, 0, 0, b'r', 0,
        ];
        assert_eq!(bytes, expected);
    }
}
