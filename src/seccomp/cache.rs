//! Compiled filters kept on disk per profile: libseccomp takes tens of milliseconds for a
//! Docker-sized profile (mostly generating the multi-arch BPF), while hosts run the same few
//! profiles over and over. A hit costs serializing the profile and reading one small file.
//!
//! Entries are found by a hash but trusted only after comparing the whole key (format
//! version, libseccomp version, native arch and the profile's JSON) byte for byte, so a hash
//! collision is only a miss. The directory must be as trusted as the runtime's state.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libseccomp::{ScmpArch, ScmpVersion};
use oci_spec::runtime::LinuxSeccomp;

use super::compile::{Filter, compile};
use crate::atomic_write::write_atomically;

/// Bumped whenever the same profile compiles to a different program (v2: the -ENOSYS stub
/// always covers the native architecture), so that no stale program outlives an upgrade.
const FORMAT: &[u8] = b"berth-seccomp-cache-v2\0";

/// Like `compile`, but reuses a program compiled earlier for the same profile from
/// `cache_dir`, and stores new ones there. Cache trouble never fails the container: a
/// broken entry is recompiled and an unwritable directory only costs the next start.
pub fn compile_cached(config: &LinuxSeccomp, cache_dir: &Path) -> Result<Filter> {
    let key = cache_key(config)?;
    let path = entry_path(cache_dir, &key);
    if let Some(filter) = read_entry(&path, &key) {
        return Ok(filter);
    }
    let filter = compile(config)?;
    // An unwritable cache must not stop a container that compiled fine.
    let _ = write_entry(cache_dir, &path, &key, &filter);
    Ok(filter)
}

fn cache_key(config: &LinuxSeccomp) -> Result<Vec<u8>> {
    let library = ScmpVersion::current().context("querying the libseccomp version")?;
    let mut key = FORMAT.to_vec();
    key.extend(format!("{library:?}\0{:?}\0", ScmpArch::native()).bytes());
    serde_json::to_writer(&mut key, config).context("serializing linux.seccomp")?;
    Ok(key)
}

fn entry_path(cache_dir: &Path, key: &[u8]) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    cache_dir.join(format!("{:016x}.bpf", hasher.finish()))
}

/// Entry layout: key length (u64, little endian), key, then `Filter::to_bytes`.
fn read_entry(path: &Path, key: &[u8]) -> Option<Filter> {
    let bytes = fs::read(path).ok()?;
    let (len, rest) = bytes.split_first_chunk::<8>()?;
    let (stored_key, filter) =
        rest.split_at_checked(usize::try_from(u64::from_le_bytes(*len)).ok()?)?;
    (stored_key == key)
        .then(|| Filter::from_bytes(filter))
        .flatten()
}

fn write_entry(cache_dir: &Path, path: &Path, key: &[u8], filter: &Filter) -> Result<()> {
    fs::create_dir_all(cache_dir)?;
    let mut entry = (key.len() as u64).to_le_bytes().to_vec();
    entry.extend_from_slice(key);
    entry.extend(filter.to_bytes());
    // So that a concurrent reader never sees half an entry.
    write_atomically(path, &entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A scratch cache directory, removed even when the test fails.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("berth-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn profile(errno: u32) -> LinuxSeccomp {
        serde_json::from_value(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno}]}))
        .expect("profile")
    }

    fn only_entry(dir: &Path) -> PathBuf {
        let entries: Vec<_> = fs::read_dir(dir).expect("cache dir").flatten().collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries[0].path()
    }

    #[test]
    fn second_compile_of_a_profile_reads_the_stored_program() {
        let dir = TempDir::new("seccomp-cache-hit");
        let compiled = compile_cached(&profile(11), &dir.0).expect("compiles");
        let entry = only_entry(&dir.0);
        // Tamper with the stored flags: a hit must return exactly what is stored.
        let mut bytes = fs::read(&entry).expect("entry");
        let flags_at = bytes.len() - compiled.to_bytes().len();
        bytes[flags_at] ^= libc::SECCOMP_FILTER_FLAG_LOG as u8;
        fs::write(&entry, &bytes).expect("rewrite entry");
        let cached = compile_cached(&profile(11), &dir.0).expect("hit");
        assert_ne!(cached.to_bytes(), compiled.to_bytes());
        assert_eq!(cached.to_bytes(), bytes[flags_at..]);
    }

    #[test]
    fn another_profile_is_compiled_not_served_from_the_cache() {
        let dir = TempDir::new("seccomp-cache-miss");
        let first = compile_cached(&profile(11), &dir.0).expect("compiles");
        let second = compile_cached(&profile(12), &dir.0).expect("compiles");
        assert_ne!(first.to_bytes(), second.to_bytes());
        assert_eq!(
            second.to_bytes(),
            compile(&profile(12)).expect("compiles").to_bytes()
        );
    }

    #[test]
    fn a_broken_entry_is_recompiled() {
        let dir = TempDir::new("seccomp-cache-broken");
        let compiled = compile_cached(&profile(11), &dir.0).expect("compiles");
        let entry = only_entry(&dir.0);
        let mut bytes = fs::read(&entry).expect("entry");
        bytes.truncate(bytes.len() - 3);
        fs::write(&entry, &bytes).expect("rewrite entry");
        let recompiled = compile_cached(&profile(11), &dir.0).expect("recompiles");
        assert_eq!(recompiled.to_bytes(), compiled.to_bytes());
    }

    #[test]
    fn an_unwritable_cache_still_compiles() {
        let filter = compile_cached(&profile(11), Path::new("/proc/berth-no-such-dir"));
        assert!(filter.is_ok(), "{filter:?}");
    }
}
