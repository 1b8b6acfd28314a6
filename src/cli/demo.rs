//! (in progress)

#[derive(Debug, Default, clap::Args)]
pub struct DemoArgs {}

pub fn run(_args: DemoArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
