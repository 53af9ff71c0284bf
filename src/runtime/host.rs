//! What this host is called: the `Hostname` label of its GPUs, and Pulse's address for users.

/// This host's name, for the `Hostname` label: `PULSE_HOSTNAME` where set (in Kubernetes the
/// node's name, as the pod's own host name is the pod's), else the kernel's host name.
pub fn hostname() -> String {
    first_name([
        std::env::var("PULSE_HOSTNAME").ok(),
        std::fs::read_to_string("/proc/sys/kernel/hostname").ok(),
        std::env::var("HOSTNAME").ok(),
    ])
}

/// Pulse's URL for users without `rules.external_url`: the listening address, with this
/// host's name where it names no host (`0.0.0.0`), as Prometheus derives its own.
pub fn default_external_url(listen: std::net::SocketAddr) -> String {
    match listen.ip().is_unspecified() {
        true => format!("http://{}:{}", hostname(), listen.port()),
        false => format!("http://{listen}"),
    }
}

/// The first of `names` that is not blank, trimmed; `localhost` when none is.
fn first_name(names: [Option<String>; 3]) -> String {
    names
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::{default_external_url, first_name, hostname};

    #[test]
    fn the_hostname_is_the_first_name_given_that_is_not_blank() {
        let name = |a: Option<&str>, b: Option<&str>| {
            first_name([a.map(String::from), b.map(String::from), None])
        };
        assert_eq!(name(Some("node-7"), Some("pulse-x2k9f\n")), "node-7");
        assert_eq!(name(Some("  "), Some("pulse-x2k9f\n")), "pulse-x2k9f");
        assert_eq!(name(None, None), "localhost");
    }

    #[test]
    fn the_external_url_names_the_host_where_the_address_does_not() {
        let url = |a: &str| default_external_url(a.parse().unwrap());
        assert_eq!(url("127.0.0.1:9400"), "http://127.0.0.1:9400");
        assert_eq!(url("0.0.0.0:9400"), format!("http://{}:9400", hostname()));
    }
}
