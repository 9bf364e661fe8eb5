//! `lockbox-fuzz-seeds DIR`: writes the well-formed starting inputs of every target as
//! `DIR/<target>/seed-<n>`.

fn main() -> std::io::Result<()> {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: lockbox-fuzz-seeds DIR");
        std::process::exit(2);
    };
    for (target, seeds) in lockbox_fuzz::seeds::seeds() {
        let dir = std::path::Path::new(&dir).join(target);
        std::fs::create_dir_all(&dir)?;
        for (n, seed) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{n}")), seed)?;
        }
    }
    Ok(())
}
