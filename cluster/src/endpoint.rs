//! How the workers of a cluster are named as trunk ends: `node/index`. A room lives on one
//! worker, and a trunk joins two workers, so a member's record names its worker's end and a
//! trunk description is addressed to one.

/// The trunk end of worker `worker` of node `node`.
pub fn name(node: &str, worker: usize) -> String {
    format!("{node}/{worker}")
}

/// The node and worker index a trunk end names; `None` when it is not one.
pub fn parse(end: &str) -> Option<(&str, usize)> {
    let (node, worker) = end.rsplit_once('/')?;
    Some((node, worker.parse().ok()?)).filter(|(n, _)| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_garbage_is_refused() {
        assert_eq!(parse(&name("paris-1", 3)), Some(("paris-1", 3)));
        assert_eq!(parse("a/b/0"), Some(("a/b", 0)));
        for bad in ["", "a", "a/", "/0", "a/x", "a/-1"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
