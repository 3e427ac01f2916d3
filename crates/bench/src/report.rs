//! Writing `bench/RESULTS.md`: the machine, the commit, every row, and the targets.

use std::fmt::Write as _;
use std::time::Duration;

use crate::targets::Targets;

pub fn write_results(rows: &[(String, String)], runs: usize, took: Duration, targets: &Targets) -> anyhow::Result<()> {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mut md = String::new();
    writeln!(md, "# qfrefund benchmark results\n")?;
    writeln!(md, "- machine: {cores} cores, {cpu}")?;
    writeln!(md, "- commit: {commit}; date (UTC): {}", qfpay::Txdtm::now(0))?;
    writeln!(
        md,
        "- every figure: median (min–max) of {runs} runs, all in this one run; took {:.0} s\n",
        took.as_secs_f64()
    )?;
    writeln!(md, "| measurement | result |\n|---|---|")?;
    for (k, v) in rows {
        writeln!(md, "| {k} | {v} |")?;
    }
    md.push_str(&targets.render());
    std::fs::create_dir_all("bench")?;
    std::fs::write("bench/RESULTS.md", &md)?;
    println!("{md}");
    Ok(())
}
