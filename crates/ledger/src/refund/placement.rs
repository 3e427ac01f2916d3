//! Where a refund lives: its id inside a shard, and the shard of its merchant. Pure.
//!
//! QFPay takes `out_trade_no` as unique per merchant account, so a refund is named by
//! `(merchant, out_trade_no)`. Inside a shard its id (the member of every index, the suffix of its
//! record key) is the `out_trade_no` alone for the default merchant — the layout every ledger had
//! before refunds were merchant-scoped, so those ledgers read on unchanged — and
//! `<merchant>:<out_trade_no>` for any other merchant. Both halves are `[A-Za-z0-9_-]`, so no id
//! of one merchant can be read as another's.

use std::collections::BTreeMap;

use crate::refund::request::DEFAULT_MERCHANT;

/// The most shards a ledger may have.
pub const MAX_SHARDS: usize = 1024;

/// The id of the refund `(merchant, out_trade_no)` inside its shard.
pub fn refund_id(merchant: &str, out_trade_no: &str) -> String {
    if merchant == DEFAULT_MERCHANT { out_trade_no.to_owned() } else { format!("{merchant}:{out_trade_no}") }
}

/// Which shard each merchant's refunds, payments, due-index entries and token bucket live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    shards: usize,
    /// Merchants given a shard by configuration (a large merchant on a shard of its own).
    pinned: BTreeMap<String, usize>,
}

impl Default for Placement {
    fn default() -> Self {
        Self { shards: 1, pinned: BTreeMap::new() }
    }
}

impl Placement {
    /// `shards` shards, with `pinned` merchants placed by hand; every other merchant by
    /// [`stable_hash`] of its name.
    pub fn new(shards: usize, pinned: BTreeMap<String, usize>) -> Result<Self, String> {
        if shards == 0 || shards > MAX_SHARDS {
            return Err(format!("shards must be between 1 and {MAX_SHARDS} (got {shards})"));
        }
        if let Some((m, s)) = pinned.iter().find(|(_, s)| **s >= shards) {
            return Err(format!("merchant {m:?} is pinned to shard {s}, but shards are numbered 0..{}", shards - 1));
        }
        Ok(Self { shards, pinned })
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    pub fn pinned(&self) -> &BTreeMap<String, usize> {
        &self.pinned
    }

    /// The shard of `merchant`'s refunds.
    pub fn shard_of(&self, merchant: &str) -> usize {
        match self.pinned.get(merchant) {
            Some(s) => *s,
            None => (stable_hash(merchant) % self.shards as u32) as usize,
        }
    }
}

/// 32-bit FNV-1a of the merchant's name: part of the storage format (changing it would move
/// merchants between shards), so it is written out here rather than taken from a hasher whose
/// output may change between releases.
pub fn stable_hash(name: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_the_default_merchant_layout_and_scope_every_other_merchant() {
        assert_eq!(refund_id("default", "RF1"), "RF1");
        assert_eq!(refund_id("shop2", "RF1"), "shop2:RF1");
        assert_ne!(refund_id("a", "b-c"), refund_id("a-b", "c"));
    }

    #[test]
    fn placement_is_stable_and_pins_win() {
        // Known values: the hash is part of the storage format and must never change.
        assert_eq!(stable_hash(""), 0x811c_9dc5);
        assert_eq!(stable_hash("a"), 0xe40c_292c);
        let p = Placement::new(4, BTreeMap::from([("big".to_owned(), 3)])).unwrap();
        assert_eq!(p.shard_of("big"), 3);
        assert_eq!(p.shard_of("a"), (0xe40c_292c_u32 % 4) as usize);
        assert_eq!(Placement::default().shard_of("anything"), 0);
        assert!(Placement::new(0, BTreeMap::new()).is_err());
        assert!(Placement::new(2, BTreeMap::from([("m".to_owned(), 2)])).unwrap_err().contains("\"m\""));
    }
}
