//! The top-level `--help` lists the commands in groups, as the people who run them think of them
//! (the order of `cmd/mod.rs`), instead of one flat list.

/// The groups, in the order shown, with their commands in that order.
const GROUPS: &[(&str, &[&str])] = &[
    ("Run", &["worker", "serve", "sim"]),
    ("Refunds in, and what became of them", &["enqueue", "import", "status", "list", "events"]),
    (
        "Operate",
        &[
            "stats",
            "workers",
            "audit",
            "retry",
            "resolve",
            "cancel",
            "enquire",
            "pause",
            "resume",
            "redeliver",
            "reconcile",
        ],
    ),
    ("Keep the ledger", &["prune", "enable-retention", "scope-merchants"]),
    ("Set up", &["config", "ping", "qfpay", "completions", "man", "help"]),
];

/// `cmd` with its commands listed by group in its help.
pub fn grouped(cmd: clap::Command) -> clap::Command {
    let about = |name: &str| {
        cmd.find_subcommand(name).and_then(|c| c.get_about()).map(ToString::to_string).unwrap_or_else(|| {
            // clap's own `help` command has its about only once clap builds the command.
            if name == "help" { "Print this message or the help of the given command".into() } else { String::new() }
        })
    };
    let width = GROUPS.iter().flat_map(|(_, names)| names.iter()).map(|n| n.len()).max().unwrap_or(0);
    let mut list = String::new();
    for (group, names) in GROUPS {
        list.push_str(&format!("{group}:\n"));
        for name in *names {
            list.push_str(&format!("  {name:<width$}  {}\n", about(name)));
        }
        list.push('\n');
    }
    let template =
        format!("{{about-with-newline}}\n{{usage-heading}} {{usage}}\n\n{list}Options:\n{{options}}{{after-help}}");
    cmd.help_template(template)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_command_is_in_exactly_one_group() {
        let mut cmd = crate::Cli::command();
        cmd.build();
        let listed: Vec<&str> = super::GROUPS.iter().flat_map(|(_, names)| names.iter().copied()).collect();
        for sub in cmd.get_subcommands() {
            let n = listed.iter().filter(|l| **l == sub.get_name()).count();
            assert_eq!(n, 1, "{} is listed {n} times in crates/cli/src/groups.rs", sub.get_name());
        }
        for name in &listed {
            assert!(cmd.find_subcommand(name).is_some(), "{name} is no command");
        }
    }
}
