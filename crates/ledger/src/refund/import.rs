//! Reading refund requests from CSV or JSON Lines, one line at a time (any file size). Pure parsing:
//! every problem is reported with its line and the field it concerns.

use std::io::BufRead;

use crate::NewRefund;
use qfpay::request::parse_txamt;
use serde::Deserialize;

/// Longest line accepted; a refund request is ~100 bytes.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

const COLUMNS: [&str; 7] = ["syssn", "out_trade_no", "txamt", "orig_txamt", "mchid", "udid", "merchant"];

/// Splits one CSV line (RFC 4180: quoted fields, `""` for a quote inside one).
pub fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => cur.push(c),
            (false, '"') if cur.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            (false, '"') => return Err("a quote inside an unquoted field".into()),
            (false, ',') => {
                fields.push(std::mem::take(&mut cur));
                was_quoted = false;
            }
            (false, c) if was_quoted => return Err(format!("text {c:?} after a closing quote")),
            (false, c) => cur.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    fields.push(cur);
    Ok(fields)
}

/// Column positions from a CSV header.
#[derive(Debug, Clone)]
pub struct Header {
    pos: [Option<usize>; 7],
    width: usize,
}

impl Header {
    pub fn parse(line: &str) -> Result<Self, String> {
        let names = split_csv(line).map_err(|e| format!("header: {e}"))?;
        let mut pos = [None; 7];
        for (i, name) in names.iter().enumerate() {
            let name = name.trim();
            let Some(c) = COLUMNS.iter().position(|col| *col == name) else {
                return Err(format!("header: unknown column {name:?} (expected {})", COLUMNS.join(",")));
            };
            if pos[c].replace(i).is_some() {
                return Err(format!("header: column {name} appears twice"));
            }
        }
        let missing: Vec<&str> = COLUMNS[..3].iter().zip(&pos).filter(|(_, p)| p.is_none()).map(|(c, _)| *c).collect();
        if !missing.is_empty() {
            return Err(format!("header: missing column(s) {} (need syssn,out_trade_no,txamt)", missing.join(",")));
        }
        Ok(Self { pos, width: names.len() })
    }

    /// One data line as a refund request.
    pub fn record(&self, line: &str) -> Result<NewRefund, String> {
        let f = split_csv(line)?;
        if f.len() != self.width {
            return Err(format!("expected {} fields as in the header, found {}", self.width, f.len()));
        }
        let get = |c: usize| self.pos[c].map(|i| f[i].trim()).filter(|v| !v.is_empty());
        let orig = get(3).map(|v| parse_txamt("orig_txamt", v)).transpose().map_err(|e| e.to_string())?;
        Ok(NewRefund {
            syssn: get(0).unwrap_or("").to_owned(),
            out_trade_no: get(1).unwrap_or("").to_owned(),
            txamt: parse_txamt("txamt", get(2).unwrap_or("")).map_err(|e| e.to_string())?,
            orig_txamt: orig,
            mchid: get(4).map(str::to_owned),
            udid: get(5).map(str::to_owned),
            merchant: get(6).map(str::to_owned),
            traceparent: None,
        })
    }
}

/// A JSON Lines record: amounts as numbers or digit strings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonLine {
    syssn: String,
    out_trade_no: String,
    txamt: serde_json::Value,
    #[serde(default)]
    orig_txamt: Option<serde_json::Value>,
    #[serde(default)]
    mchid: Option<String>,
    #[serde(default)]
    udid: Option<String>,
    #[serde(default)]
    merchant: Option<String>,
}

fn amount(field: &'static str, v: &serde_json::Value) -> Result<u64, String> {
    match v {
        serde_json::Value::Number(n) => parse_txamt(field, &n.to_string()).map_err(|e| e.to_string()),
        serde_json::Value::String(s) => parse_txamt(field, s).map_err(|e| e.to_string()),
        _ => Err(format!("{field}: must be a whole number of minor units")),
    }
}

/// One JSON Lines record as a refund request.
pub fn json_record(line: &str) -> Result<NewRefund, String> {
    let j: JsonLine = serde_json::from_str(line).map_err(|e| format!("not a refund JSON object: {e}"))?;
    Ok(NewRefund {
        txamt: amount("txamt", &j.txamt)?,
        orig_txamt: j.orig_txamt.as_ref().filter(|v| !v.is_null()).map(|v| amount("orig_txamt", v)).transpose()?,
        syssn: j.syssn,
        out_trade_no: j.out_trade_no,
        mchid: j.mchid,
        udid: j.udid,
        merchant: j.merchant,
        traceparent: None,
    })
}

/// Streams refund requests out of a reader, numbering lines from 1.
pub struct Lines<R> {
    reader: R,
    format: Option<Format>,
    header: Option<Header>,
    line: usize,
    buf: Vec<u8>,
}

/// A line that could not be read as a refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub error: String,
}

impl<R: BufRead> Lines<R> {
    /// `format` `None`: decided by the first non-blank line (`{` means JSON Lines).
    pub fn new(reader: R, format: Option<Format>) -> Self {
        Self { reader, format, header: None, line: 0, buf: Vec::new() }
    }

    /// The next refund request, or the next line's error; `None` at the end. A header error is
    /// fatal for a CSV file and returned as `Err` with line 1 by every later call.
    pub fn next_record(&mut self) -> Option<Result<(usize, NewRefund), LineError>> {
        loop {
            self.buf.clear();
            let n = match std::io::Read::take(&mut self.reader, MAX_LINE as u64 + 1).read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(e) => return Some(Err(LineError { line: self.line + 1, error: format!("read error: {e}") })),
            };
            self.line += 1;
            let line_no = self.line;
            if n > MAX_LINE && !self.buf.ends_with(b"\n") {
                // Skip the rest of the over-long line.
                let mut rest = Vec::new();
                let _ = self.reader.read_until(b'\n', &mut rest);
                return Some(Err(LineError { line: line_no, error: format!("line longer than {MAX_LINE} bytes") }));
            }
            let mut bytes: &[u8] = &self.buf;
            if line_no == 1 {
                bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            }
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Some(Err(LineError { line: line_no, error: "not valid UTF-8".into() }));
            };
            let text = text.trim_end_matches(['\n', '\r']);
            if text.trim().is_empty() {
                continue;
            }
            let format = *self.format.get_or_insert(if text.trim_start().starts_with('{') {
                Format::Jsonl
            } else {
                Format::Csv
            });
            let result = match format {
                Format::Jsonl => json_record(text),
                Format::Csv => match &self.header {
                    None => match Header::parse(text) {
                        Ok(h) => {
                            self.header = Some(h);
                            continue;
                        }
                        Err(e) => {
                            // Without a header nothing else can be read: stop here.
                            self.format = Some(Format::Csv);
                            let mut drain = Vec::new();
                            while self.reader.read_until(b'\n', &mut drain).is_ok_and(|n| n > 0) {
                                drain.clear();
                            }
                            return Some(Err(LineError { line: line_no, error: e }));
                        }
                    },
                    Some(h) => h.record(text),
                },
            };
            return Some(result.map(|r| (line_no, r)).map_err(|error| LineError { line: line_no, error }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &str) -> Vec<Result<(usize, NewRefund), LineError>> {
        let mut l = Lines::new(input.as_bytes(), None);
        std::iter::from_fn(|| l.next_record()).collect()
    }

    #[test]
    fn csv_with_bom_crlf_quotes_and_optional_columns() {
        let got = all("\u{feff}syssn,out_trade_no,txamt,udid\r\n123,RF1,100,\"desk, 1\"\r\n\r\n456,RF2,200,\r\n");
        assert_eq!(got.len(), 2);
        let (line, r) = got[0].clone().unwrap();
        assert_eq!((line, r.txamt, r.udid.as_deref()), (2, 100, Some("desk, 1")));
        let (line, r) = got[1].clone().unwrap();
        assert_eq!((line, r.out_trade_no.as_str(), r.udid), (4, "RF2", None));
    }

    #[test]
    fn bad_csv_lines_say_which_line_and_field() {
        let got = all("syssn,out_trade_no,txamt\n1,RF1,-5\n1,RF2\n1,RF3,abc\n1,\"RF4,5\n1,RF5,99999999999999999999\n");
        let errs: Vec<(usize, String)> =
            got.into_iter().map(|r| r.map(|_| ()).unwrap_err()).map(|e| (e.line, e.error)).collect();
        assert_eq!(errs[0].0, 2);
        assert!(errs[0].1.starts_with("txamt"), "{:?}", errs[0]);
        assert!(errs[1].1.contains("expected 3 fields"), "{:?}", errs[1]);
        assert!(errs[2].1.starts_with("txamt"));
        assert!(errs[3].1.contains("not closed"));
        assert!(errs[4].1.starts_with("txamt"));
    }

    #[test]
    fn a_bad_header_stops_the_file() {
        let got = all("syssn,txamt\n1,2\n");
        assert_eq!(got.len(), 1);
        assert!(got[0].clone().unwrap_err().error.contains("missing column(s) out_trade_no"));
        let got = all("syssn,out_trade_no,txamt,amount\n");
        assert!(got[0].clone().unwrap_err().error.contains("unknown column \"amount\""));
    }

    #[test]
    fn json_lines_accept_numbers_or_digit_strings_and_name_bad_fields() {
        let got = all(
            "{\"syssn\":\"1\",\"out_trade_no\":\"RF1\",\"txamt\":100,\"orig_txamt\":\"500\"}\n{\"syssn\":\"1\",\"out_trade_no\":\"RF2\",\"txamt\":1.5}\n{\"syssn\":\"1\",\"out_trade_no\":\"RF3\",\"txamt\":1,\"amount\":2}\n",
        );
        let r = got[0].clone().unwrap().1;
        assert_eq!((r.txamt, r.orig_txamt), (100, Some(500)));
        assert!(got[1].clone().unwrap_err().error.starts_with("txamt"));
        assert!(got[2].clone().unwrap_err().error.contains("unknown field `amount`"));
    }

    #[test]
    fn invalid_utf8_and_overlong_lines_are_reported_and_skipped() {
        let mut input = b"syssn,out_trade_no,txamt\n1,RF\xff,1\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        input.extend(b"\n1,RF9,1\n");
        let mut l = Lines::new(&input[..], None);
        let got: Vec<_> = std::iter::from_fn(|| l.next_record()).collect();
        assert_eq!(got[0].clone().unwrap_err(), LineError { line: 2, error: "not valid UTF-8".into() });
        assert!(got[1].clone().unwrap_err().error.contains("longer than"));
        assert_eq!(got[2].clone().unwrap().0, 4);
    }
}
