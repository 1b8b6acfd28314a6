//! (in progress)

#[derive(Debug, Default, clap::Args)]
pub struct CacheArgs {}

pub fn run(_args: CacheArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
