//! The Lua scripts the ledger runs (`lua/*.lua`, each opening with what it guarantees). Record
//! scripts are prefixed with `lua/common.lua`.

use std::sync::LazyLock;

use redis::Script;

macro_rules! record_script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(concat!(include_str!("common.lua"), "\n", include_str!($file))))
    };
}

pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("common.lua"),
        "\n",
        include_str!("enqueue_one.lua"),
        "\n",
        include_str!("enqueue.lua")
    ))
});
pub(crate) static ENQUEUE_MANY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("common.lua"),
        "\n",
        include_str!("enqueue_one.lua"),
        "\n",
        include_str!("enqueue_many.lua")
    ))
});
/// A claim script: the shared prelude, the named arguments, `claim_one`, then `body`.
fn claim_script(body: &str) -> Script {
    Script::new(&format!(
        "{}\n{}\n{}\n{body}",
        include_str!("common.lua"),
        crate::store::claim::ClaimArgs::lua_prelude(),
        include_str!("claim_one.lua")
    ))
}
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| claim_script(include_str!("claim.lua")));
pub(crate) static CLAIM_DUE: LazyLock<Script> = LazyLock::new(|| claim_script(include_str!("claim_due.lua")));
/// Built with [`crate::State::edges_lua`]: it refuses a move the state machine does not allow.
pub(crate) static TRANSITION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}\n{}\n{}",
        include_str!("common.lua"),
        crate::State::edges_lua(),
        include_str!("transition.lua")
    ))
});
pub(crate) static DEFER: LazyLock<Script> = record_script!("defer.lua");
pub(crate) static SET_PAID: LazyLock<Script> = record_script!("set_paid.lua");
pub(crate) static OPERATE: LazyLock<Script> = record_script!("operate.lua");
pub(crate) static EXPEDITE: LazyLock<Script> = record_script!("expedite.lua");
pub(crate) static PAGE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("page.lua")));
pub(crate) static RATE_LIMIT: LazyLock<Script> = record_script!("rate_limit.lua");
