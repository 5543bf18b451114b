//! Opens the ports, serves until SIGTERM or SIGINT, then drains.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Error;
use crate::listen;
use crate::options::Options;
use crate::routes::{self, App};
use crate::worker::{ModelInfo, Worker};

async fn bind(host: &str, port: u16) -> Result<TcpListener, Error> {
    let address = format!("{host}:{port}");
    TcpListener::bind(&address).await.map_err(|error| Error::Bind { address, error })
}

/// Serves until SIGTERM or SIGINT, then stops accepting and returns once every accepted
/// request has been answered.
pub async fn run(worker: &Worker, info: Arc<ModelInfo>, options: Options, backend: &'static str) -> Result<(), Error> {
    let listener = bind(&options.host, options.port).await?;
    let metrics_listener = match options.prometheus_port {
        Some(port) => Some(bind(&options.host, port).await?),
        None => None,
    };
    let header_timeout = options.header_timeout.0;
    let app = Arc::new(App {
        queue: worker.queue.clone(),
        metrics: worker.metrics.clone(),
        healthy: worker.healthy.clone(),
        info,
        options,
        backend,
        in_flight: AtomicUsize::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|&stop| stop).await;
    };
    if let Some(listener) = metrics_listener {
        tracing::info!("serving metrics on http://{}/metrics", listener.local_addr()?);
        let router = routes::metrics_router(app.clone());
        tokio::spawn(listen::serve(listener, router, header_timeout, stopped(stop_rx.clone())));
    }
    tracing::info!("listening on http://{}", listener.local_addr()?);
    let signal = {
        let app = app.clone();
        async move {
            stop_signal().await;
            tracing::info!(
                in_flight = app.in_flight.load(Ordering::SeqCst),
                "stopping: no new connections; finishing the accepted requests"
            );
            stop_tx.send_replace(true);
        }
    };
    tokio::spawn(signal);
    listen::serve(listener, routes::router(app), header_timeout, stopped(stop_rx)).await;
    tracing::info!("stopped: every accepted request was answered");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
