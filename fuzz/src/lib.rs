//! Helpers shared by the fuzz targets: how one fuzz input is read as several untrusted inputs.

use std::collections::BTreeMap;

/// Reads `KEY=VALUE` lines (an environment); lines without `=` are skipped, a later key wins.
pub fn env_lines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Reads sections `--- KEY` followed by the section's body (up to the next `--- ` line): what
/// an HTTP server answers per key. The body keeps its line breaks; the last one is dropped.
pub fn sections(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut key: Option<String> = None;
    let mut body = String::new();
    for line in text.split_inclusive('\n') {
        if let Some(k) = line.strip_prefix("--- ") {
            if let Some(prev) = key.take() {
                out.insert(prev, std::mem::take(&mut body));
            }
            key = Some(k.trim_end_matches(['\r', '\n']).to_string());
            body.clear();
        } else if key.is_some() {
            body.push_str(line);
        }
    }
    if let Some(k) = key {
        out.insert(k, body);
    }
    for v in out.values_mut() {
        if v.ends_with('\n') {
            v.pop();
        }
    }
    out
}
