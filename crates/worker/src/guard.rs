//! A request that never outlives the lease it was claimed under.
//!
//! The lease is checked right before a request is sent, but a process can be stopped (SIGSTOP,
//! a frozen VM, a debugger) between that check and the first byte on the wire; when it wakes, its
//! lease may belong to another worker. [`within_lease`] checks the deadline (taken when the claim
//! answered, on the monotonic clock, which keeps running while a process is stopped) before
//! *every* poll of the request, so a request first polled after the deadline is never started.
//!
//! What remains: the HTTP client hands a request to its connection task, which writes it on its
//! own next poll. A stop in the microseconds between the two can still put bytes on the wire
//! late. That window is covered by the ledger, not by timing: the refund is `submitting` with
//! its `txdtm` before anything is sent, a worker that takes it over only ever enquires (never
//! resends blindly), and QFPay refuses a second refund under the same `out_trade_no`.

use std::future::Future;
use std::task::Poll;
use std::time::Instant;

/// What became of a guarded request.
#[derive(Debug)]
pub enum Guarded<T> {
    /// It ran to an answer (or an error) within the lease.
    Done(T),
    /// The deadline had passed before it was first polled: nothing was sent.
    NotStarted,
    /// The deadline passed while it was in flight: it may have reached the server.
    Expired,
}

/// Runs `request` until it answers or `deadline` passes, checking the deadline before each poll.
pub async fn within_lease<F: Future>(deadline: Instant, request: F) -> Guarded<F::Output> {
    let mut request = std::pin::pin!(request);
    let mut timer = std::pin::pin!(tokio::time::sleep_until(deadline.into()));
    let mut started = false;
    std::future::poll_fn(|cx| {
        if Instant::now() >= deadline {
            return Poll::Ready(if started { Guarded::Expired } else { Guarded::NotStarted });
        }
        started = true;
        if let Poll::Ready(v) = request.as_mut().poll(cx) {
            return Poll::Ready(Guarded::Done(v));
        }
        // Wakes this task at the deadline, so an expired request is noticed without its help.
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Guarded::Expired);
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_request_first_polled_after_its_lease_is_never_started() {
        let polled = std::sync::atomic::AtomicBool::new(false);
        let request = async {
            polled.store(true, std::sync::atomic::Ordering::SeqCst);
            1
        };
        // As if the process had been stopped between the lease check and the send.
        let deadline = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        assert!(matches!(within_lease(deadline, request).await, Guarded::NotStarted));
        assert!(!polled.load(std::sync::atomic::Ordering::SeqCst), "the request must not have run at all");
    }

    #[tokio::test]
    async fn a_request_in_flight_at_the_deadline_may_have_been_sent() {
        let deadline = Instant::now() + Duration::from_millis(30);
        let slow = tokio::time::sleep(Duration::from_secs(5));
        assert!(matches!(within_lease(deadline, slow).await, Guarded::Expired));
        let quick = async { 7 };
        assert!(matches!(within_lease(Instant::now() + Duration::from_secs(5), quick).await, Guarded::Done(7)));
    }
}
