//! (in progress)

#[derive(Debug, Default, clap::Args)]
pub struct SplitArgs {}

pub fn run(_args: SplitArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
