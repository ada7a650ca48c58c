//! berth's few calls to systemd's manager over D-Bus (`org.freedesktop.systemd1`).
//!
//! libdbus (the `dbus` crate, built in) is synchronous and starts no thread: berth stays
//! single-threaded when it clones the init, and the connection is a CLOEXEC socket that the
//! container never sees.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use dbus::arg::{RefArg, Variant};
use dbus::blocking::stdintf::org_freedesktop_dbus::Properties;
use dbus::blocking::{Connection, Proxy};
use dbus::channel::{BusType, Channel};
use dbus::message::MessageType;

use super::properties::{Property, Value};

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// The bus itself (its name and interface), which tells who a connection's peer is.
const DBUS: &str = "org.freedesktop.DBus";
/// How long berth waits for a call and for a job, as runc.
const TIMEOUT: Duration = Duration::from_secs(30);

/// What to do instead, in every error about reaching systemd.
const HINT: &str = "run without --systemd-cgroup to let berth manage cgroups itself";

/// Properties as StartTransientUnit and SetUnitProperties take them: `a(sv)`.
type PropertyArgs<'a> = Vec<(&'a str, Variant<Box<dyn RefArg>>)>;

pub struct Bus {
    conn: Connection,
}

/// A D-Bus error's name (`org.freedesktop.systemd1.NoSuchUnit`), looked up in an error chain.
fn dbus_error_name(err: &anyhow::Error) -> Option<&str> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<dbus::Error>())
        .and_then(|e| e.name())
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
        let channel = if user {
            let address = user_bus_address()?;
            Channel::open_private(&address).and_then(|mut c| c.register().map(|()| c))
        } else {
            Channel::get_private(BusType::System)
        };
        let channel = channel.map_err(|e| {
            let bus = if user {
                "the user's session bus"
            } else {
                "the system bus"
            };
            anyhow::anyhow!(
                "--systemd-cgroup: cannot reach systemd on {bus}: {}; {HINT}",
                e.message().unwrap_or("no reason given")
            )
        })?;
        Ok(Bus {
            conn: Connection::from(channel),
        })
    }

    /// The uid of the systemd that serves the user's session bus, when one answers: the user
    /// whose instance it is (runc reads the same owner from `busctl --user status`).
    pub fn user_bus_systemd_uid() -> Option<u32> {
        let bus = Bus::connect(true).ok()?;
        let driver = (bus.conn).with_proxy(DBUS, "/org/freedesktop/DBus", TIMEOUT);
        let (uid,) = (driver.method_call(DBUS, "GetConnectionUnixUser", (SYSTEMD,))).ok()?;
        Some(uid)
    }

    fn manager(&self) -> Proxy<'_, &Connection> {
        self.conn.with_proxy(SYSTEMD, MANAGER_PATH, TIMEOUT)
    }

    /// The cgroup of the systemd instance's own root: "/" for the system's, the user's
    /// `user@<uid>.service` for a user instance.
    pub fn manager_cgroup(&self) -> Result<String> {
        let cgroup: String = (self.manager().get(MANAGER, "ControlGroup"))
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
        let props = property_args(properties);
        // Auxiliary units (`a(sa(sv))`): none.
        let aux: Vec<(&str, PropertyArgs)> = Vec::new();
        let start = || -> Result<dbus::Path<'static>> {
            let (job,) = self.manager().method_call(
                MANAGER,
                "StartTransientUnit",
                (unit, "replace", &props, &aux),
            )?;
            Ok(job)
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
        let stop: Result<(dbus::Path<'static>,), dbus::Error> =
            self.manager()
                .method_call(MANAGER, "StopUnit", (unit, "replace"));
        match stop {
            Ok((job,)) => {
                let result = self.wait_for_job(&job)?;
                if result != "done" {
                    crate::logging::log(
                        crate::logging::Level::Warning,
                        &format!("systemd: stopping unit {unit}: job result {result:?}"),
                    );
                }
            }
            Err(e) if e.name() == Some("org.freedesktop.systemd1.NoSuchUnit") => {}
            Err(e) => return Err(e).with_context(|| format!("systemd: stopping unit {unit}")),
        }
        self.reset_failed(unit);
        Ok(())
    }

    /// SetUnitProperties, at runtime only (nothing is written to /etc).
    pub fn set_unit_properties(&self, unit: &str, properties: &[Property]) -> Result<()> {
        let props = property_args(properties);
        let () = self
            .manager()
            .method_call(MANAGER, "SetUnitProperties", (unit, true, props))
            .with_context(|| format!("systemd: setting the properties of unit {unit}"))?;
        Ok(())
    }

    /// AttachProcessesToUnit: `pid` into the unit's own cgroup. A user's systemd asks the
    /// system's to do it where it may not itself.
    pub fn attach_process(&self, unit: &str, pid: u32) -> Result<()> {
        let () = self
            .manager()
            .method_call(MANAGER, "AttachProcessesToUnit", (unit, "", vec![pid]))
            .with_context(|| format!("systemd: moving process {pid} into unit {unit}"))?;
        Ok(())
    }

    /// Lets systemd forget a failed unit, so the name can be used again.
    fn reset_failed(&self, unit: &str) {
        let _: Result<(), dbus::Error> =
            self.manager()
                .method_call(MANAGER, "ResetFailedUnit", (unit,));
    }

    /// Asks for the manager's JobRemoved signals (systemd sends them to subscribers).
    fn watch_jobs(&self) -> Result<()> {
        let rule =
            format!("type='signal',sender='{SYSTEMD}',interface='{MANAGER}',member='JobRemoved'");
        self.conn
            .add_match_no_cb(&rule)
            .context("systemd: watching for job results")?;
        let () = (self.manager().method_call(MANAGER, "Subscribe", ()))
            .context("systemd: subscribing to job results")?;
        Ok(())
    }

    /// Reads messages until JobRemoved for `job` arrives; returns its result ("done", "failed",
    /// "timeout", ...).
    fn wait_for_job(&self, job: &dbus::Path) -> Result<String> {
        let deadline = Instant::now() + TIMEOUT;
        let channel = self.conn.channel();
        loop {
            while let Some(message) = channel.pop_message() {
                let is_job_removed = message.msg_type() == MessageType::Signal
                    && message.member().as_deref() == Some("JobRemoved");
                if !is_job_removed {
                    continue;
                }
                let (_id, path, _unit, result): (u32, dbus::Path, String, String) = message
                    .read4()
                    .context("systemd: reading a JobRemoved signal")?;
                if path == *job {
                    return Ok(result);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("systemd: timed out after {TIMEOUT:?} waiting for job {job}");
            }
            if channel.read_write(Some(left)).is_err() {
                bail!("systemd: the D-Bus connection closed while waiting for job {job}");
            }
        }
    }
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

fn property_args(properties: &[Property]) -> PropertyArgs<'_> {
    (properties.iter())
        .map(|(name, value)| (*name, variant(value)))
        .collect()
}

fn variant(value: &Value) -> Variant<Box<dyn RefArg>> {
    Variant(match value {
        Value::Bool(b) => Box::new(*b),
        Value::U64(n) => Box::new(*n),
        Value::Str(s) => Box::new(s.clone()),
        Value::Strs(v) => Box::new(v.clone()),
        Value::Pids(v) => Box::new(v.clone()),
        Value::Bits(v) => Box::new(v.clone()),
        Value::DeviceRules(v) => Box::new(v.clone()),
    })
}
