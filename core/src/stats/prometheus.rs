//! The stats in the Prometheus text exposition format.

use super::{Stats, TierStats};

impl Stats {
    /// Prometheus text exposition of these stats.
    pub fn to_prometheus(&self, namespace: &str) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let ns = namespace;
        for (name, value) in [
            ("hits_total", self.hits),
            ("misses_total", self.misses),
            ("sets_total", self.sets),
            ("not_stored_total", self.not_stored),
            ("deletes_total", self.deletes),
            ("invalidations_total", self.invalidations),
            ("resyncs_total", self.resyncs),
            ("sqlite_rebuilds_total", self.sqlite_rebuilds),
            ("sqlite_reopens_total", self.sqlite_reopens),
            ("source_requests_total", self.source.requests),
            ("source_successes_total", self.source.successes),
            ("source_failures_total", self.source.failures),
            ("source_timeouts_total", self.source.timeouts),
            ("source_not_found_total", self.source.not_found),
            ("source_rejected_total", self.source.rejected),
            ("source_coalesced_total", self.source.coalesced),
            (
                "source_coalesced_processes_total",
                self.source.coalesced_processes,
            ),
            (
                "source_coalesced_machines_total",
                self.source.coalesced_machines,
            ),
            ("stale_served_total", self.source.stale_served),
            ("negative_hits_total", self.source.negative_hits),
            ("refreshes_total", self.source.refreshes),
            ("breaker_trips_total", self.breaker.trips),
        ]
        .into_iter()
        .chain(self.redis.iter().flat_map(|r| {
            [
                ("redis_errors_total", r.errors),
                ("redis_skipped_total", r.skipped),
            ]
        }))
        .chain(
            self.redis
                .iter()
                .flat_map(|r| r.backplane.iter())
                .flat_map(|b| {
                    [
                        ("backplane_sent_total", b.sent),
                        ("backplane_received_total", b.received),
                        ("backplane_replayed_total", b.replayed),
                        ("backplane_resyncs_total", b.resyncs),
                        ("backplane_deferred_total", b.deferred),
                    ]
                }),
        ) {
            let _ = writeln!(out, "# TYPE tierstack_{name} counter");
            let _ = writeln!(out, "tierstack_{name}{{namespace=\"{ns}\"}} {value}");
        }
        let state = self.breaker.state.as_str();
        let _ = writeln!(out, "# TYPE tierstack_breaker_open gauge");
        let _ = writeln!(
            out,
            "tierstack_breaker_open{{namespace=\"{ns}\",state=\"{state}\"}} {}",
            u8::from(!self.breaker.allows_request)
        );
        type Family = (&'static str, &'static str, fn(&TierStats) -> f64);
        let families: [Family; 6] = [
            ("tier_hits_total", "counter", |t| t.hits as f64),
            ("tier_misses_total", "counter", |t| t.misses as f64),
            ("tier_evictions_total", "counter", |t| t.evictions as f64),
            ("tier_entries", "gauge", |t| t.entries as f64),
            ("tier_bytes", "gauge", |t| t.bytes as f64),
            ("tier_avg_time_microseconds", "gauge", |t| t.avg_time_us),
        ];
        for (name, kind, value) in families {
            let _ = writeln!(out, "# TYPE tierstack_{name} {kind}");
            for t in &self.tiers {
                let _ = writeln!(
                    out,
                    "tierstack_{name}{{namespace=\"{ns}\",tier=\"{}\"}} {}",
                    t.tier,
                    value(t)
                );
            }
        }
        out
    }
}
