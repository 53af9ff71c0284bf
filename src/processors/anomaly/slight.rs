//! What is too slight to be an anomaly on a GPU: a departure from the expected range
//! smaller than what a sensor's resolution and an ordinary job give, in the metric's own
//! unit. Real training telemetry is full of them: a temperature 1–3 °C past every value
//! seen as a GPU settles in training or cools after a job, utilisation 0 → 2 % on an idle
//! card. No operator acts on those. The floors come from the units (a few degrees, a tenth
//! of the utilisation scale), not from fitting any file; docs/anomaly-detection.md has
//! what they changed.
//!
//! Such a firing still counts towards a workload change (it is one GPU of a host moving
//! with the others); alone, it is dropped and counted (`pulse_anomaly_slight_firings_total`).
//! So is a blip: a firing held for the workload decision whose series is back near its
//! expected range when it is decided ([`is_back`]).

use super::record::Anomaly;
use super::workload::gpu_of;
use crate::model::catalog;
use crate::model::series::SeriesKey;

/// The least departure from its expected range, in the metric's own unit, that makes a
/// firing of a GPU series an anomaly: 5 °C for temperatures, 10 points for utilisations
/// (percent); 0 (any) for other units and for series that are not a GPU's.
pub fn least_departure(series: &SeriesKey) -> f64 {
    if gpu_of(series).is_none() {
        return 0.0;
    }
    match catalog::unit_of(series.name()) {
        "celsius" => 5.0,
        "percent" => 10.0,
        _ => 0.0,
    }
}

/// Whether `anomaly` lies at least its metric's [`least_departure`] outside its expected
/// range.
pub fn departs_enough(anomaly: &Anomaly) -> bool {
    anomaly.outside(anomaly.value) >= least_departure(&anomaly.series)
}

/// Whether a GPU firing held for the workload decision is over by the time it is decided:
/// its series' value `now` is back within its least departure of the range expected of
/// it. A utilisation dip or a power peak of a second or two is a blip of an ordinary job
/// (a data loader catching up, a collective waiting), not a state anyone acts on.
pub fn is_back(anomaly: &Anomaly, now: f64) -> bool {
    now.is_finite() && anomaly.outside(now) <= least_departure(&anomaly.series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::anomaly::detector::Reason;

    fn anomaly(name: &str, labels: &[(&str, &str)], value: f64) -> Anomaly {
        Anomaly {
            id: 0,
            series: SeriesKey::shared(name, labels.iter().copied()),
            first_ms: 0,
            last_ms: 0,
            value,
            expected_low: 30.0,
            expected_high: 70.0,
            score: 1.0,
            peak_score: 1.0,
            count: 1,
            reason: Reason::NewHigh,
            detail: String::new(),
            is_rate: false,
            peers: None,
        }
    }

    #[test]
    fn a_gpu_temperature_a_few_degrees_past_its_range_is_too_slight() {
        let gpu = [("Hostname", "h"), ("gpu", "0")];
        assert!(!departs_enough(&anomaly(catalog::GPU_TEMP, &gpu, 73.0)));
        assert!(!departs_enough(&anomaly(catalog::GPU_TEMP, &gpu, 66.0)));
        assert!(departs_enough(&anomaly(catalog::GPU_TEMP, &gpu, 75.0)));
        assert!(departs_enough(&anomaly(catalog::GPU_TEMP, &gpu, 20.0)));
        // Utilisation: 10 points.
        assert!(!departs_enough(&anomaly(catalog::GPU_UTIL, &gpu, 79.0)));
        assert!(departs_enough(&anomaly(catalog::GPU_UTIL, &gpu, 15.0)));
        // Watts, MiB and anything not a GPU's: any departure.
        assert!(departs_enough(&anomaly(catalog::POWER_USAGE, &gpu, 71.0)));
        assert!(departs_enough(&anomaly(
            catalog::GPU_TEMP,
            &[("host", "h")],
            71.0
        )));
    }

    #[test]
    fn a_firing_whose_series_is_back_when_decided_was_a_blip() {
        let gpu = [("Hostname", "h"), ("gpu", "0")];
        // Utilisation dipped to 15 (expected 30..70), and is back near the range: 25 is
        // within its 10 points, 18 is not.
        let dip = anomaly(catalog::GPU_UTIL, &gpu, 15.0);
        assert!(is_back(&dip, 25.0));
        assert!(!is_back(&dip, 18.0));
        assert!(!is_back(&dip, f64::NAN));
        // Watts: back only inside the range itself.
        let peak = anomaly(catalog::POWER_USAGE, &gpu, 90.0);
        assert!(is_back(&peak, 70.0));
        assert!(!is_back(&peak, 70.5));
    }
}
