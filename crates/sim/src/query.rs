//! `POST /trade/v1/query` (API §5) over the simulated bank: by `syssn` and `out_trade_no`
//! through indexes, so a load test's enquiries cost the same at 1 000 or 1 000 000 refunds.

use qfpay::Params;
use qfpay::time::{DEFAULT_OFFSET_SECS, Txdtm};

use crate::bank::{Bank, Payment, month_bounds, reject_json};

impl Bank {
    /// Answers `POST /trade/v1/query` for a merchant whose signature was checked (API §5).
    /// Refunds recorded less than `lag_ms` ago are not shown yet.
    pub fn query(&mut self, app_code: &str, p: &Params, now_ms: i64, lag_ms: i64) -> serde_json::Value {
        self.settle(now_ms);
        let split = |name: &str| -> Vec<String> {
            p.get(name)
                .map(|v| v.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
                .unwrap_or_default()
        };
        let (syssns, otns) = (split("syssn"), split("out_trade_no"));
        let parse_time = |name: &str| p.get(name).map(|v| v.parse::<Txdtm>());
        let (start, end) = (parse_time("start_time"), parse_time("end_time"));
        if matches!(start, Some(Err(_))) || matches!(end, Some(Err(_))) {
            return reject_json("1104", "start_time/end_time must be YYYY-MM-DD hh:mm:ss");
        }
        let (start, end) = (start.and_then(Result::ok), end.and_then(Result::ok));
        if syssns.is_empty() && otns.is_empty() && (start.is_none() || end.is_none()) {
            return reject_json("1104", "syssn, out_trade_no or start_time and end_time required");
        }
        let page: usize = p.get("page").and_then(|v| v.parse().ok()).filter(|n| *n >= 1).unwrap_or(1);
        let page_size: usize = p.get("page_size").and_then(|v| v.parse().ok()).unwrap_or(10);
        if !(1..=100).contains(&page_size) {
            return reject_json("1104", "page_size must be 1 to 100");
        }
        // Without syssn, QFPay searches [start_time, end_time], defaulting to the current month.
        let now = Txdtm::from_unix(now_ms.div_euclid(1000), DEFAULT_OFFSET_SECS);
        let window = if syssns.is_empty() {
            let (ms, me) = month_bounds(now);
            Some((start.unwrap_or(ms), end.unwrap_or(me)))
        } else {
            None
        };
        let in_window = |t: Txdtm| window.is_none_or(|(a, b)| a <= t && t <= b);
        let wanted = |syssn: &str, otn: Option<&str>| {
            syssns.iter().any(|s| s == syssn)
                || otn.is_some_and(|o| otns.iter().any(|x| x == o))
                || (syssns.is_empty() && otns.is_empty())
        };
        // Payments first (sorted by syssn), then refunds in the order they were recorded; then by
        // time, stably. With ids given, the candidates come from the indexes: an enquiry costs
        // the same however many payments and refunds the simulator holds. Only a window-only
        // enquiry scans.
        let (payments, refunds): (Vec<&Payment>, Vec<&(String, String)>) = if syssns.is_empty() && otns.is_empty() {
            let mut pays: Vec<&Payment> = self.payments.values().collect();
            pays.sort_by(|a, b| a.seed.syssn.cmp(&b.seed.syssn));
            (pays, self.order.iter().collect())
        } else {
            let mut pay_ids: Vec<&String> = syssns.iter().collect();
            pay_ids.extend(otns.iter().filter_map(|o| self.payment_by_otn.get(&(app_code.to_owned(), o.clone()))));
            pay_ids.sort();
            pay_ids.dedup();
            let pays = pay_ids.into_iter().filter_map(|s| self.payments.get(s)).collect();
            let mut keys: Vec<&(String, String)> = syssns.iter().filter_map(|s| self.refund_by_syssn.get(s)).collect();
            keys.extend(
                otns.iter()
                    .filter_map(|o| self.refunds.get_key_value(&(app_code.to_owned(), o.clone())).map(|(k, _)| k)),
            );
            keys.sort_by_key(|k| self.order_pos.get(*k).copied().unwrap_or(usize::MAX));
            keys.dedup();
            (pays, keys)
        };
        let mut records: Vec<(i64, serde_json::Value)> = Vec::new();
        for pay in payments.into_iter().filter(|p| p.app_code == app_code) {
            if wanted(&pay.seed.syssn, pay.seed.out_trade_no.as_deref()) && in_window(pay.txdtm) {
                records.push((0, self.payment_json(pay)));
            }
        }
        for key in refunds {
            let Some(r) = self.refunds.get(key).filter(|r| r.app_code == app_code && r.sys_ms <= now_ms - lag_ms)
            else {
                continue;
            };
            if wanted(&r.syssn, Some(&r.out_trade_no)) && in_window(r.sysdtm) {
                records.push((r.sys_ms, self.refund_json(r)));
            }
        }
        records.sort_by_key(|(t, _)| *t);
        let data: Vec<serde_json::Value> =
            records.into_iter().skip((page - 1) * page_size).take(page_size).map(|(_, v)| v).collect();
        serde_json::json!({
            "respcd": "0000", "resperr": "", "respmsg": "",
            "page": page, "page_size": page_size, "data": data,
        })
    }
}
