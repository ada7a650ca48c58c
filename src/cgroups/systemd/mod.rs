//! The systemd driver (`--systemd-cgroup`): the container's cgroup is a transient unit that
//! systemd makes and removes, as runc and crun do on systemd hosts.
//!
//! `linux.cgroupsPath` is `slice:prefix:name` (see [`Unit`]). berth connects to systemd when
//! it plans the container (before anything is made, so an unreachable systemd changes
//! nothing), starts the scope with the init's pid and the resource properties systemd owns
//! when the init joins, waits for the job, then writes every resource to the unit's cgroup
//! files with the writers the cgroupfs driver uses. `update` sets the properties first;
//! `delete` stops the unit. Rootless, the user's instance on the session bus.

mod bus;
mod properties;
mod unit;

use std::cell::{OnceCell, RefCell};

use anyhow::{Result, bail};
use oci_spec::runtime::LinuxResources;

pub use unit::Unit;

use super::layout::{self, Layout};
use super::{CgroupHandle, Version, hierarchy};
use bus::Bus;
use properties::{Property, Value};

/// The unit of one container, and the bus to its systemd (connected when first needed).
pub struct Session {
    unit: Unit,
    bus: OnceCell<Bus>,
    /// For a new container: the resources to start the unit with, once the init exists
    /// (a scope needs a process). None once started, and for existing containers.
    awaiting_init: RefCell<Option<LinuxResources>>,
}

/// Plans the container's cgroup: the unit's cgroup, below the systemd instance's own, in
/// every hierarchy.
pub fn plan(
    cgroups_path: Option<&str>,
    container_id: &str,
    rootless: bool,
) -> Result<(CgroupHandle, Session)> {
    let user = asks_the_users_systemd(rootless);
    let unit = Unit::from_cgroups_path(cgroups_path, container_id, user)?;
    let layout = Layout::detect()?;
    if user && !matches!(layout, Layout::V2 { .. }) {
        // systemd delegates no v1 controller to a user's instance; runc refuses this too.
        bail!(
            "--systemd-cgroup for a rootless container needs cgroup v2: the user's systemd \
             cannot delegate cgroup v1 controllers; run without --systemd-cgroup"
        );
    }
    let bus = Bus::connect(user)?;
    let cgroup = layout::clean_cgroup_path(&format!("{}/{}", bus.manager_cgroup()?, unit.cgroup()));
    let (hierarchy, dirs) = hierarchy::place(&layout, |_| Ok(cgroup.clone()))?;
    let handle = CgroupHandle {
        hierarchy,
        cgroups_path: cgroup,
        dirs,
        rootless: false,
        systemd: Some(unit.clone()),
    };
    let session = Session {
        unit,
        bus: OnceCell::from(bus),
        awaiting_init: RefCell::new(Some(LinuxResources::default())),
    };
    Ok((handle, session))
}

/// Whether the unit is the user's systemd's rather than the system's, as runc decides: a
/// rootless berth's is, except as root in a user namespace, which may be the root of a system
/// container that runs its own systemd: there only when the user's session bus answers with a
/// systemd that is not root's. Rootless podman runs the runtime so, as the user's root: the bus
/// knows berth as that user (see `bus::connection`), whose systemd then answers.
fn asks_the_users_systemd(rootless: bool) -> bool {
    let root_in_user_namespace =
        nix::unistd::geteuid().is_root() && crate::rootless::in_user_namespace();
    rootless && (!root_in_user_namespace || Bus::user_bus_systemd_uid().is_some_and(|uid| uid != 0))
}

impl Session {
    /// The unit of an existing container.
    pub fn existing(unit: &Unit) -> Session {
        Session {
            unit: unit.clone(),
            bus: OnceCell::new(),
            awaiting_init: RefCell::new(None),
        }
    }

    fn bus(&self) -> Result<&Bus> {
        if self.bus.get().is_none() {
            let _ = self.bus.set(Bus::connect(self.unit.user)?);
        }
        Ok(self.bus.get().expect("connected just above"))
    }

    /// Keeps `resources` for the start of the unit when it is not started yet; false when it
    /// runs already (the caller writes them).
    pub fn defer_until_started(&self, resources: &LinuxResources) -> bool {
        let mut awaiting = self.awaiting_init.borrow_mut();
        match awaiting.as_mut() {
            Some(pending) => {
                *pending = resources.clone();
                true
            }
            None => false,
        }
    }

    /// The resources to start the unit with, when `pid` is the container's first process.
    pub fn take_start_resources(&self) -> Option<LinuxResources> {
        self.awaiting_init.borrow_mut().take()
    }

    /// Starts the unit with `pid` in it and `resources` (set fields only) as its properties.
    pub fn start(&self, pid: i32, resources: &LinuxResources, version: Version) -> Result<()> {
        let mut props = self.unit_properties(pid, version);
        let limits = properties::of_resources(resources, version)?;
        // Unasked, systemd would give the scope its DefaultTasksMax: a container has no task
        // limit unless its config sets one, whichever the driver.
        if !limits.iter().any(|(name, _)| *name == "TasksMax") {
            props.push(("TasksMax", Value::U64(u64::MAX)));
        }
        props.extend(limits);
        self.bus()?.start_transient_unit(&self.unit.name, &props)
    }

    /// `update`: the properties for the set fields of `resources`.
    pub fn update(&self, resources: &LinuxResources, version: Version) -> Result<()> {
        let props = properties::of_resources(resources, version)?;
        if props.is_empty() {
            return Ok(());
        }
        self.bus()?.set_unit_properties(&self.unit.name, &props)
    }

    /// Connects now, while berth can: the error, if any, comes back from the first call.
    pub fn connect_if_possible(&self) {
        let _ = self.bus();
    }

    /// Has systemd move `pid` into the unit's cgroup.
    pub fn attach(&self, pid: i32) -> Result<()> {
        self.bus()?
            .attach_process(&self.unit.name, pid.unsigned_abs())
    }

    pub fn stop(&self) -> Result<()> {
        self.bus()?.stop_unit(&self.unit.name)
    }

    /// What every container unit has, as runc sets it: delegated (the container may manage
    /// its own sub-cgroups), no implicit dependencies, accounting on.
    fn unit_properties(&self, pid: i32, version: Version) -> Vec<Property> {
        let unit = &self.unit;
        let mut props: Vec<Property> = vec![(
            "Description",
            Value::Str(format!("berth container {}", unit.name)),
        )];
        if unit.is_slice() {
            // A slice holds no process: the init joins it through cgroup.procs.
            props.push(("Wants", Value::Strs(vec![unit.slice.clone()])));
        } else {
            props.push(("Slice", Value::Str(unit.slice.clone())));
            props.push(("Delegate", Value::Bool(true)));
            props.push(("PIDs", Value::Pids(vec![pid.unsigned_abs()])));
        }
        let io_accounting = match version {
            Version::V1 => "BlockIOAccounting",
            Version::V2 => "IOAccounting",
        };
        for accounting in [
            "MemoryAccounting",
            "CPUAccounting",
            io_accounting,
            "TasksAccounting",
        ] {
            props.push((accounting, Value::Bool(true)));
        }
        props.push(("DefaultDependencies", Value::Bool(false)));
        props
    }
}
