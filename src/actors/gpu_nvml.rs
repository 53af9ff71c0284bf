//! NVML GPU sampler: reads every GPU through the process's NVML handle each interval and
//! sends dcgm-exporter-named samples to the window store. Critical XID errors come from an
//! NVML event set drained on each tick. A lost GPU is a health event (`pulse_gpu_lost` = 1,
//! status degraded), not a crash; the other GPUs keep being sampled.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::event::XidError;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{EventSet, Nvml};

use crate::clock::Clock;
use crate::mailbox::Mailbox;
use crate::messages::samples::SampleBatch;
use crate::messages::stats::{ComponentState, ComponentStats, GetStats};
use crate::model::catalog as m;
use crate::model::series::{Sample, Series, SeriesKey};
use crate::nvml::{describe, identity, read_device, DeviceIdentity};
use crate::sampling::{emit_and_reschedule, Sampler, SamplerCounters, Tick};

/// One GPU as the sampler knows it.
struct Gpu {
    identity: DeviceIdentity,
    labels: Vec<(String, String)>,
    /// Series keys built once per metric name (and per pid for process memory).
    series: HashMap<String, Series>,
    /// Last critical XID seen since the previous tick (0 when none).
    pending_xid: f64,
    lost: bool,
}

impl Gpu {
    fn series(&mut self, name: &str, extra: &[(&str, String)]) -> Series {
        let key = if extra.is_empty() {
            name.to_string()
        } else {
            format!(
                "{name}|{}",
                extra
                    .iter()
                    .map(|(_, v)| v.as_str())
                    .collect::<Vec<_>>()
                    .join("|")
            )
        };
        let labels = &self.labels;
        self.series
            .entry(key)
            .or_insert_with(|| {
                let mut l = labels.clone();
                l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
                SeriesKey::shared(name, l)
            })
            .clone()
    }
}

/// Samples real GPUs.
pub struct NvmlGpuSampler {
    nvml: &'static Nvml,
    gpus: Vec<Gpu>,
    hostname: String,
    events: Option<EventSet<'static>>,
    interval: Duration,
    downstream: Mailbox<SampleBatch>,
    clock: Clock,
    counters: SamplerCounters,
    telemetry: crate::telemetry::Telemetry,
    /// Read errors other than "not supported", by metric.
    read_errors: u64,
    /// Last read error, for status.
    last_error: Option<String>,
}

impl NvmlGpuSampler {
    /// Traces each batch through `telemetry` (off by default).
    pub fn with_telemetry(mut self, telemetry: crate::telemetry::Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }

    /// Discovers the GPUs; fails when NVML cannot list them.
    pub fn new(
        nvml: &'static Nvml,
        hostname: String,
        interval: Duration,
        downstream: Mailbox<SampleBatch>,
        clock: Clock,
    ) -> Result<Self, String> {
        let count = nvml.device_count().map_err(|e| describe(&e))?;
        let mut gpus = Vec::new();
        for i in 0..count {
            let device = nvml.device_by_index(i).map_err(|e| describe(&e))?;
            let id = identity(i, &device).map_err(|e| describe(&e))?;
            let labels = vec![
                ("gpu".to_string(), i.to_string()),
                ("UUID".to_string(), id.uuid.clone()),
                ("device".to_string(), format!("nvidia{i}")),
                ("modelName".to_string(), id.model_name.clone()),
                ("Hostname".to_string(), hostname.clone()),
            ];
            gpus.push(Gpu {
                identity: id,
                labels,
                series: HashMap::new(),
                pending_xid: 0.0,
                lost: false,
            });
        }
        let events = Self::register_xid_events(nvml, count);
        Ok(NvmlGpuSampler {
            nvml,
            gpus,
            hostname,
            events,
            interval,
            downstream,
            clock,
            counters: SamplerCounters::default(),
            read_errors: 0,
            last_error: None,
            telemetry: Default::default(),
        })
    }

    /// One event set for critical XID errors on every GPU that supports it.
    fn register_xid_events(nvml: &'static Nvml, count: u32) -> Option<EventSet<'static>> {
        let mut set = nvml.create_event_set().ok()?;
        for i in 0..count {
            let device = nvml.device_by_index(i).ok()?;
            set = match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
                Ok(s) => s,
                Err(e) => {
                    tracing::info!(gpu = i, error = %e.error, "XID events not available");
                    return None;
                }
            };
        }
        Some(set)
    }

    /// Drains pending XID events without waiting.
    fn drain_xid_events(&mut self) {
        let Some(set) = &self.events else { return };
        loop {
            match set.wait(0) {
                Ok(ev) => {
                    let uuid = ev.device.uuid().ok();
                    let xid = match ev.event_data {
                        Some(XidError::Value(v)) => v as f64,
                        _ => -1.0,
                    };
                    if let Some(gpu) = self
                        .gpus
                        .iter_mut()
                        .find(|g| Some(&g.identity.uuid) == uuid.as_ref())
                    {
                        tracing::warn!(gpu = gpu.identity.index, xid, "XID error");
                        gpu.pending_xid = xid;
                    }
                }
                Err(NvmlError::Timeout) => break,
                Err(e) => {
                    tracing::debug!(error = %describe(&e), "XID event wait");
                    break;
                }
            }
        }
    }

    fn read_all(&mut self, now_ms: i64) -> Vec<Sample> {
        self.drain_xid_events();
        let mut out = Vec::new();
        for i in 0..self.gpus.len() {
            let device = match self.nvml.device_by_index(i as u32) {
                Ok(d) => d,
                Err(e) => {
                    self.note_lost(i, &describe(&e));
                    let gpu = &mut self.gpus[i];
                    out.push(Sample::new(gpu.series(m::GPU_LOST, &[]), now_ms, 1.0));
                    continue;
                }
            };
            let reading = read_device(&device);
            if reading.lost {
                self.note_lost(i, "NVML reports the GPU as lost");
            }
            for (metric, err) in &reading.errors {
                self.read_errors += 1;
                self.last_error = Some(format!("gpu {i}: {metric}: {err}"));
            }
            let gpu = &mut self.gpus[i];
            for (metric, value) in &reading.metrics {
                out.push(Sample::new(gpu.series(metric, &[]), now_ms, *value));
            }
            if self.events.is_some() {
                out.push(Sample::new(
                    gpu.series(m::XID_ERRORS, &[]),
                    now_ms,
                    gpu.pending_xid,
                ));
                gpu.pending_xid = 0.0;
            }
            for p in &reading.processes {
                let extra = [("pid", p.pid.to_string()), ("process_name", p.name.clone())];
                out.push(Sample::new(
                    gpu.series(m::PROCESS_FB_USED, &extra),
                    now_ms,
                    p.used_mib,
                ));
            }
            out.push(Sample::new(
                gpu.series(m::GPU_LOST, &[]),
                now_ms,
                if gpu.lost { 1.0 } else { 0.0 },
            ));
        }
        out
    }

    fn note_lost(&mut self, i: usize, why: &str) {
        let gpu = &mut self.gpus[i];
        if !gpu.lost {
            tracing::error!(gpu = i, uuid = %gpu.identity.uuid, why, "GPU lost");
        }
        gpu.lost = true;
    }
}

impl Actor for NvmlGpuSampler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.notify(Tick);
    }
}

impl Sampler for NvmlGpuSampler {
    fn counters(&mut self) -> &mut SamplerCounters {
        &mut self.counters
    }
}

impl Handler<Tick> for NvmlGpuSampler {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) {
        let batch =
            SampleBatch::new(self.read_all(self.clock.now_ms())).traced(&self.telemetry, "nvml");
        let downstream = self.downstream.clone();
        emit_and_reschedule(self, ctx, &downstream, batch, self.interval);
    }
}

impl Handler<GetStats> for NvmlGpuSampler {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut st = ComponentStats::new("gpu_sampler", "source");
        self.counters.fill(&mut st);
        st.extra.insert("gpus", self.gpus.len() as f64);
        st.extra
            .insert("read_errors_total", self.read_errors as f64);
        let lost: Vec<String> = self
            .gpus
            .iter()
            .filter(|g| g.lost)
            .map(|g| g.identity.index.to_string())
            .collect();
        st.extra.insert("gpus_lost", lost.len() as f64);
        st.reason = Some(format!(
            "NVML, {} GPUs on {}",
            self.gpus.len(),
            self.hostname
        ));
        if !lost.is_empty() {
            st.state = ComponentState::Degraded;
            st.reason = Some(format!("GPU {} lost", lost.join(", ")));
        } else if let Some(e) = &self.last_error {
            st.reason = Some(format!("NVML, last read error: {e}"));
        }
        MessageResult(st)
    }
}
