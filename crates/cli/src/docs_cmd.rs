//! `qfrefund completions` and `qfrefund man`: shell completions and manual pages, generated from
//! the same definition the parser uses (clap_complete, clap_mangen), so they never drift from it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::Cli;

/// Writes `bytes` to stdout; a reader that went away (`qfrefund man | head`) ends it quietly.
fn print(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    match std::io::stdout().lock().write_all(bytes) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "qfrefund", &mut out);
    print(&out)
}

/// The manual page of `qfrefund` on stdout, or every command's page (`qfrefund.1`,
/// `qfrefund-worker.1`, …) written into `dir`.
pub fn man(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("--dir {}: {e}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir).map_err(|e| anyhow::anyhow!("--dir {}: {e}", dir.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            print(&out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap's own checks: no clashing names, flags or defaults, every argument reachable.
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_says_what_it_does_and_has_a_man_page() {
        let cmd = Cli::command();
        let dir = std::env::temp_dir().join(format!("qfrefund-man-{}", std::process::id()));
        assert_eq!(man(Some(&dir)).unwrap(), ExitCode::SUCCESS);
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let name = sub.get_name();
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(about.len() > 10, "`qfrefund {name}` says what it does");
            let page = std::fs::read_to_string(dir.join(format!("qfrefund-{name}.1"))).unwrap_or_default();
            assert!(page.contains(".TH"), "qfrefund-{name}.1 is a manual page");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn completions_name_every_command() {
        let mut out = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut Cli::command(), "qfrefund", &mut out);
        let script = String::from_utf8(out).unwrap_or_default();
        for sub in Cli::command().get_subcommands() {
            assert!(script.contains(sub.get_name()), "bash completion knows {}", sub.get_name());
        }
    }
}
