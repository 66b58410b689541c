//! Reading `sluice affected --format json` reports: the units, their statuses and reasons as
//! plain tuples a test compares against a literal list.

use serde_json::Value;

/// `(id, status)` of every unit in `report[section]` ("stacks" or "apps"), in report order.
pub fn statuses(report: &Value, section: &str) -> Vec<(String, String)> {
    report[section]
        .as_array()
        .unwrap_or_else(|| panic!("{section} is a list: {report:#}"))
        .iter()
        .map(|u| {
            (
                u["id"].as_str().expect("id").to_string(),
                u["status"].as_str().expect("status").to_string(),
            )
        })
        .collect()
}

/// Shorthand for building an expected list of string pairs.
pub fn expect(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// The unit with `id` in `report[section]`.
pub fn unit<'a>(report: &'a Value, section: &str, id: &str) -> &'a Value {
    report[section]
        .as_array()
        .expect("list")
        .iter()
        .find(|u| u["id"] == id)
        .unwrap_or_else(|| panic!("{id} not in {section}: {report:#}"))
}

/// Reasons of one unit as `(kind, path, via, stack)` with absent fields as "".
pub fn reasons(report: &Value, section: &str, id: &str) -> Vec<(String, String, String, String)> {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    unit(report, section, id)["reasons"]
        .as_array()
        .expect("reasons list")
        .iter()
        .map(|r| (s(&r["kind"]), s(&r["path"]), s(&r["via"]), s(&r["stack"])))
        .collect()
}

/// The distinct reason kinds of one unit, sorted.
pub fn kinds(report: &Value, section: &str, id: &str) -> Vec<String> {
    let mut k: Vec<String> = reasons(report, section, id)
        .into_iter()
        .map(|r| r.0)
        .collect();
    k.sort();
    k.dedup();
    k
}

/// `(kind, path)` of every reason of one unit, sorted.
pub fn kind_paths(report: &Value, section: &str, id: &str) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = reasons(report, section, id)
        .into_iter()
        .map(|r| (r.0, r.1))
        .collect();
    k.sort();
    k.dedup();
    k
}

/// The upstream stacks named by the dependency reasons of one unit, sorted.
pub fn dependency_reasons(report: &Value, section: &str, id: &str) -> Vec<String> {
    let mut k: Vec<String> = reasons(report, section, id)
        .into_iter()
        .filter(|r| r.0 == "dependency")
        .map(|r| r.3)
        .collect();
    k.sort();
    k
}

/// The warnings of a report as `(file, line, message)`.
pub fn warnings(report: &Value) -> Vec<(String, u64, String)> {
    report["warnings"]
        .as_array()
        .expect("warnings list")
        .iter()
        .map(|w| {
            (
                w["file"].as_str().expect("file").to_string(),
                w["line"].as_u64().expect("line"),
                w["message"].as_str().expect("message").to_string(),
            )
        })
        .collect()
}

/// Fails unless `report["warnings"]` holds one for `file` whose message contains `needle`.
#[track_caller]
pub fn assert_warning(report: &Value, file: &str, needle: &str) {
    let found = report["warnings"]
        .as_array()
        .expect("warnings list")
        .iter()
        .any(|w| w["file"] == file && w["message"].as_str().is_some_and(|m| m.contains(needle)));
    assert!(found, "no warning for {file} naming {needle:?}: {report:#}");
}
