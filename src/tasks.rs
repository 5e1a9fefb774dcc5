//! Background work: a pass run every interval until the process shuts down.

use std::future::Future;
use std::time::Duration;

/// Turns true when the process is shutting down.
pub type Shutdown = tokio::sync::watch::Receiver<bool>;

/// Runs `pass` every `interval` (a slow pass delays the next, never piles them up) until
/// `shutdown` turns true.
pub async fn every<F, Fut>(interval: Duration, mut shutdown: Shutdown, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => pass().await,
            _ = shutdown.changed() => break,
        }
    }
}
