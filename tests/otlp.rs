//! Traces leave the process by the standard switch: with `OTEL_EXPORTER_OTLP_ENDPOINT` and
//! `OTEL_SERVICE_NAME` set, a `qfrefund worker` POSTs its spans (OTLP over HTTP, protobuf) to a
//! receiver — here one in this test, on a loopback port — named as asked, and the spans of a
//! refund carry the trace id of the producer's `traceparent`.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger::{NewRefund, State};
use qfpay_sim::args::generated_syssn;
use qfpay_sim::http::{SimConfig, SimHandle};
use qfrefund_e2e::{Scratch, WorkerProcess, env_for, ledger, wait_count};
use testkit::{RedisServer, unique_namespace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every request an OTLP receiver got: (request line and headers, body).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A bare HTTP/1.1 server that answers every request `200` and keeps what it was sent.
async fn receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let keep = got.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    // One request: headers, then Content-Length bytes of body (connections are
                    // kept alive, so read on for the next).
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 8192];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    while buf.len() < head_end + len {
                        let mut chunk = [0u8; 8192];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body = buf[head_end..head_end + len].to_vec();
                    buf.drain(..head_end + len);
                    keep.lock().unwrap().push((head, body));
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if sock.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, got)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_exports_its_spans_over_otlp_in_the_producers_trace() {
    let redis = RedisServer::start().unwrap();
    let sim = SimHandle::start_local(SimConfig::demo(2)).await.unwrap();
    let ns = unique_namespace("otlp");
    let (url, got) = receiver().await;
    let scratch = Scratch::new("otlp");
    let mut env = env_for(&redis.url(), &ns, &sim.url());
    env.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into(), url);
    env.insert("OTEL_SERVICE_NAME".into(), "qfrefund-otlp-test".into());
    env.insert("OTEL_BSP_SCHEDULE_DELAY".into(), "200".into());
    let mut worker = WorkerProcess::spawn(&env, scratch.path("worker.log"));

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let l = ledger(&redis.url(), &ns).await;
    let mut refund = NewRefund::new(&generated_syssn(1), "RF-OTLP", 100);
    refund.traceparent = Some(format!("00-{trace_id}-00f067aa0ba902b7-01"));
    l.enqueue(refund).await.unwrap();
    wait_count(&l, State::Succeeded, 1, Duration::from_secs(20)).await;
    assert!(worker.terminate(), "a clean stop (which sends what is buffered): {}", worker.output());

    let deadline = Instant::now() + Duration::from_secs(10);
    let id = hex_bytes(trace_id);
    loop {
        let requests = got.lock().unwrap().clone();
        let traces: Vec<_> = requests.iter().filter(|(head, _)| head.starts_with("POST /v1/traces ")).collect();
        let joined = traces.iter().any(|(_, body)| contains(body, &id));
        if joined {
            assert!(traces.iter().all(|(head, _)| head.to_ascii_lowercase().contains("application/x-protobuf")));
            assert!(traces.iter().any(|(_, b)| contains(b, b"qfrefund-otlp-test")), "named by OTEL_SERVICE_NAME");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no span of the producer's trace reached the receiver ({} requests: {:?}); worker log:\n{}",
            requests.len(),
            requests.iter().map(|(h, b)| (h.lines().next().unwrap_or("").to_owned(), b.len())).collect::<Vec<_>>(),
            worker.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
