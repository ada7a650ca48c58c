//! INTERIM: minimal process setup until the process module lands.

use std::convert::Infallible;
use std::ffi::CString;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::Process;

pub fn apply(process: &Process) -> Result<()> {
    nix::unistd::chdir(process.cwd()).context("chdir")?;
    Ok(())
}

pub fn exec(process: &Process) -> Result<Infallible> {
    let args: Vec<CString> = process
        .args()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| CString::new(a).unwrap())
        .collect();
    let env: Vec<CString> = process
        .env()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|a| CString::new(a).unwrap())
        .collect();
    let program = args[0].to_str()?.to_string();
    let candidates: Vec<String> = if program.contains('/') {
        vec![program.clone()]
    } else {
        [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ]
        .iter()
        .map(|d| format!("{d}/{program}"))
        .collect()
    };
    for c in candidates {
        let c = CString::new(c)?;
        let _ = nix::unistd::execve(&c, &args, &env);
    }
    bail!("exec {program:?}: executable file not found in $PATH")
}

pub mod console {
    use std::os::fd::BorrowedFd;
    use std::path::Path;

    use anyhow::{Result, bail};

    pub struct Pty {
        pub slave: String,
    }

    pub fn open_pty(_size: Option<&oci_spec::runtime::Box>) -> Result<Pty> {
        bail!("terminal not supported yet")
    }

    pub fn send_master(_socket: BorrowedFd, _pty: &Pty) -> Result<()> {
        bail!("terminal not supported yet")
    }

    pub fn attach_slave(_slave: &Path) -> Result<()> {
        bail!("terminal not supported yet")
    }
}

#[derive(clap::Args, Debug)]
pub struct ExecOptions {
    #[arg(short, long)]
    pub process: Option<std::path::PathBuf>,
    #[arg(short, long)]
    pub tty: bool,
}

pub fn exec_process(opts: &ExecOptions, args: &[String], base: &Process) -> Result<Process> {
    if let Some(path) = &opts.process {
        let text = std::fs::read_to_string(path)?;
        return Ok(serde_json::from_str(&text)?);
    }
    let mut p = base.clone();
    p.set_args(Some(args.to_vec()));
    p.set_terminal(Some(opts.tty));
    Ok(p)
}
