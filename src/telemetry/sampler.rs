//! Which traces are kept. Parent-based: a span with a parent follows the parent's decision
//! (a sampled `traceparent` is always followed, an unsampled one never is). A new trace is
//! kept when its trace id falls under the ratio (the same rule as OpenTelemetry's
//! `TraceIdRatioBased`, so every service with the same ratio keeps the same traces) and
//! fewer than `max_per_second` traces have started this second.
//!
//! The decision is made once, at the root: an unsampled root creates no children at all,
//! which is what keeps tracing cheap at 100 000 requests a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

/// The sampler; clones share their counters.
#[derive(Debug, Clone)]
pub struct PulseSampler {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Trace ids whose low 63 bits are below this are kept.
    ratio_bound: u64,
    /// 0: no limit.
    max_per_second: u32,
    epoch: Instant,
    /// The current second since `epoch` (high 32 bits) and traces started in it (low 32).
    window: AtomicU64,
    counters: SamplerCounters,
}

/// What the sampler decided, since start.
#[derive(Debug, Default)]
pub struct SamplerCounters {
    /// New traces kept.
    pub sampled: AtomicU64,
    /// New traces left out by the ratio.
    pub ratio_dropped: AtomicU64,
    /// New traces left out because `max_per_second` were already started this second.
    pub rate_limited: AtomicU64,
}

impl PulseSampler {
    pub fn new(ratio: f64, max_per_second: u32) -> Self {
        let ratio = ratio.clamp(0.0, 1.0);
        let ratio_bound = if ratio >= 1.0 {
            u64::MAX
        } else {
            (ratio * (1u64 << 63) as f64) as u64
        };
        PulseSampler {
            inner: Arc::new(Inner {
                ratio_bound,
                max_per_second,
                epoch: Instant::now(),
                window: AtomicU64::new(0),
                counters: SamplerCounters::default(),
            }),
        }
    }

    pub fn counters(&self) -> &SamplerCounters {
        &self.inner.counters
    }

    /// Decides for a new trace (no parent).
    pub fn keep_new_trace(&self, trace_id: TraceId) -> bool {
        let c = &self.inner.counters;
        let low = u64::from_be_bytes(trace_id.to_bytes()[8..16].try_into().expect("8 bytes")) >> 1;
        if self.inner.ratio_bound != u64::MAX && low >= self.inner.ratio_bound {
            c.ratio_dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if !self.take_token() {
            c.rate_limited.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        c.sampled.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Whether a new trace would be refused for the per-second limit right now: lets the
    /// caller skip building a span that would be dropped (the common case under load).
    pub fn saturated(&self) -> bool {
        let max = self.inner.max_per_second as u64;
        if max == 0 {
            return false;
        }
        let current = self.inner.window.load(Ordering::Relaxed);
        let now = self.inner.epoch.elapsed().as_secs();
        if current >> 32 == now && current & 0xffff_ffff >= max {
            self.inner
                .counters
                .rate_limited
                .fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// One of this second's `max_per_second` starts, if any is left.
    fn take_token(&self) -> bool {
        let max = self.inner.max_per_second;
        if max == 0 {
            return true;
        }
        let now = self.inner.epoch.elapsed().as_secs();
        let window = &self.inner.window;
        let mut current = window.load(Ordering::Relaxed);
        loop {
            let (second, started) = (current >> 32, current & 0xffff_ffff);
            let next = if second != now {
                (now << 32) | 1
            } else if started < max as u64 {
                current + 1
            } else {
                return false;
            };
            match window.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }
}

impl ShouldSample for PulseSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context
            .filter(|cx| cx.has_active_span())
            .map(|cx| cx.span().span_context().clone())
            .filter(|sc| sc.is_valid());
        let (keep, trace_state) = match parent {
            Some(sc) => (sc.is_sampled(), sc.trace_state().clone()),
            None => (self.keep_new_trace(trace_id), TraceState::default()),
        };
        SamplingResult {
            decision: if keep {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> TraceId {
        TraceId::from_bytes(n.to_be_bytes())
    }

    #[test]
    fn ratio_keeps_about_that_fraction_of_random_trace_ids() {
        let s = PulseSampler::new(0.25, 0);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let kept = (0..20_000)
            .filter(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.keep_new_trace(id(((x as u128) << 64) | x as u128))
            })
            .count();
        assert!((4_500..5_500).contains(&kept), "kept {kept} of 20 000");
        assert_eq!(
            s.counters().ratio_dropped.load(Ordering::Relaxed) as usize,
            20_000 - kept
        );
    }

    #[test]
    fn at_most_max_per_second_new_traces_start() {
        let s = PulseSampler::new(1.0, 5);
        let kept = (0..50).filter(|i| s.keep_new_trace(id(*i + 1))).count();
        assert_eq!(kept, 5);
        assert_eq!(s.counters().rate_limited.load(Ordering::Relaxed), 45);
    }

    #[test]
    fn ratio_zero_keeps_nothing_and_one_keeps_everything() {
        let none = PulseSampler::new(0.0, 0);
        let all = PulseSampler::new(1.0, 0);
        for i in 1..1000u128 {
            let t = id(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834));
            assert!(!none.keep_new_trace(t));
            assert!(all.keep_new_trace(t));
        }
    }
}
