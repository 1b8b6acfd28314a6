//! (in progress)

#[derive(Debug, Default, clap::Args)]
pub struct StatsArgs {}

pub fn run(_args: StatsArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
