//! Tests of `detector.rs`.

use super::*;

fn feed(d: &mut Detector, values: impl IntoIterator<Item = f64>) -> Vec<Verdict> {
    values.into_iter().map(|v| d.update(v)).collect()
}

fn wave(i: usize) -> f64 {
    50.0 + 20.0 * ((i as f64) * std::f64::consts::TAU / 60.0).sin()
}

#[test]
fn a_repeating_pattern_is_quiet_and_a_spike_in_it_is_not() {
    let mut d = Detector::new(DetectorConfig::default());
    let verdicts = feed(&mut d, (0..3000).map(wave));
    let loud = verdicts[200..].iter().filter(|v| v.score >= 0.78).count();
    assert_eq!(loud, 0, "a clean wave should raise nothing");
    let spike = d.update(400.0);
    assert_eq!(spike.score, 1.0);
    assert_eq!(spike.reason, Reason::NewHigh);
    let (lo, hi) = spike.expected.unwrap();
    assert!(lo < 31.0 && hi > 69.0 && hi < 75.0, "expected {lo}..{hi}");
}

#[test]
fn the_expected_range_only_from_a_level_changes_no_score() {
    let mut all = Detector::new(DetectorConfig::default());
    let mut lazy = Detector::new(DetectorConfig::default()).expecting_from(0.78);
    // A wave with jumps and new extremes now and then.
    let values = (0..6000).map(|i| match i % 997 {
        0 => 300.0 + i as f64,
        500 => 12.0,
        _ => wave(i),
    });
    let mut reported = 0;
    for v in values {
        let (a, b) = (all.update(v), lazy.update(v));
        assert_eq!((a.score, a.reason), (b.score, b.reason));
        if b.score >= 0.78 {
            assert_eq!(b.expected, a.expected);
            reported += 1;
        } else if a.reason == Reason::Normal {
            assert_eq!(b.expected, None);
        }
    }
    assert!(reported >= 5, "{reported}");
}

#[test]
fn resting_mutes_novel_moves_but_not_new_extremes() {
    let mut d = Detector::new(DetectorConfig::default());
    feed(&mut d, (0..2000).map(wave));
    // Trough straight to crest: novel, fires, and starts a rest.
    let trough = (0..60).find(|i| wave(2000 + i) < 31.0).unwrap() + 2000;
    feed(&mut d, (2000..=trough).map(wave));
    assert!(d.update(69.0).score >= FIRE_LEVEL);
    // Crest straight to trough, inside the rest: muted.
    let crest = (1..60).find(|i| wave(trough + i) > 69.0).unwrap() + trough;
    feed(&mut d, (trough + 1..=crest).map(wave));
    let muted = d.update(31.0);
    assert_eq!((muted.score, muted.reason), (0.0, Reason::Resting));
    // A new low inside the rest: reported.
    let low = d.update(-900.0);
    assert_eq!((low.score, low.reason), (1.0, Reason::NewLow));
}

#[test]
fn a_pattern_change_inside_the_range_is_a_novel_transition() {
    let mut d = Detector::new(DetectorConfig::default());
    feed(&mut d, (0..3000).map(wave));
    // Jump from the trough straight to the crest: both values are in range, the move is not.
    let trough = (0..60).find(|i| wave(3000 + i) < 31.0).unwrap() + 3000;
    feed(&mut d, (3000..=trough).map(wave));
    let v = d.update(69.0);
    assert_eq!(v.reason, Reason::NovelTransition, "{v:?}");
    assert!(v.score >= 0.78);
}

#[test]
fn a_step_change_fires_once_then_the_new_level_is_normal() {
    let mut d = Detector::new(DetectorConfig::default());
    let noisy = |i: usize, level: f64| level + ((i * 7919) % 10) as f64 * 0.1;
    feed(&mut d, (0..1000).map(|i| noisy(i, 50.0)));
    let after = feed(&mut d, (1000..3000).map(|i| noisy(i, 80.0)));
    let loud: Vec<usize> = after
        .iter()
        .enumerate()
        .filter(|(_, v)| v.score >= 0.78)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(loud.first(), Some(&0), "the step itself is flagged");
    assert!(loud.len() <= 3, "then the new level is learned: {loud:?}");
    assert!(loud.iter().all(|i| *i < 200), "{loud:?}");
}

#[test]
fn a_flat_line_is_quiet_until_it_moves() {
    let mut d = Detector::new(DetectorConfig::default());
    let verdicts = feed(&mut d, std::iter::repeat_n(0.0, 5000));
    // (The coarse scale has seen 24 times fewer values, so its scores fade more slowly.)
    assert!(verdicts.iter().all(|v| v.score < 0.05));
    assert!(d.update(1.0).score >= 0.78);
}

#[test]
fn warm_up_scores_nothing_and_nan_is_ignored() {
    let mut d = Detector::new(DetectorConfig::default());
    let verdicts = feed(&mut d, (0..150).map(|i| if i == 10 { 1e9 } else { 1.0 }));
    assert!(verdicts.iter().all(|v| v.reason == Reason::WarmingUp));
    assert_eq!(d.update(f64::NAN).score, 0.0);
    assert_eq!(d.samples_seen(), 150);
}

#[test]
fn memory_stays_bounded() {
    let mut d = Detector::new(DetectorConfig::default());
    feed(&mut d, (0..50_000).map(|i| (i * 7919 % 1000) as f64));
    assert_eq!(d.ring.capacity(), RING);
    let coarse = d
        .coarse
        .as_ref()
        .expect("the coarse scale is on by default");
    assert_eq!(coarse.detector.ring.capacity(), COARSE_RING);
}

#[test]
fn config_errors_name_the_field() {
    let bad = DetectorConfig {
        context_order: 9,
        ..DetectorConfig::default()
    };
    let (field, message) = bad.validate().unwrap_err();
    assert_eq!(field, "context_order");
    assert!(message.contains("context_order"));
    let bad = DetectorConfig {
        bins: 1,
        ..DetectorConfig::default()
    };
    let (field, message) = bad.validate().unwrap_err();
    assert_eq!(field, "bins");
    assert!(message.contains("bins"));
    let bad = DetectorConfig {
        coarse_block: 1,
        ..DetectorConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().0, "coarse_block");
}

#[test]
fn a_drifting_series_is_not_anomalous_and_a_jump_in_it_is() {
    // The wave climbs out of its range by ordinary steps: 50 units over 3 000 samples.
    let drifting = |i: usize| wave(i) + i as f64 / 60.0;
    let mut d = Detector::new(DetectorConfig::default());
    let verdicts = feed(&mut d, (0..3000).map(drifting));
    let loud: Vec<_> = verdicts[300..]
        .iter()
        .filter(|v| v.reason == Reason::NewHigh)
        .collect();
    assert!(loud.is_empty(), "drift read as new highs: {loud:?}");
    assert!(d.rebins() > 1, "the range widened with the drift");
    let jump = d.update(drifting(3000) + 200.0);
    assert_eq!(jump.reason, Reason::NewHigh);

    // With the rule off, the same drift is a string of new highs.
    let mut old = Detector::new(DetectorConfig {
        drift_step_factor: 0.0,
        ..DetectorConfig::default()
    });
    let fired = feed(&mut old, (0..3000).map(drifting))
        .iter()
        .filter(|v| v.reason == Reason::NewHigh)
        .count();
    assert!(fired > 3, "{fired}");
}

#[test]
fn a_wave_that_loses_half_its_swing_is_seen_at_the_coarse_scale() {
    // A noisy wave, then its swing halves: every value and every step stays ordinary (the
    // wave passes through all of them near its crests and troughs), but the block means
    // move in a way they never have.
    let noisy_wave = |i: usize| wave(i) + ((i * 7919) % 10) as f64 * 0.3;
    let calmer = |i: usize| 50.0 + (noisy_wave(i) - 50.0) / 2.0;
    let series = (0..4000).map(noisy_wave).chain((4000..4600).map(calmer));
    let loud = |cfg: DetectorConfig| -> Vec<(usize, u32)> {
        let mut d = Detector::new(cfg);
        feed(&mut d, series.clone())
            .iter()
            .enumerate()
            .filter(|(i, v)| *i >= 4000 && v.score >= 0.78)
            .map(|(i, v)| (i, v.over))
            .collect()
    };
    let both = loud(DetectorConfig::default());
    let one_scale = loud(DetectorConfig {
        coarse_block: 0,
        ..DetectorConfig::default()
    });
    assert!(both.iter().any(|(_, over)| *over == 24), "{both:?}");
    assert!(one_scale.is_empty(), "{one_scale:?}");
}

#[test]
fn a_coarse_verdict_says_it_judged_a_mean() {
    let verdict = |over| Verdict {
        score: 0.9,
        reason: Reason::NovelTransition,
        expected: Some((1.0, 2.0)),
        over,
    };
    assert_eq!(verdict(1).detail(), Reason::NovelTransition.describe());
    assert_eq!(
        verdict(24).detail(),
        "the series moved in a way it never has from where it was, as a mean of its last 24 \
         samples (the expected range is of such means)"
    );
}
