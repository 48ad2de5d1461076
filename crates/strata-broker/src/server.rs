//! The accept loop: one task per connection in a `JoinSet`, a semaphore
//! capping connections, and a cancellation token that stops accepting and
//! lets connections finish.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::Broker;

pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: CancellationToken) {
    let permits = Arc::new(Semaphore::new(broker.config.max_connections));
    let mut conns = JoinSet::new();
    let coordinator = tokio::spawn(broker.groups.clone().run(shutdown.clone()));
    let membership = tokio::spawn(crate::membership::run(broker.clone(), shutdown.clone()));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "connection limit reached; closing new connection");
                    continue;
                };
                let _ = socket.set_nodelay(true);
                let broker = broker.clone();
                let stop = shutdown.clone();
                conns.spawn(async move {
                    crate::conn::run(socket, peer, broker, stop).await;
                    drop(permit);
                });
            }
        }
    }
    // Give in-flight requests a moment to finish before the process exits.
    let drain = async { while conns.join_next().await.is_some() {} };
    if tokio::time::timeout(std::time::Duration::from_secs(5), drain)
        .await
        .is_err()
    {
        conns.abort_all();
    }
    let _ = coordinator.await;
    let _ = membership.await;
}
