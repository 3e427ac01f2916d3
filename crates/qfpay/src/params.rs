//! Request parameters as they are signed and sent.

use std::collections::BTreeMap;

/// The parameters of one request, kept sorted by name in byte order (the signing order).
///
/// Empty values are dropped on insert, so they are never signed and never sent: that satisfies
/// both QFPay's current rule (leave empties out of the signature) and the legacy one (which signed
/// whatever was sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name=value`; an empty value removes the parameter instead.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        if value.is_empty() {
            self.0.remove(&name);
        } else {
            self.0.insert(name, value);
        }
    }

    /// Adds the parameter only when there is a value.
    pub fn insert_opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.insert(name, v);
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `application/x-www-form-urlencoded` body of the same parameters the signature covers.
    pub fn form_body(&self) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.iter() {
            ser.append_pair(k, v);
        }
        ser.finish()
    }

    /// Parses a form body as QFPay's server would: decoded values. A repeated name keeps the last.
    pub fn from_form_body(body: &[u8]) -> Self {
        let mut p = Self::new();
        for (k, v) in form_urlencoded::parse(body) {
            p.insert(k.into_owned(), v.into_owned());
        }
        p
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut p = Self::new();
        for (k, v) in iter {
            p.insert(k, v);
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_never_kept() {
        let mut p = Params::new();
        p.insert("pay_type", "");
        p.insert("a", "1");
        p.insert("a", "");
        assert!(p.is_empty());
    }

    #[test]
    fn form_body_round_trips_through_the_parser() {
        let p: Params = [("txdtm", "2024-07-05 10:14:00"), ("udid", "收銀台-01"), ("x", "a&b=c")].into_iter().collect();
        assert_eq!(Params::from_form_body(p.form_body().as_bytes()), p);
    }
}
