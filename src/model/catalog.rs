//! Metric names, types, units and help text for the exposition format.
//!
//! GPU metrics use dcgm-exporter's names, units and labels so that dashboards built for
//! dcgm-exporter work unchanged. Request metrics follow Prometheus conventions.

/// Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Gauge,
    Counter,
    Histogram,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Histogram => "histogram",
        }
    }
}

/// What the exposition says about one metric family.
#[derive(Debug, Clone, Copy)]
pub struct MetricInfo {
    pub name: &'static str,
    pub kind: MetricType,
    pub unit: &'static str,
    pub help: &'static str,
}

// GPU metrics, dcgm-exporter names and units.
/// The label naming a GPU's host (dcgm-exporter's name): the unit `pulse aggregate`
/// instances split the fleet by.
pub const HOSTNAME: &str = "Hostname";

pub const GPU_UTIL: &str = "DCGM_FI_DEV_GPU_UTIL";
pub const MEM_COPY_UTIL: &str = "DCGM_FI_DEV_MEM_COPY_UTIL";
pub const FB_USED: &str = "DCGM_FI_DEV_FB_USED";
pub const FB_FREE: &str = "DCGM_FI_DEV_FB_FREE";
pub const FB_TOTAL: &str = "DCGM_FI_DEV_FB_TOTAL";
pub const GPU_TEMP: &str = "DCGM_FI_DEV_GPU_TEMP";
pub const POWER_USAGE: &str = "DCGM_FI_DEV_POWER_USAGE";
pub const POWER_LIMIT: &str = "DCGM_FI_DEV_ENFORCED_POWER_LIMIT";
pub const SM_CLOCK: &str = "DCGM_FI_DEV_SM_CLOCK";
pub const MEM_CLOCK: &str = "DCGM_FI_DEV_MEM_CLOCK";
pub const PCIE_TX: &str = "DCGM_FI_DEV_PCIE_TX_THROUGHPUT";
pub const PCIE_RX: &str = "DCGM_FI_DEV_PCIE_RX_THROUGHPUT";
pub const XID_ERRORS: &str = "DCGM_FI_DEV_XID_ERRORS";
pub const THROTTLE_REASONS: &str = "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS";
pub const ECC_SBE_VOL: &str = "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL";
pub const ECC_DBE_VOL: &str = "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL";
// Per-process GPU memory: not in dcgm-exporter, Pulse's own.
pub const PROCESS_FB_USED: &str = "pulse_gpu_process_fb_used_mib";
pub const GPU_LOST: &str = "pulse_gpu_lost";
// Request metrics, Prometheus conventions.
pub const REQUESTS_TOTAL: &str = "http_requests_total";
pub const REQUEST_DURATION: &str = "http_request_duration_seconds";
// Derived by Pulse's processors.
pub const ANOMALY_SCORE: &str = "pulse_anomaly_score";
pub const FORECAST: &str = "pulse_forecast";
pub const EXHAUSTION_SECONDS: &str = "pulse_exhaustion_seconds";

/// Every metric Pulse produces on its stream, in exposition order.
pub const CATALOG: &[MetricInfo] = &[
    info(
        GPU_UTIL,
        MetricType::Gauge,
        "percent",
        "GPU utilization (in %).",
    ),
    info(
        MEM_COPY_UTIL,
        MetricType::Gauge,
        "percent",
        "Memory utilization (in %).",
    ),
    info(
        FB_USED,
        MetricType::Gauge,
        "mebibytes",
        "Framebuffer memory used (in MiB).",
    ),
    info(
        FB_FREE,
        MetricType::Gauge,
        "mebibytes",
        "Framebuffer memory free (in MiB).",
    ),
    info(
        FB_TOTAL,
        MetricType::Gauge,
        "mebibytes",
        "Framebuffer memory total (in MiB).",
    ),
    info(
        GPU_TEMP,
        MetricType::Gauge,
        "celsius",
        "GPU temperature (in C).",
    ),
    info(
        POWER_USAGE,
        MetricType::Gauge,
        "watts",
        "Power draw (in W).",
    ),
    info(
        POWER_LIMIT,
        MetricType::Gauge,
        "watts",
        "Enforced power limit (in W).",
    ),
    info(
        SM_CLOCK,
        MetricType::Gauge,
        "megahertz",
        "SM clock frequency (in MHz).",
    ),
    info(
        MEM_CLOCK,
        MetricType::Gauge,
        "megahertz",
        "Memory clock frequency (in MHz).",
    ),
    info(
        PCIE_TX,
        MetricType::Gauge,
        "kilobytes_per_second",
        "PCIe TX throughput (in KB/s).",
    ),
    info(
        PCIE_RX,
        MetricType::Gauge,
        "kilobytes_per_second",
        "PCIe RX throughput (in KB/s).",
    ),
    info(
        XID_ERRORS,
        MetricType::Gauge,
        "code",
        "Value of the last XID error encountered.",
    ),
    info(
        THROTTLE_REASONS,
        MetricType::Gauge,
        "bitmask",
        "Current clock throttle reasons (NVML bitmask).",
    ),
    info(
        ECC_SBE_VOL,
        MetricType::Counter,
        "errors",
        "Total number of single-bit volatile ECC errors.",
    ),
    info(
        ECC_DBE_VOL,
        MetricType::Counter,
        "errors",
        "Total number of double-bit volatile ECC errors.",
    ),
    info(
        PROCESS_FB_USED,
        MetricType::Gauge,
        "mebibytes",
        "GPU memory used by one process (in MiB).",
    ),
    info(
        GPU_LOST,
        MetricType::Gauge,
        "boolean",
        "1 when NVML reports the GPU as lost.",
    ),
    info(
        REQUESTS_TOTAL,
        MetricType::Counter,
        "requests",
        "Requests seen, by service, route and status.",
    ),
    info(
        REQUEST_DURATION,
        MetricType::Histogram,
        "seconds",
        "Request latency in seconds, by service, route and status.",
    ),
    info(
        ANOMALY_SCORE,
        MetricType::Gauge,
        "score",
        "Anomaly score (0-1) of the series named by the `metric` label and the other labels; 0 while warming up and after an anomaly.",
    ),
    info(
        FORECAST,
        MetricType::Gauge,
        "",
        "Forecast of the series named by `metric`, `horizon` ahead of the sample's time: the point (`bound=\"point\"`) or an interval bound (`lower_80`, `upper_95`, ...). Same unit as that series (per second for counters).",
    ),
    info(
        EXHAUSTION_SECONDS,
        MetricType::Gauge,
        "seconds",
        "Seconds until the series named by `metric` reaches its limit (`resource`), on its robust trend: `bound=\"estimate\"`, `earliest`, `latest`. Absent when it is not growing.",
    ),
];

const fn info(
    name: &'static str,
    kind: MetricType,
    unit: &'static str,
    help: &'static str,
) -> MetricInfo {
    MetricInfo {
        name,
        kind,
        unit,
        help,
    }
}

/// The family a series name belongs to (`x_bucket`, `x_sum`, `x_count` → `x` for histograms).
pub fn family_of(series_name: &str) -> Option<&'static MetricInfo> {
    CATALOG.iter().find(|m| {
        m.name == series_name
            || (m.kind == MetricType::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| series_name.strip_suffix(suffix) == Some(m.name)))
    })
}

/// Whether a series only grows: a counter or a histogram part (by the catalog, or by the
/// Prometheus suffixes for names it does not know). Processors judge such series by rate.
pub fn is_cumulative(series_name: &str) -> bool {
    family_of(series_name)
        .map(|f| matches!(f.kind, MetricType::Counter | MetricType::Histogram))
        .unwrap_or_else(|| {
            ["_total", "_count", "_sum", "_bucket"]
                .iter()
                .any(|s| series_name.ends_with(s))
        })
}

/// Unit of a metric, for API responses.
pub fn unit_of(name: &str) -> &'static str {
    family_of(name).map(|m| m.unit).unwrap_or("")
}

/// Names of the per-GPU device metrics (everything `DCGM_FI_` in the catalog).
pub fn gpu_device_metrics() -> impl Iterator<Item = &'static MetricInfo> {
    CATALOG.iter().filter(|m| m.name.starts_with("DCGM_FI_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_parts_belong_to_their_family() {
        assert_eq!(
            family_of("http_request_duration_seconds_bucket")
                .unwrap()
                .name,
            REQUEST_DURATION
        );
        assert_eq!(family_of(GPU_UTIL).unwrap().kind, MetricType::Gauge);
        assert!(family_of("DCGM_FI_DEV_GPU_UTIL_sum").is_none());
        assert_eq!(unit_of(FB_USED), "mebibytes");
    }
}
