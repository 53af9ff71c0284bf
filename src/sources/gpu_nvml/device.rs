//! Reading GPUs through NVML: one NVML handle for the process, and one function that
//! reads a device into dcgm-exporter-named values. Used by the NVML sampler actor and by
//! `pulse probe gpu`. A metric NVML reports as not supported is absent, never zero.

use std::sync::OnceLock;

use nvml_wrapper::enum_wrappers::device::{
    Clock, EccCounter, MemoryError, PcieUtilCounter, TemperatureSensor,
};
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::error::NvmlError;
use nvml_wrapper::{Device, Nvml};
use serde::Serialize;

use crate::model::catalog as m;

const MIB: f64 = 1024.0 * 1024.0;

static NVML: OnceLock<Result<Nvml, String>> = OnceLock::new();

/// The process's NVML handle, initialised on first use; the error says why it failed.
pub fn nvml() -> Result<&'static Nvml, String> {
    NVML.get_or_init(|| Nvml::init().map_err(|e| describe(&e)))
        .as_ref()
        .map_err(|e| e.clone())
}

/// A readable NVML error.
pub fn describe(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(inner) => format!("NVML library could not be loaded ({inner})"),
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".to_string(),
        other => other.to_string(),
    }
}

/// Identity of a device, for labels.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceIdentity {
    pub index: u32,
    pub uuid: String,
    pub model_name: String,
    pub pci_bus_id: Option<String>,
}

/// One process's GPU memory.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessMemory {
    pub pid: u32,
    pub name: String,
    pub used_mib: f64,
}

/// What one read of a device gave.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DeviceReading {
    /// (dcgm-exporter metric name, value) for every supported metric.
    pub metrics: Vec<(&'static str, f64)>,
    pub processes: Vec<ProcessMemory>,
    /// Metrics NVML does not support on this device (absent from `metrics`).
    pub unsupported: Vec<&'static str>,
    /// Metrics whose read failed for another reason, with the error.
    pub errors: Vec<(&'static str, String)>,
    /// NVML says the GPU is lost (fell off the bus).
    pub lost: bool,
}

impl DeviceReading {
    fn take<T>(&mut self, metric: &'static str, r: Result<T, NvmlError>, f: impl FnOnce(T) -> f64) {
        match r {
            Ok(v) => self.metrics.push((metric, f(v))),
            Err(NvmlError::NotSupported) => self.unsupported.push(metric),
            Err(NvmlError::GpuLost) => {
                self.lost = true;
                self.errors.push((metric, "GPU is lost".to_string()));
            }
            Err(e) => self.errors.push((metric, describe(&e))),
        }
    }
}

/// Reads the identity of a device.
pub fn identity(index: u32, device: &Device<'_>) -> Result<DeviceIdentity, NvmlError> {
    Ok(DeviceIdentity {
        index,
        uuid: device.uuid()?,
        model_name: device.name()?,
        pci_bus_id: device.pci_info().ok().map(|p| p.bus_id),
    })
}

/// Reads every metric Pulse samples from one device.
pub fn read_device(device: &Device<'_>) -> DeviceReading {
    let mut r = DeviceReading::default();
    let util = device.utilization_rates();
    match util {
        Ok(u) => {
            r.metrics.push((m::GPU_UTIL, f64::from(u.gpu)));
            r.metrics.push((m::MEM_COPY_UTIL, f64::from(u.memory)));
        }
        Err(e) => r.take(m::GPU_UTIL, Err::<u32, _>(e), f64::from),
    }
    match device.memory_info() {
        Ok(mem) => {
            r.metrics
                .push((m::FB_USED, (mem.used as f64 / MIB).round()));
            r.metrics
                .push((m::FB_FREE, (mem.free as f64 / MIB).round()));
            r.metrics
                .push((m::FB_TOTAL, (mem.total as f64 / MIB).round()));
        }
        Err(e) => r.take(m::FB_USED, Err::<u64, _>(e), |v| v as f64),
    }
    r.take(
        m::GPU_TEMP,
        device.temperature(TemperatureSensor::Gpu),
        f64::from,
    );
    r.take(m::POWER_USAGE, device.power_usage(), |mw| {
        f64::from(mw) / 1000.0
    });
    r.take(m::SM_CLOCK, device.clock_info(Clock::SM), f64::from);
    r.take(m::MEM_CLOCK, device.clock_info(Clock::Memory), f64::from);
    r.take(
        m::PCIE_TX,
        device.pcie_throughput(PcieUtilCounter::Send),
        f64::from,
    );
    r.take(
        m::PCIE_RX,
        device.pcie_throughput(PcieUtilCounter::Receive),
        f64::from,
    );
    r.take(
        m::THROTTLE_REASONS,
        device.current_throttle_reasons(),
        |t| t.bits() as f64,
    );
    r.take(
        m::ECC_SBE_VOL,
        device.total_ecc_errors(MemoryError::Corrected, EccCounter::Volatile),
        |v| v as f64,
    );
    r.take(
        m::ECC_DBE_VOL,
        device.total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile),
        |v| v as f64,
    );
    match device.running_compute_processes() {
        Ok(procs) => {
            for p in procs {
                if let UsedGpuMemory::Used(bytes) = p.used_gpu_memory {
                    r.processes.push(ProcessMemory {
                        pid: p.pid,
                        name: process_name(p.pid),
                        used_mib: (bytes as f64 / MIB).round(),
                    });
                }
            }
        }
        Err(NvmlError::NotSupported) => r.unsupported.push(m::PROCESS_FB_USED),
        Err(NvmlError::GpuLost) => r.lost = true,
        Err(e) => r.errors.push((m::PROCESS_FB_USED, describe(&e))),
    }
    r
}

/// The command name of a process, from /proc; `unknown` when it cannot be read
/// (for instance a process in another PID namespace).
pub fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// `pulse probe gpu`: one read of every device, as JSON.
#[derive(Debug, Serialize)]
pub struct Probe {
    pub nvml: Result<ProbeOk, String>,
}

#[derive(Debug, Serialize)]
pub struct ProbeOk {
    pub driver_version: Option<String>,
    pub device_count: u32,
    pub devices: Vec<ProbeDevice>,
}

#[derive(Debug, Serialize)]
pub struct ProbeDevice {
    pub identity: Result<DeviceIdentity, String>,
    pub reading: Option<DeviceReading>,
}

/// Reads every device once.
pub fn probe() -> Probe {
    let nvml = match nvml() {
        Ok(n) => n,
        Err(e) => return Probe { nvml: Err(e) },
    };
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(e) => {
            return Probe {
                nvml: Err(describe(&e)),
            }
        }
    };
    let devices = (0..count)
        .map(|i| match nvml.device_by_index(i) {
            Ok(d) => ProbeDevice {
                identity: identity(i, &d).map_err(|e| describe(&e)),
                reading: Some(read_device(&d)),
            },
            Err(e) => ProbeDevice {
                identity: Err(describe(&e)),
                reading: None,
            },
        })
        .collect();
    Probe {
        nvml: Ok(ProbeOk {
            driver_version: nvml.sys_driver_version().ok(),
            device_count: count,
            devices,
        }),
    }
}
