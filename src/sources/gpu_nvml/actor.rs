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

use crate::messages::samples::SampleBatch;
use crate::model::catalog as m;
use crate::model::series::{Sample, Series, SeriesKey};
use crate::runtime::clock::Clock;
use crate::runtime::mailbox::Mailbox;
use crate::runtime::stats::{figure, ComponentState, ComponentStats, GetStats};
use crate::sources::gpu_nvml::device::{
    describe, identity, read_device, DeviceIdentity, ProcessMemory,
};
use crate::sources::sampling::{emit_and_reschedule, Sampler, SamplerCounters, Tick};

/// One GPU as the sampler knows it.
struct Gpu {
    identity: DeviceIdentity,
    labels: Vec<(String, String)>,
    /// Series keys built once per metric name.
    series: HashMap<String, Series>,
    /// Process memory series of the processes seen on the last read, by pid and name. A
    /// process gone is forgotten: a host running short jobs would otherwise keep a key
    /// for every process it ever ran.
    processes: HashMap<(u32, String), Series>,
    /// Last critical XID seen since the previous tick (0 when none).
    pending_xid: f64,
    lost: bool,
}

impl Gpu {
    fn new(identity: DeviceIdentity, labels: Vec<(String, String)>) -> Self {
        Gpu {
            identity,
            labels,
            series: HashMap::new(),
            processes: HashMap::new(),
            pending_xid: 0.0,
            lost: false,
        }
    }

    fn series(&mut self, name: &str) -> Series {
        let labels = &self.labels;
        self.series
            .entry(name.to_string())
            .or_insert_with(|| SeriesKey::shared(name, labels.clone()))
            .clone()
    }

    /// Process memory samples of this read's processes; keys of processes no longer
    /// running are dropped.
    fn process_samples(&mut self, processes: &[ProcessMemory], now_ms: i64) -> Vec<Sample> {
        let mut previous = std::mem::take(&mut self.processes);
        processes
            .iter()
            .map(|p| {
                let key = (p.pid, p.name.clone());
                let series = previous.remove(&key).unwrap_or_else(|| {
                    let mut l = self.labels.clone();
                    l.push(("pid".to_string(), p.pid.to_string()));
                    l.push(("process_name".to_string(), p.name.clone()));
                    SeriesKey::shared(m::PROCESS_FB_USED, l)
                });
                self.processes.insert(key, series.clone());
                Sample::new(series, now_ms, p.used_mib)
            })
            .collect()
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
            gpus.push(Gpu::new(id, labels));
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
                    out.push(Sample::new(gpu.series(m::GPU_LOST), now_ms, 1.0));
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
                out.push(Sample::new(gpu.series(metric), now_ms, *value));
            }
            if self.events.is_some() {
                out.push(Sample::new(
                    gpu.series(m::XID_ERRORS),
                    now_ms,
                    gpu.pending_xid,
                ));
                gpu.pending_xid = 0.0;
            }
            out.extend(gpu.process_samples(&reading.processes, now_ms));
            out.push(Sample::new(
                gpu.series(m::GPU_LOST),
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
        st.set(figure::GPUS, self.gpus.len() as f64);
        st.set(figure::READ_ERRORS_TOTAL, self.read_errors as f64);
        let lost: Vec<String> = self
            .gpus
            .iter()
            .filter(|g| g.lost)
            .map(|g| g.identity.index.to_string())
            .collect();
        st.set(figure::GPUS_LOST, lost.len() as f64);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn process(pid: u32, name: &str, used_mib: f64) -> ProcessMemory {
        ProcessMemory {
            pid,
            name: name.to_string(),
            used_mib,
        }
    }

    #[test]
    fn process_series_are_kept_while_the_process_runs_and_forgotten_after() {
        let identity = DeviceIdentity {
            index: 0,
            uuid: "GPU-test".to_string(),
            model_name: "test".to_string(),
            pci_bus_id: None,
        };
        let mut gpu = Gpu::new(identity, vec![("gpu".to_string(), "0".to_string())]);
        let first = gpu.process_samples(&[process(10, "a", 1.0), process(11, "b", 2.0)], 1);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].series.label("pid"), Some("10"));
        assert_eq!(first[1].series.label("process_name"), Some("b"));
        assert_eq!(gpu.processes.len(), 2);
        // 10 goes on (same key, same Arc), 11 ends, 12 starts.
        let second = gpu.process_samples(&[process(10, "a", 3.0), process(12, "c", 4.0)], 2);
        assert!(std::sync::Arc::ptr_eq(&first[0].series, &second[0].series));
        assert_eq!(second[0].value, 3.0);
        let mut pids: Vec<u32> = gpu.processes.keys().map(|k| k.0).collect();
        pids.sort();
        assert_eq!(pids, vec![10, 12]);
        // A thousand short jobs later, only the running ones are held.
        for pid in 100..1100 {
            gpu.process_samples(&[process(pid, "job", 1.0)], pid as i64);
        }
        assert_eq!(gpu.processes.len(), 1);
    }
}
