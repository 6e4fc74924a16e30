//! `apiserver-bench`: flags, then [`etcd_bench::apiserver::run`]; results on
//! stdout, progress on stderr.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = etcd_bench::apiserver::ApiArgs::parse();
    // reqwest is built without a crypto provider of its own; use the
    // workspace's (aws-lc-rs), as the apiserver does.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rows = etcd_bench::apiserver::run(&args).await?;
    let command = format!(
        "cargo build --release -p kube-apiserver -p etcd-lite -p etcd-bench && target/release/apiserver-bench {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    print!(
        "{}",
        etcd_bench::apiserver::render(&rows, args.markdown, command.trim_end())
    );
    Ok(())
}
