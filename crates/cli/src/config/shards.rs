//! The ledger's shards: `shards` (`QFREFUND_SHARDS`), merchants pinned to a shard
//! (`[merchant_shards]`, `QFREFUND_MERCHANT_SHARDS=name=shard,…`) and the shards a worker serves
//! (`[worker] serve_shards`, `QFREFUND_SERVE_SHARDS=0,2`).

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, bail};
use ledger::refund::placement::Placement;

use super::read::{env, env_num};

/// The placement the file and the environment describe (the environment wins, whole).
pub(super) fn placement(shards: Option<usize>, pins: &HashMap<String, usize>) -> anyhow::Result<Placement> {
    let n = env_num::<usize>("QFREFUND_SHARDS", "a whole number of shards")?.or(shards).unwrap_or(1);
    let pinned: BTreeMap<String, usize> = match env("QFREFUND_MERCHANT_SHARDS") {
        Some(list) => parse_pins(&list)?,
        None => pins.iter().map(|(m, s)| (m.clone(), *s)).collect(),
    };
    for m in pinned.keys() {
        qfpay::request::validate_id("merchant", m, 64)
            .map_err(|e| anyhow::anyhow!("merchant_shards: merchant {m:?}: {}", e.rule))?;
    }
    Placement::new(n, pinned).map_err(|e| anyhow::anyhow!("shards / merchant_shards: {e}"))
}

fn parse_pins(list: &str) -> anyhow::Result<BTreeMap<String, usize>> {
    let mut out = BTreeMap::new();
    for (i, item) in list.split(',').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
        let Some((m, s)) = item.split_once('=') else {
            bail!("QFREFUND_MERCHANT_SHARDS: entry {} ({item:?}) is not merchant=shard", i + 1);
        };
        let s: usize = s
            .trim()
            .parse()
            .with_context(|| format!("QFREFUND_MERCHANT_SHARDS: entry {}: the shard must be a number", i + 1))?;
        if out.insert(m.trim().to_owned(), s).is_some() {
            bail!("QFREFUND_MERCHANT_SHARDS: merchant {:?} named twice", m.trim());
        }
    }
    Ok(out)
}

/// The shards a worker fetches from (`None`: all of them).
pub(super) fn serve_shards(file: Option<&Vec<usize>>) -> anyhow::Result<Option<Vec<usize>>> {
    let Some(list) = env("QFREFUND_SERVE_SHARDS") else { return Ok(file.cloned()) };
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let s: usize =
            part.parse().with_context(|| format!("QFREFUND_SERVE_SHARDS: {part:?} is not a shard number"))?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_and_name_what_is_wrong() {
        let p = parse_pins("big=3, small=0").unwrap();
        assert_eq!(p.get("big"), Some(&3));
        assert!(parse_pins("big").unwrap_err().to_string().contains("merchant=shard"));
        assert!(parse_pins("big=x").unwrap_err().to_string().contains("number"));
        assert!(parse_pins("a=1,a=2").unwrap_err().to_string().contains("twice"));
    }
}
