//! `etcd-bench`: flags, then [`etcd_bench::run`]; results on stdout,
//! progress on stderr.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = etcd_bench::Args::parse();
    let reports = etcd_bench::run(&args).await?;
    if args.markdown {
        let command = format!(
            "cargo run --release -p etcd-bench -- {}",
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        );
        print!(
            "{}",
            etcd_bench::report::render_markdown(&reports, command.trim_end())
        );
    } else {
        print!("{}", etcd_bench::report::render_text(&reports));
    }
    Ok(())
}
