//! `qfrefund completions` and `qfrefund man`: shell completions and manual pages, generated from
//! the same definition the parser uses (clap_complete, clap_mangen), so they never drift from it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// Writes `bytes` to stdout; a reader that went away (`qfrefund man | head`) ends it quietly.
pub(crate) fn print(bytes: &[u8]) -> anyhow::Result<ExitCode> {
    match std::io::stdout().lock().write_all(bytes) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e.into()),
    }
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut crate::command(), "qfrefund", &mut out);
    print(&out)
}

/// The manual page of `qfrefund` on stdout, or every command's page (`qfrefund.1`,
/// `qfrefund-worker.1`, …) written into `dir`.
pub fn man(dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    let cmd = crate::command();
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
        crate::command().debug_assert();
    }

    #[test]
    fn every_command_says_what_it_does_and_has_a_man_page() {
        let cmd = crate::command();
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
        clap_complete::generate(clap_complete::Shell::Bash, &mut crate::command(), "qfrefund", &mut out);
        let script = String::from_utf8(out).unwrap_or_default();
        for sub in crate::command().get_subcommands() {
            assert!(script.contains(sub.get_name()), "bash completion knows {}", sub.get_name());
        }
    }

    #[test]
    fn each_command_help_names_the_variables_it_reads() {
        let mut cmd = crate::command();
        let mut help = |name: &str| {
            let sub = cmd.find_subcommand_mut(name).unwrap_or_else(|| panic!("no {name}"));
            sub.render_long_help().to_string()
        };
        let worker = help("worker");
        assert!(worker.contains("QFREFUND_LEASE_MS") && worker.contains("QFPAY_CLIENT_KEY"), "{worker}");
        assert!(!worker.contains("QFREFUND_API_LISTEN"), "{worker}");
        let serve = help("serve");
        assert!(serve.contains("QFREFUND_API_LISTEN") && serve.contains("QFREFUND_REDIS_URL"), "{serve}");
        assert!(help("enqueue").contains("QFREFUND_REDIS_URL"));
        assert!(!help("completions").contains("QFREFUND_"));
    }
}
