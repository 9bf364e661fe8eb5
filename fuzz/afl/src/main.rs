//! `lockbox-fuzz-afl TARGET`: runs one of lockbox-fuzz's targets under afl-fuzz, in AFL++'s
//! persistent mode (many inputs per process).
#![forbid(unsafe_code)]

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = lockbox_fuzz::target(&name) else {
        let names: Vec<_> = lockbox_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: lockbox-fuzz-afl TARGET, one of: {}", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| target(data));
}
