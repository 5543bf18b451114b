//! The accept loop: hyper's HTTP/1 with a timer, so that a client that does not finish its
//! headers within `--header-timeout` is disconnected (`axum::serve` sets no timer, and such a
//! client held its connection forever), and a graceful stop.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves `router` on `listener` until `stop` resolves; then accepts no more connections,
/// lets each open one finish its request in progress, and returns once all have closed.
pub async fn serve(listener: TcpListener, router: Router, header_timeout: Duration, stop: impl Future<Output = ()>) {
    // Each connection holds a receiver of `open`: the loop's end waits for all to be dropped.
    let (open, open_rx) = watch::channel(());
    let (stopping, _) = watch::channel(false);
    let mut stop = pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, say: wait for some to close instead of spinning.
                    tracing::warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
        let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router.clone()));
        let (mut stopping, held) = (stopping.subscribe(), open_rx.clone());
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            let mut asked = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!("connection closed: {e}");
                        }
                        break;
                    }
                    _ = stopping.changed(), if !asked => {
                        asked = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(held);
        });
    }
    drop(listener);
    drop(open_rx);
    stopping.send_replace(true);
    open.closed().await;
}
