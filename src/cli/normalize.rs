//! go-runc passes some long flags with a single dash (`-no-subreaper`), as Go's
//! flag package allows. Rewrite those to `--` before clap sees them, but only
//! up to the container id: what follows it (an exec'd command line) is the
//! user's and must pass untouched.

use std::collections::HashMap;

use clap::CommandFactory;

use super::Cli;

/// Long flag name → whether it takes a value; likewise for short flags.
struct FlagTable {
    long: HashMap<String, bool>,
    short: HashMap<char, bool>,
}

impl FlagTable {
    fn of_cli() -> FlagTable {
        let mut table = FlagTable {
            long: HashMap::new(),
            short: HashMap::new(),
        };
        let command = Cli::command();
        for cmd in std::iter::once(&command).chain(command.get_subcommands()) {
            for arg in cmd.get_arguments() {
                let takes_value = arg.get_action().takes_values();
                if let Some(long) = arg.get_long() {
                    table.long.insert(long.to_string(), takes_value);
                }
                if let Some(short) = arg.get_short() {
                    table.short.insert(short, takes_value);
                }
            }
        }
        table
    }
}

pub fn normalize_args(args: Vec<String>) -> Vec<String> {
    let table = FlagTable::of_cli();
    let mut out = Vec::with_capacity(args.len());
    let mut rest = args.into_iter();
    out.extend(rest.next()); // argv[0]
    // The subcommand, then the container id: after that, hands off.
    let mut positionals = 0;
    while positionals < 2 {
        let Some(arg) = rest.next() else { break };
        if arg == "--" {
            out.push(arg);
            break;
        }
        let (normalized, value_follows) = classify(&table, arg);
        let is_positional = !normalized.starts_with('-') || normalized == "-";
        out.push(normalized);
        if is_positional {
            positionals += 1;
        } else if value_follows {
            out.extend(rest.next());
        }
    }
    out.extend(rest);
    out
}

/// The arg as clap should see it, and whether the next arg is its value.
fn classify(table: &FlagTable, arg: String) -> (String, bool) {
    if let Some(long) = arg.strip_prefix("--") {
        let takes_value = !long.contains('=') && table.long.get(long).copied().unwrap_or(false);
        return (arg, takes_value);
    }
    if let Some(flag) = arg.strip_prefix('-') {
        let name = flag.split('=').next().unwrap_or_default();
        if name.chars().count() > 1 && table.long.contains_key(name) {
            let takes_value = !flag.contains('=') && table.long[name];
            return (format!("-{arg}"), takes_value);
        }
        let mut chars = flag.chars();
        if let (Some(short), None) = (chars.next(), chars.next()) {
            return (arg, table.short.get(&short).copied().unwrap_or(false));
        }
    }
    (arg, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalize(line: &str) -> String {
        normalize_args(line.split(' ').map(String::from).collect()).join(" ")
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            normalize("berth -root /r run -no-subreaper -bundle=/b id"),
            "berth --root /r run --no-subreaper --bundle=/b id"
        );
    }

    #[test]
    fn the_command_after_the_id_is_left_alone() {
        assert_eq!(
            normalize("berth exec -detach id sh -debug -root x"),
            "berth exec --detach id sh -debug -root x"
        );
    }

    #[test]
    fn flag_values_are_not_counted_as_positionals() {
        assert_eq!(
            normalize("berth --log /l -log-format json exec -e A=1 id ls -la"),
            "berth --log /l --log-format json exec -e A=1 id ls -la"
        );
    }
}
