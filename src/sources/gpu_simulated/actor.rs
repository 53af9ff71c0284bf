//! Simulated GPU sampler: steps the simulated fleet (`fleet.rs`) every interval and
//! sends the samples to the window store. Listens on the command stream and honours
//! cleanup: cached memory is released and the next sample shows it.

use std::time::Duration;

use actix::prelude::*;
use tokio::sync::broadcast;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;

use crate::actions::messages::{AckOutcome, CommandAck};
use crate::messages::commands::Command;
use crate::messages::samples::SampleBatch;
use crate::runtime::clock::Clock;
use crate::runtime::mailbox::Mailbox;
use crate::runtime::stats::{figure, ComponentStats, GetStats};
use crate::sources::gpu_simulated::fleet::SimFleet;
use crate::sources::sampling::{emit_and_reschedule, Sampler, SamplerCounters, Tick};

/// The simulated fleet as an actor.
pub struct SimulatedGpuSampler {
    fleet: SimFleet,
    interval: Duration,
    downstream: Mailbox<SampleBatch>,
    /// Taken at start and turned into a stream of commands.
    commands: Option<broadcast::Receiver<Command>>,
    clock: Clock,
    /// Why the simulator runs (shown in status).
    reason: String,
    counters: SamplerCounters,
    telemetry: crate::telemetry::Telemetry,
    /// Cleanup commands applied.
    cleanups: u64,
    /// Commands missed because the command stream outran this actor.
    commands_missed: u64,
    /// Where it acknowledges the commands of rules' actions, as a worker does.
    acks: Option<Recipient<CommandAck>>,
}

impl SimulatedGpuSampler {
    pub fn new(
        fleet: SimFleet,
        interval: Duration,
        downstream: Mailbox<SampleBatch>,
        commands: broadcast::Receiver<Command>,
        clock: Clock,
        reason: String,
    ) -> Self {
        SimulatedGpuSampler {
            fleet,
            interval,
            downstream,
            commands: Some(commands),
            clock,
            reason,
            counters: SamplerCounters::default(),
            cleanups: 0,
            commands_missed: 0,
            telemetry: Default::default(),
            acks: None,
        }
    }

    /// Acknowledges the commands of rules' actions here (the action runner).
    pub fn acknowledging_to(mut self, acks: Recipient<CommandAck>) -> Self {
        self.acks = Some(acks);
        self
    }

    fn ack(&self, id: &str, outcome: AckOutcome, detail: String) {
        if let Some(to) = &self.acks {
            to.do_send(CommandAck {
                command_id: id.to_string(),
                outcome,
                detail: Some(detail),
            });
        }
    }

    /// Traces each batch through `telemetry` (off by default).
    pub fn with_telemetry(mut self, telemetry: crate::telemetry::Telemetry) -> Self {
        self.telemetry = telemetry;
        self
    }
}

impl Actor for SimulatedGpuSampler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(rx) = self.commands.take() {
            ctx.add_stream(BroadcastStream::new(rx));
        }
        ctx.notify(Tick);
    }
}

impl Sampler for SimulatedGpuSampler {
    fn counters(&mut self) -> &mut SamplerCounters {
        &mut self.counters
    }
}

impl Handler<Tick> for SimulatedGpuSampler {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Self::Context) {
        let batch = SampleBatch::new(self.fleet.sample(self.clock.now_ms()))
            .traced(&self.telemetry, "gpu_simulated");
        let downstream = self.downstream.clone();
        emit_and_reschedule(self, ctx, &downstream, batch, self.interval);
    }
}

impl StreamHandler<Result<Command, BroadcastStreamRecvError>> for SimulatedGpuSampler {
    fn handle(&mut self, item: Result<Command, BroadcastStreamRecvError>, _: &mut Self::Context) {
        match item {
            Ok(cmd @ Command::Cleanup { .. }) => {
                let n = self.fleet.cleanup(|host, gpu| cmd.cleans(host, gpu));
                self.cleanups += 1;
                tracing::info!(gpus = n, "simulated fleet: cleanup released cached memory");
                // A worker answers for its own GPUs only.
                if n > 0 {
                    let detail = format!("simulated fleet: released cached memory on {n} GPU(s)");
                    self.ack(cmd.id(), AckOutcome::Done, detail);
                }
            }
            // A worker that does not know a command for its GPU says so.
            Ok(Command::Action {
                id, name, labels, ..
            }) => {
                let (host, gpu) = (labels.get("Hostname"), labels.get("gpu"));
                if self
                    .fleet
                    .has(host.map(String::as_str), gpu.map(String::as_str))
                {
                    let detail = format!("the simulated fleet does not implement {name:?}");
                    self.ack(&id, AckOutcome::Failed, detail);
                }
            }
            Err(BroadcastStreamRecvError::Lagged(n)) => self.commands_missed += n,
        }
    }

    /// The command stream ends at shutdown; the sampler keeps sampling until then.
    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<GetStats> for SimulatedGpuSampler {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        let mut st = ComponentStats::new("gpu_sampler", "source");
        st.reason = Some(self.reason.clone());
        self.counters.fill(&mut st);
        st.set(figure::GPUS, self.fleet.gpu_count() as f64);
        st.set(figure::CLEANUPS_TOTAL, self.cleanups as f64);
        st.set(figure::COMMANDS_MISSED_TOTAL, self.commands_missed as f64);
        MessageResult(st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::Recorder;
    use crate::model::catalog as m;
    use crate::sources::gpu_simulated::fleet::Scenario;

    #[actix::test]
    async fn samples_every_interval_and_honours_cleanup() {
        tokio::time::pause();
        let rec = Recorder::start();
        let (tx, rx) = broadcast::channel(4);
        let sampler = SimulatedGpuSampler::new(
            SimFleet::new(2, "h", &[Scenario::Steady], 1),
            Duration::from_secs(1),
            rec.mailbox(),
            rx,
            Clock::tokio_anchored(0),
            "test".into(),
        )
        .start();
        // Ticks at t=0, 1 s and 2 s.
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        tokio::task::yield_now().await;
        let used = |samples: &[crate::model::series::Sample]| -> Vec<(i64, f64)> {
            samples
                .iter()
                .filter(|s| s.series.name() == m::FB_USED && s.series.label("gpu") == Some("0"))
                .map(|s| (s.timestamp_ms, s.value))
                .collect()
        };
        let before = used(&rec.samples().await);
        // One sample per interval; the timer's millisecond rounding never adds up.
        assert_eq!(before.len(), 3, "{before:?}");
        for (i, (t, _)) in before.iter().enumerate() {
            assert!((0..=1).contains(&(t - i as i64 * 1000)), "{before:?}");
        }

        tx.send(Command::Cleanup {
            id: "c1".into(),
            gpus: None,
            host: None,
            issued_at_ms: 2000,
        })
        .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        tokio::task::yield_now().await;
        let after = used(&rec.samples().await);
        assert_eq!(after.len(), 4);
        assert!(after[3].1 < before[2].1 - 10_000.0, "{after:?}");
        let stats = sampler.send(GetStats).await.unwrap();
        assert_eq!(stats.extra[&figure::CLEANUPS_TOTAL], 1.0);
        assert_eq!(stats.emitted_total, 4 * 2 * 17);
    }
}
