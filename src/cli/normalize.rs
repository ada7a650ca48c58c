//! go-runc passes some long flags with a single dash (`-no-subreaper`), as Go's
//! flag package allows. Rewrite those to `--` before clap sees them, but only
//! up to the container id: what follows it (an exec'd command line) is the
//! user's and must pass untouched.
//!
//! Most command lines have no single-dash word and pass as they are. The others need
//! to know which flags take a value (so that a flag's value is not taken for the
//! container id): the global flags and those of the subcommand given, which alone is
//! built for that.

use std::collections::HashMap;

use clap::Command;

/// Long flag name → whether it takes a value; likewise for short flags.
#[derive(Default)]
struct FlagTable {
    long: HashMap<String, bool>,
    short: HashMap<char, bool>,
}

impl FlagTable {
    fn add_flags_of(&mut self, command: &Command) {
        for arg in command.get_arguments() {
            let takes_value = arg.get_action().takes_values();
            if let Some(long) = arg.get_long() {
                self.long.insert(long.to_string(), takes_value);
            }
            if let Some(short) = arg.get_short() {
                self.short.insert(short, takes_value);
            }
        }
    }

    /// The flags of `berth`'s subcommand `name`; its definition is built on a copy (clap
    /// builds the one it parses with itself).
    fn add_subcommand(&mut self, berth: &Command, name: &str) {
        if let Some(subcommand) = berth.find_subcommand(name) {
            let mut subcommand = subcommand.clone();
            subcommand.build();
            self.add_flags_of(&subcommand);
        }
    }
}

/// A word Go's flag package may have meant as a long flag: one dash, then more than one
/// character.
fn is_single_dash_word(arg: &str) -> bool {
    arg.strip_prefix('-')
        .is_some_and(|rest| !rest.starts_with('-') && rest.chars().nth(1).is_some())
}

/// `berth` is the command (subcommands unbuilt) the result will be parsed with.
pub fn normalize_args(berth: &Command, args: Vec<String>) -> Vec<String> {
    if !args.iter().skip(1).any(|arg| is_single_dash_word(arg)) {
        return args;
    }
    let mut table = FlagTable::default();
    table.add_flags_of(berth);
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
        if is_positional {
            if positionals == 0 {
                table.add_subcommand(berth, &normalized);
            }
            positionals += 1;
        }
        out.push(normalized);
        if value_follows {
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
        let berth = <crate::cli::Cli as clap::CommandFactory>::command();
        normalize_args(&berth, line.split(' ').map(String::from).collect()).join(" ")
    }

    #[test]
    fn single_dash_long_flags_become_double_dash() {
        assert_eq!(
            normalize("berth -root /r run -no-subreaper -bundle=/b id"),
            "berth --root /r run --no-subreaper --bundle=/b id"
        );
    }

    #[test]
    fn a_line_without_single_dash_words_passes_as_it_is() {
        assert_eq!(
            normalize("berth --root /r exec -t id sh -c true"),
            "berth --root /r exec -t id sh -c true"
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
