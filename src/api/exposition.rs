//! Prometheus text exposition (format 0.0.4): the newest value of every fresh series in the
//! window store, grouped by family with `# HELP` / `# TYPE`, then Pulse's own metrics from
//! the component stats.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::model::catalog::family_of;
use crate::model::series::{escape_label_value, Series};
use crate::runtime::stats::{ComponentState, ComponentStats, Figure};

/// Formats a value as Prometheus expects (`NaN`, `+Inf`, `-Inf`).
fn fmt_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        v.to_string()
    }
}

/// Renders the stream's series.
pub fn render_series(out: &mut String, latest: &[(Series, i64, f64)]) {
    // Family name → its series, so each family's lines are contiguous.
    let mut families: BTreeMap<&str, Vec<&(Series, i64, f64)>> = BTreeMap::new();
    for entry in latest {
        let family = family_of(entry.0.name())
            .map(|m| m.name)
            .unwrap_or(entry.0.name());
        families.entry(family).or_default().push(entry);
    }
    for (family, mut entries) in families {
        match family_of(family) {
            Some(info) => self::family(out, family, info.kind.as_str(), info.help),
            None => {
                let (kind, help) = match family {
                    "ALERTS" => (
                        "gauge",
                        "Alerts pending or firing (1 each), as Prometheus writes them.",
                    ),
                    "ALERTS_FOR_STATE" => (
                        "gauge",
                        "When each pending or firing alert became active (Unix seconds).",
                    ),
                    _ => (
                        "untyped",
                        "A series recorded by a rule or sent to Pulse (no description).",
                    ),
                };
                self::family(out, family, kind, help);
            }
        }
        // Histograms as the format wants them: each series' buckets by bound, then its sum
        // and count.
        entries.sort_by_cached_key(|e| exposition_order(&e.0));
        for (series, _, value) in entries {
            let _ = writeln!(out, "{series} {}", fmt_value(*value));
        }
    }
}

/// The order of a family's lines: by labels (without `le`), buckets before `_sum` and
/// `_count`, buckets by numeric bound (`+Inf` last).
fn exposition_order(series: &Series) -> (crate::model::labels::Labels, u8, OrderedBound) {
    let labels = series.label_set();
    let le = labels.get("le").map(|v| match &**v {
        "+Inf" | "Inf" => f64::INFINITY,
        v => v.parse().unwrap_or(f64::NAN),
    });
    let name = series.name();
    let rank = if name.ends_with("_sum") {
        1
    } else if name.ends_with("_count") {
        2
    } else {
        0
    };
    (
        labels.without("le").without(crate::promql::NAME),
        rank,
        OrderedBound(le.unwrap_or(f64::NEG_INFINITY)),
    )
}

/// A bucket bound, ordered (`total_cmp`).
struct OrderedBound(f64);

impl PartialEq for OrderedBound {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for OrderedBound {}

impl PartialOrd for OrderedBound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for OrderedBound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Renders what the HTTP listener counted.
pub fn render_connections(out: &mut String, c: &crate::api::listener::ConnectionStats) {
    use std::sync::atomic::Ordering::Relaxed;
    for (name, kind, help, value) in [
        ("pulse_http_connections_accepted_total", "counter", "HTTP connections accepted.", c.accepted.load(Relaxed)),
        ("pulse_http_connections_refused_total", "counter", "HTTP connections closed at once: server.max_connections were open.", c.refused_at_limit.load(Relaxed)),
        ("pulse_http_header_timeouts_total", "counter", "HTTP connections closed because no request header arrived within server.header_read_timeout_ms (idle or slow clients).", c.header_timeouts.load(Relaxed)),
        ("pulse_http_connections_open", "gauge", "HTTP connections open now.", c.open.load(Relaxed)),
    ] {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
}

/// Renders Pulse's own pipeline metrics.
pub fn render_components(out: &mut String, components: &[ComponentStats]) {
    let line = |out: &mut String, name: &str, c: &ComponentStats, v: f64| {
        let _ = writeln!(
            out,
            "{name}{{component=\"{}\"}} {}",
            escape_label_value(&c.name),
            fmt_value(v)
        );
    };
    let window = components.iter().find(|c| c.name == "window_store");
    family(
        out,
        "pulse_samples_ingested_total",
        "counter",
        "Samples received by the window store.",
    );
    let _ = writeln!(
        out,
        "pulse_samples_ingested_total {}",
        window.map_or(0, |w| w.received_total)
    );
    family(
        out,
        "pulse_samples_dropped_total",
        "counter",
        "Samples or records that could not be processed, all components.",
    );
    let _ = writeln!(
        out,
        "pulse_samples_dropped_total {}",
        components.iter().map(|c| c.dropped_total).sum::<u64>()
    );

    family(
        out,
        "pulse_component_received_total",
        "counter",
        "Items received, by component.",
    );
    components.iter().for_each(|c| {
        line(
            out,
            "pulse_component_received_total",
            c,
            c.received_total as f64,
        )
    });
    family(
        out,
        "pulse_component_emitted_total",
        "counter",
        "Items stored or passed downstream, by component.",
    );
    components.iter().for_each(|c| {
        line(
            out,
            "pulse_component_emitted_total",
            c,
            c.emitted_total as f64,
        )
    });
    family(
        out,
        "pulse_component_dropped_total",
        "counter",
        "Items that could not be processed, by component.",
    );
    components.iter().for_each(|c| {
        line(
            out,
            "pulse_component_dropped_total",
            c,
            c.dropped_total as f64,
        )
    });
    family(
        out,
        "pulse_mailbox_backlog",
        "gauge",
        "Messages sent to a component and not yet answered.",
    );
    components
        .iter()
        .for_each(|c| line(out, "pulse_mailbox_backlog", c, c.mailbox_backlog as f64));

    family(
        out,
        "pulse_component_state",
        "gauge",
        "1 for the component's current state.",
    );
    for c in components {
        for s in [
            ComponentState::Operational,
            ComponentState::Degraded,
            ComponentState::Down,
        ] {
            let _ = writeln!(
                out,
                "pulse_component_state{{component=\"{}\",state=\"{}\"}} {}",
                escape_label_value(&c.name),
                s.as_str(),
                u8::from(c.state == s)
            );
        }
    }

    // Component-specific figures: pulse_<key>{component=..., <its labels>}, one family per
    // figure; plain figures (`extra`) have no labels of their own.
    type Value<'a> = (&'a ComponentStats, &'a [(&'static str, String)], f64);
    let mut figures: BTreeMap<Figure, Vec<Value>> = BTreeMap::new();
    for c in components {
        for (f, v) in &c.extra {
            figures.entry(*f).or_default().push((c, &[], *v));
        }
        for f in &c.labelled {
            figures
                .entry(f.figure)
                .or_default()
                .push((c, &f.labels, f.value));
        }
    }
    for (figure, values) in figures {
        let name = format!("pulse_{}", figure.key);
        family(out, &name, figure.kind.as_str(), figure.help);
        for (c, labels, v) in values {
            let _ = write!(out, "{name}{{component=\"{}\"", escape_label_value(&c.name));
            for (k, v) in labels {
                let _ = write!(out, ",{k}=\"{}\"", escape_label_value(v));
            }
            let _ = writeln!(out, "}} {}", fmt_value(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::series::SeriesKey;

    #[test]
    fn families_are_contiguous_with_help_and_type() {
        let h = |le: &str| {
            SeriesKey::shared(
                "http_request_duration_seconds_bucket",
                [("route", "/a"), ("le", le)],
            )
        };
        let latest = vec![
            (h("+Inf"), 1, 3.0),
            (
                SeriesKey::shared("DCGM_FI_DEV_GPU_UTIL", [("gpu", "0")]),
                1,
                50.0,
            ),
            (
                SeriesKey::shared("http_request_duration_seconds_count", [("route", "/a")]),
                1,
                3.0,
            ),
            (SeriesKey::shared("custom", [("x", "1")]), 1, f64::NAN),
        ];
        let mut out = String::new();
        render_series(&mut out, &latest);
        assert!(
            out.contains("# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 50\n"),
            "{out}"
        );
        assert!(out.contains("# TYPE http_request_duration_seconds histogram\n"));
        assert_eq!(
            out.matches("# TYPE http_request_duration_seconds").count(),
            1
        );
        assert!(out.contains("custom{x=\"1\"} NaN"));
    }
}
