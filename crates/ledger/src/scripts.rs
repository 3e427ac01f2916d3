//! The Lua scripts the ledger runs (`lua/*.lua`, each opening with what it guarantees). Record
//! scripts are prefixed with `lua/common.lua`.

use std::sync::LazyLock;

use redis::Script;

macro_rules! record_script {
    ($file:literal) => {
        LazyLock::new(|| Script::new(concat!(include_str!("lua/common.lua"), "\n", include_str!($file))))
    };
}

pub(crate) static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/common.lua"),
        "\n",
        include_str!("lua/enqueue_one.lua"),
        "\n",
        include_str!("lua/enqueue.lua")
    ))
});
pub(crate) static ENQUEUE_MANY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/common.lua"),
        "\n",
        include_str!("lua/enqueue_one.lua"),
        "\n",
        include_str!("lua/enqueue_many.lua")
    ))
});
/// A claim script: the shared prelude, the named arguments, `claim_one`, then `body`.
fn claim_script(body: &str) -> Script {
    Script::new(&format!(
        "{}\n{}\n{}\n{body}",
        include_str!("lua/common.lua"),
        crate::claim::ClaimArgs::lua_prelude(),
        include_str!("lua/claim_one.lua")
    ))
}
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| claim_script(include_str!("lua/claim.lua")));
pub(crate) static CLAIM_DUE: LazyLock<Script> = LazyLock::new(|| claim_script(include_str!("lua/claim_due.lua")));
/// Built with [`crate::State::edges_lua`]: it refuses a move the state machine does not allow.
pub(crate) static TRANSITION: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}\n{}\n{}",
        include_str!("lua/common.lua"),
        crate::State::edges_lua(),
        include_str!("lua/transition.lua")
    ))
});
pub(crate) static DEFER: LazyLock<Script> = record_script!("lua/defer.lua");
pub(crate) static SET_PAID: LazyLock<Script> = record_script!("lua/set_paid.lua");
pub(crate) static OPERATE: LazyLock<Script> = record_script!("lua/operate.lua");
pub(crate) static EXPEDITE: LazyLock<Script> = record_script!("lua/expedite.lua");
pub(crate) static PAGE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/page.lua")));
pub(crate) static RATE_LIMIT: LazyLock<Script> = record_script!("lua/rate_limit.lua");
