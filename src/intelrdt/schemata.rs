//! Lines of a resctrl `schemata` file: `RESOURCE:DOMAIN=VALUE;DOMAIN=VALUE`, e.g. `L3:0=7f0;1=1f`
//! (a cache capacity bitmask in hex per cache id) or `MB:0=20;1=70` (a bandwidth per domain).

use std::collections::BTreeMap;

use anyhow::{Result, bail};

/// One line as the config may give it: a resource name, a colon, and no newline (the spec).
pub fn check_line(line: &str) -> Result<()> {
    if line.contains('\n') {
        bail!("{line:?} contains a newline");
    }
    if parse(line).is_none() {
        bail!("{line:?} is not a schemata line (RESOURCE:DOMAIN=VALUE;...)");
    }
    Ok(())
}

/// Resource → domain → value, values without leading zeros and in lower case, as the kernel
/// reads them back (`L3:0=00ff` is read as `L3:0=ff`).
fn parse(line: &str) -> Option<(String, BTreeMap<String, String>)> {
    let (resource, domains) = line.split_once(':')?;
    let resource = resource.trim();
    if resource.is_empty() {
        return None;
    }
    let mut values = BTreeMap::new();
    for domain in domains.split(';').map(str::trim).filter(|d| !d.is_empty()) {
        let (id, value) = domain.split_once('=')?;
        let value = value.trim().to_ascii_lowercase();
        let value = value.trim_start_matches('0');
        let value = if value.is_empty() { "0" } else { value };
        values.insert(id.trim().to_string(), value.to_string());
    }
    Some((resource.to_string(), values))
}

/// The spec: an existing `closID` group must already have the schemata the config gives. Every
/// domain the config names must have that value in `current` (the group's `schemata` file, which
/// lists every domain of every resource); the last config line for a resource wins, as it
/// would when written.
pub fn check_matches(wanted: &[String], current: &str) -> Result<()> {
    let current: BTreeMap<String, BTreeMap<String, String>> =
        current.lines().filter_map(parse).collect();
    let mut merged: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (resource, domains) in wanted.iter().filter_map(|line| parse(line)) {
        merged.entry(resource).or_default().extend(domains);
    }
    for (resource, domains) in &merged {
        for (domain, value) in domains {
            let found = current.get(resource).and_then(|d| d.get(domain));
            if found != Some(value) {
                let found = found.map_or("nothing".to_string(), |v| {
                    format!("{resource}:{domain}={v}")
                });
                bail!("its schemata has {found}, the config {resource}:{domain}={value}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn lines_need_a_resource_and_no_newline() {
        check_line("L3:0=7f0;1=1f").unwrap();
        check_line("MB:0=20").unwrap();
        assert!(
            check_line("L3:0=ff\nMB:0=20")
                .unwrap_err()
                .to_string()
                .contains("newline")
        );
        assert!(check_line("0=ff").is_err());
        assert!(check_line(":0=ff").is_err());
        assert!(check_line("L3:0").is_err());
    }

    #[test]
    fn an_existing_group_matches_when_every_configured_domain_does() {
        let current = "    L3:0=007f0;1=fffff\n    MB:0=100;1= 70\n";
        check_matches(&lines(&["L3:0=7F0", "MB:1=70"]), current).unwrap();
        let err = check_matches(&lines(&["L3:0=ff"]), current).unwrap_err();
        assert_eq!(
            err.to_string(),
            "its schemata has L3:0=7f0, the config L3:0=ff"
        );
        let err = check_matches(&lines(&["L2:0=f"]), current).unwrap_err();
        assert_eq!(
            err.to_string(),
            "its schemata has nothing, the config L2:0=f"
        );
        // The last line for a resource wins, as when written.
        check_matches(&lines(&["MB:0=20", "MB:0=100"]), current).unwrap();
    }
}
