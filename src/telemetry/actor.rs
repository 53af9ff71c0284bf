//! The tracer as a status component: answers [`GetStats`] with the trace store's size, the
//! sampler's decisions and the OTLP exporter's counts (degraded while exports fail).

use actix::prelude::*;

use crate::runtime::stats::GetStats;
use crate::telemetry::Telemetry;

pub struct TracerStats(pub Telemetry);

impl Actor for TracerStats {
    type Context = Context<Self>;
}

impl Handler<GetStats> for TracerStats {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.0.stats())
    }
}
