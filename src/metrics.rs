//! Prometheus metrics for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Refusal {
    pub endpoint: &'static str,
    pub reason: &'static str,
}

/// Every metric the service exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub sign_ins: Family<Outcome, Counter>,
    pub registrations: Family<Outcome, Counter>,
    pub refreshes: Family<Outcome, Counter>,
    pub refusals: Family<Refusal, Counter>,
    /// Seconds from receiving a refresh request to sending its response.
    pub refresh_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("devbound");
        let sign_ins = Family::<Outcome, Counter>::default();
        let registrations = Family::<Outcome, Counter>::default();
        let refreshes = Family::<Outcome, Counter>::default();
        let refusals = Family::<Refusal, Counter>::default();
        // 50 µs to about 1.6 s in doublings.
        let refresh_latency = Histogram::new(
            std::iter::successors(Some(0.000_05), |bound| Some(bound * 2.0)).take(16),
        );

        registry.register("sign_ins", "Password sign-ins by outcome", sign_ins.clone());
        registry.register(
            "dbsc_registrations",
            "DBSC session registrations by outcome",
            registrations.clone(),
        );
        registry.register(
            "dbsc_refreshes",
            "DBSC refresh requests by outcome (renewed, challenged, terminated, rejected)",
            refreshes.clone(),
        );
        registry.register(
            "refusals",
            "Rejected requests by endpoint and reason",
            refusals.clone(),
        );
        registry.register(
            "dbsc_refresh_duration_seconds",
            "Time to handle a DBSC refresh request",
            refresh_latency.clone(),
        );
        Self {
            registry,
            sign_ins,
            registrations,
            refreshes,
            refusals,
            refresh_latency,
        }
    }

    pub fn refuse(&self, endpoint: &'static str, reason: &'static str) {
        self.refusals
            .get_or_create(&Refusal { endpoint, reason })
            .inc();
    }

    /// Encodes the metrics in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}
