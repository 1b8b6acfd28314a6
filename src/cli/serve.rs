//! (in progress)

#[derive(Debug, Default, clap::Args)]
pub struct ServeArgs {}

pub fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
