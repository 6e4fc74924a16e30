//! The `etcd-lite` binary: flags, logging, listeners, then [`etcd_lite::run`].

use anyhow::Context;
use clap::Parser;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: the request path allocates and frees many
/// small buffers across threads, where glibc's allocator cost ~18 % of the CPU
/// under a write load (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // By default a task woken by the running task runs next (the LIFO slot).
    // When a Raft entry is applied, its puts' handlers wake one after the
    // other, and each hands its response to its HTTP/2 connection's task: with
    // the slot, that task runs after every handler and writes each response on
    // its own; without it, it runs after them and writes them together. Under
    // a 64-client put load this cut the members' socket writes from 1.6 to 0.6
    // per put and their CPU per put by a fifth (BENCHMARKS.md).
    #[cfg(tokio_unstable)]
    runtime.disable_lifo_slot();
    runtime.build()?.block_on(serve())
}

async fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cfg = etcd_lite::Config::parse().validate()?;
    let mut listeners = etcd_lite::Listeners {
        client: vec![],
        peer: vec![],
    };
    for addr in &cfg.listen_client_urls {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for clients on {addr} (--listen-client-urls)"))?;
        listeners.client.push(l);
    }
    for addr in &cfg.listen_peer_urls {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for peers on {addr} (--listen-peer-urls)"))?;
        listeners.peer.push(l);
    }
    tracing::info!(name = %cfg.name, data_dir = %cfg.data_dir.display(), engine = cfg.storage_engine.name(), "starting etcd-lite");
    etcd_lite::run(cfg, listeners, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("received a shutdown signal");
}
