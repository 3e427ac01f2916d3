//! The Lua scripts the ledger runs (each `*.lua` beside the Rust file that calls it, opening with
//! what it guarantees). Each is built from `common.lua` (the shared prelude of record scripts),
//! the Lua that names its arguments (see `args.rs`), and its own body.

use std::sync::LazyLock;

use redis::Script;

use crate::store::claim::ClaimArgs;
use crate::store::due::ExpediteArgs;
use crate::store::enqueue::{EnqueueArgs, EnqueueManyArgs};
use crate::store::operator::OperateArgs;
use crate::store::reads::PageArgs;
use crate::store::retention::{RemoveArgs, SweepArgs, TombArgs};
use crate::store::transition::{DeferArgs, RateArgs, SetPaidArgs, TransitionArgs};

const COMMON: &str = include_str!("common.lua");
/// Tombstones (see `retention.rs`), for the scripts that write or read them.
const TOMB: &str = include_str!("tomb.lua");
/// Fresh refunds (see `fresh.rs`), for the scripts that enqueue them or move them out of `queued`;
/// it needs `TOMB` before it.
const FRESH: &str = include_str!("fresh.lua");

/// `common.lua`, the arguments' names, then each part.
fn record_script(args: String, parts: &[&str]) -> Script {
    let mut lua = format!("{COMMON}\n{args}");
    for part in parts {
        lua.push('\n');
        lua.push_str(part);
    }
    Script::new(&lua)
}

pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    record_script(
        EnqueueArgs::lua_prelude(),
        &[TOMB, FRESH, include_str!("enqueue_one.lua"), include_str!("enqueue.lua")],
    )
});
pub(crate) static ENQUEUE_MANY: LazyLock<Script> = LazyLock::new(|| {
    record_script(
        EnqueueManyArgs::lua_prelude(),
        &[TOMB, FRESH, include_str!("enqueue_one.lua"), include_str!("enqueue_many.lua")],
    )
});
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    record_script(ClaimArgs::lua_prelude(), &[TOMB, FRESH, include_str!("claim_one.lua"), include_str!("claim.lua")])
});
pub(crate) static CLAIM_DUE: LazyLock<Script> = LazyLock::new(|| {
    record_script(
        ClaimArgs::lua_prelude(),
        &[TOMB, FRESH, include_str!("claim_one.lua"), include_str!("claim_due.lua")],
    )
});
/// Built with [`crate::State::edges_lua`]: it refuses a move the state machine does not allow.
pub(crate) static TRANSITION: LazyLock<Script> = LazyLock::new(|| {
    record_script(
        TransitionArgs::lua_prelude(),
        &[&crate::State::edges_lua(), TOMB, FRESH, include_str!("transition.lua")],
    )
});
pub(crate) static DEFER: LazyLock<Script> =
    LazyLock::new(|| record_script(DeferArgs::lua_prelude(), &[TOMB, FRESH, include_str!("defer.lua")]));
pub(crate) static SET_PAID: LazyLock<Script> =
    LazyLock::new(|| record_script(SetPaidArgs::lua_prelude(), &[include_str!("set_paid.lua")]));
pub(crate) static OPERATE: LazyLock<Script> =
    LazyLock::new(|| record_script(OperateArgs::lua_prelude(), &[TOMB, FRESH, include_str!("operate.lua")]));
pub(crate) static EXPEDITE: LazyLock<Script> =
    LazyLock::new(|| record_script(ExpediteArgs::lua_prelude(), &[include_str!("expedite.lua")]));
pub(crate) static PAGE: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{}\n{}", PageArgs::lua_prelude(), include_str!("page.lua"))));
pub(crate) static SEARCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!("{}\n{}", crate::store::search::SearchArgs::lua_prelude(), include_str!("search.lua")))
});
pub(crate) static RATE_LIMIT: LazyLock<Script> =
    LazyLock::new(|| record_script(RateArgs::lua_prelude(), &[include_str!("rate_limit.lua")]));
pub(crate) static ARCHIVE_REMOVE: LazyLock<Script> =
    LazyLock::new(|| record_script(RemoveArgs::lua_prelude(), &[TOMB, include_str!("archive_remove.lua")]));
pub(crate) static TOMB_SWEEP: LazyLock<Script> =
    LazyLock::new(|| record_script(SweepArgs::lua_prelude(), &[TOMB, include_str!("tomb_sweep.lua")]));
pub(crate) static TOMB_GET: LazyLock<Script> =
    LazyLock::new(|| record_script(TombArgs::lua_prelude(), &[TOMB, include_str!("tomb_get.lua")]));
