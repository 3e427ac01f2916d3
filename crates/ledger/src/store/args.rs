//! Named script arguments: each script's arguments are declared once, as a Rust struct, with
//! [`script_args!`]. The same declaration writes them in order (`push`) and generates the Lua that
//! names them (`local A = {}; A.now = tonumber(ARGV[1]) …`, put in front of the script), so a script
//! reads `A.lease`, never `ARGV[4]`, and the two sides cannot disagree about positions. Variadic
//! arguments (field/value pairs) follow the named ones, from `ARGV[A_REST]` on.

/// A value a script takes: how it is sent, and how the generated Lua reads it back.
pub(crate) trait Arg {
    /// Lua that turns `ARGV[i]` (the `{}`) into the script's value.
    const LUA: &'static str;
    fn push(&self, inv: &mut redis::ScriptInvocation<'_>);
}

macro_rules! numeric_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            const LUA: &'static str = "tonumber({})";
            fn push(&self, inv: &mut redis::ScriptInvocation<'_>) {
                inv.arg(*self);
            }
        }
    )*};
}
numeric_arg!(i64, u64, u32, usize, f64);

impl Arg for &str {
    const LUA: &'static str = "{}";
    fn push(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(*self);
    }
}

impl Arg for String {
    const LUA: &'static str = "{}";
    fn push(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(self.as_str());
    }
}

impl Arg for bool {
    const LUA: &'static str = "({} == '1')";
    fn push(&self, inv: &mut redis::ScriptInvocation<'_>) {
        inv.arg(if *self { "1" } else { "0" });
    }
}

/// One line of the generated prelude: `A.<name> = <conversion of ARGV[i]>`.
pub(crate) fn lua_line(name: &str, i: usize, convert: &str) -> String {
    format!("A.{name} = {}\n", convert.replace("{}", &format!("ARGV[{i}]")))
}

/// Declares a script's arguments: a struct whose fields are sent in declaration order, with
/// `push` (write them) and `lua_prelude` (the Lua that names them `A.<field>`).
macro_rules! script_args {
    ($(#[$m:meta])* pub struct $name:ident<$lt:lifetime> { $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone)]
        pub(crate) struct $name<$lt> { $( $(#[$fm])* pub $field: $ty, )* }
        impl<$lt> $name<$lt> { $crate::store::args::script_args!(@body $($field : $ty),*); }
    };
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* $field:ident : $ty:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone)]
        pub(crate) struct $name { $( $(#[$fm])* pub $field: $ty, )* }
        impl $name { $crate::store::args::script_args!(@body $($field : $ty),*); }
    };
    (@body $($field:ident : $ty:ty),*) => {
        /// The Lua that names these arguments (`A.<field>`), in the order `push` sends them;
        /// `A_REST` is the index of the first argument after them (variadic pairs, if any).
        pub(crate) fn lua_prelude() -> String {
            let mut lua = String::from("local A = {}\n");
            let mut i = 0usize;
            $(
                i += 1;
                lua.push_str(&$crate::store::args::lua_line(stringify!($field), i, <$ty as $crate::store::args::Arg>::LUA));
            )*
            lua.push_str(&format!("local A_REST = {}\n", i + 1));
            lua
        }

        /// Appends the arguments to `inv`, in declaration order.
        pub(crate) fn push(&self, inv: &mut redis::ScriptInvocation<'_>) {
            $( $crate::store::args::Arg::push(&self.$field, inv); )*
        }
    };
}
pub(crate) use script_args;

#[cfg(test)]
mod tests {
    script_args! {
        /// For the test.
        pub struct Sample<'a> { now: i64, worker: &'a str, flag: bool }
    }

    #[test]
    fn the_prelude_names_each_argument_in_the_order_it_is_sent() {
        assert_eq!(
            Sample::lua_prelude(),
            "local A = {}\nA.now = tonumber(ARGV[1])\nA.worker = ARGV[2]\nA.flag = (ARGV[3] == '1')\nlocal A_REST = 4\n"
        );
        let s = Sample { now: 5, worker: "w", flag: true };
        let script = redis::Script::new("return 1");
        let mut inv = script.prepare_invoke();
        s.push(&mut inv);
        let _ = (s.now, s.worker, s.flag);
    }
}
