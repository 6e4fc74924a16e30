use clap::Parser;
use kube_apiserver::config::Flags;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let flags = Flags::parse();
    let addr = std::net::SocketAddr::new(flags.bind_address, flags.secure_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("failed to listen on {addr}: {e}"))?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    kube_apiserver::run(flags, listener, shutdown).await?;
    Ok(())
}
