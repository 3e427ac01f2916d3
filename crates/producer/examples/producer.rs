//! Enqueue one refund and follow it until it is final.
//!
//! ```sh
//! QFREFUND_REDIS_URL=redis://127.0.0.1:6379 cargo run -p qfrefund-producer --example producer -- \
//!     10000000000000000000000003 RF-1003 1500
//! ```

use std::time::Duration;

use qfrefund_producer::{Enqueued, NewRefund, Producer, State};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(syssn), Some(out_trade_no), Some(txamt)) = (args.next(), args.next(), args.next()) else {
        return Err("usage: producer <syssn> <out_trade_no> <txamt in minor units>".into());
    };
    let txamt: u64 =
        txamt.parse().map_err(|_| format!("txamt must be a whole number of minor units, got {txamt:?}"))?;
    let producer = Producer::from_env().await?;
    let refund = NewRefund::new(&syssn, &out_trade_no, txamt);
    let merchant = refund.merchant().to_owned();
    // Retry what a retry can mend, always with the same out_trade_no.
    let mut delay = Duration::from_millis(200);
    let record = loop {
        match producer.enqueue(refund.clone()).await {
            Ok(Enqueued::Created(r)) | Ok(Enqueued::Duplicate(r)) => break r,
            Err(e) if e.is_retryable() && delay < Duration::from_secs(30) => {
                eprintln!("{e}; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => return Err(e.into()),
        }
    };
    println!("{} is {}", record.out_trade_no, record.state);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(now) = producer.get(&merchant, &out_trade_no).await? else {
            println!("{out_trade_no} is no longer in Redis (archived)");
            return Ok(());
        };
        if matches!(now.state, State::Succeeded | State::Failed | State::Cancelled | State::NeedsReview) {
            println!("{} is {} (respcd {:?})", now.out_trade_no, now.state, now.respcd);
            return Ok(());
        }
    }
}
