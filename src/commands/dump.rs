pub fn run(_a: crate::cli::DumpArgs) -> anyhow::Result<super::Exit> {
    anyhow::bail!("todo")
}
