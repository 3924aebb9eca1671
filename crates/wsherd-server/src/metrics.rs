//! `/metrics`: the herd's figures, published into the installed Prometheus recorder for each
//! scrape ([`wsherd::Herd::publish_metrics`]) and rendered, plus the event clients' gauges,
//! read at scrape time rather than recorded.
//!
//! Rendering walks every metric, so it runs on the blocking pool, never on the arbiter, and
//! one rendering serves every scrape that arrives within [`ServerOptions::metrics_cache`]
//! (scrapes that arrive while it runs wait for it): a thousand scrapes at once cost one.
//!
//! [`ServerOptions::metrics_cache`]: crate::ServerOptions::metrics_cache

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::State;
use crate::auth::Query;
use crate::errors::json_error;

/// How often [`install_prometheus`]'s thread runs the recorder's upkeep.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs a Prometheus recorder as the process's `metrics` recorder, so what wsherd's crates
/// record shows on `/metrics`, and returns its handle for [`ServerOptions::prometheus`].
/// A thread of its own runs the recorder's upkeep every 5 s (histograms are drained there,
/// whether anyone scrapes or not). Fails if a recorder was installed already.
///
/// [`ServerOptions::prometheus`]: crate::ServerOptions::prometheus
pub fn install_prometheus() -> Result<PrometheusHandle, String> {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| format!("cannot install the Prometheus recorder: {error}"))?;
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("wsherd-metrics-upkeep".to_owned())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        })
        .map_err(|error| format!("cannot start the metrics upkeep thread: {error}"))?;
    Ok(handle)
}

/// The last rendering and when it was made.
#[derive(Default)]
pub(crate) struct Cache {
    last: tokio::sync::Mutex<Option<(Instant, Bytes)>>,
}

/// `GET /metrics`.
pub(crate) async fn metrics(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    if let Some(refused) = state.refusal(&req, Query::Refused) {
        return refused;
    }
    match state.metrics_text().await {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(text),
        Err(why) => json_error(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

impl State {
    /// The text, from the cache while it is fresh; one rendering at a time.
    async fn metrics_text(&self) -> Result<Bytes, String> {
        let mut last = self.metrics.last.lock().await;
        if let Some((at, text)) = &*last
            && at.elapsed() < self.options.metrics_cache
        {
            return Ok(text.clone());
        }
        let handle = self.options.prometheus.clone();
        let herd = self.herd.clone();
        let recorded = match handle {
            // Exact figures: the herd copies its counters into the recorder, then it renders
            // (the governor's gauges among them).
            Some(handle) => web::block(move || {
                herd.publish_metrics();
                handle.render()
            })
            .await
            .map_err(|_| "rendering the metrics failed".to_owned())?,
            None => String::new(),
        };
        let mut text = recorded;
        self.server_gauges(&mut text);
        self.cluster_figures(&mut text);
        let text = Bytes::from(text);
        *last = Some((Instant::now(), text.clone()));
        Ok(text)
    }

    /// The server's own figures (its event clients), read at scrape time, in the Prometheus
    /// text format.
    fn server_gauges(&self, out: &mut String) {
        let counters = &self.options.counters;
        let gauges: [(&str, &str, &str, u64); 5] = [
            (
                "wsherd_events_clients",
                "gauge",
                "Clients of /api/events connected now.",
                counters.event_clients.load(Ordering::Relaxed) as u64,
            ),
            (
                "wsherd_events_clients_cut_total",
                "counter",
                "Clients of /api/events cut because they did not read what was sent.",
                counters.event_clients_cut.load(Ordering::Relaxed),
            ),
            (
                "wsherd_gateway_sessions",
                "gauge",
                "Clients of the gateway connected now.",
                counters.gateway_sessions.load(Ordering::Relaxed) as u64,
            ),
            (
                "wsherd_gateway_dropped_total",
                "counter",
                "Frames the gateway dropped for clients that did not keep up (drop_oldest).",
                counters.gateway_dropped.load(Ordering::Relaxed),
            ),
            (
                "wsherd_gateway_slow_consumers_total",
                "counter",
                "Gateway clients closed because they did not keep up (disconnect).",
                counters.gateway_slow_closed.load(Ordering::Relaxed),
            ),
        ];
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        for (name, kind, help, value) in gauges {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            );
        }
    }

    /// In a cluster: its counters, the live members, and who owns each endpoint
    /// (`wsherd_cluster_owner{endpoint,member}` is 1 for the member that owns it; an endpoint
    /// nobody owns has none), each read at scrape time.
    fn cluster_figures(&self, out: &mut String) {
        let Some(membership) = self.herd.membership() else {
            return;
        };
        let member = label_value(&membership.member());
        for figure in membership.figures() {
            // A name from another crate's `Membership`: only what a metric name may hold.
            let valid = !figure.name.is_empty()
                && figure
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                continue;
            }
            let name = format!("wsherd_cluster_{}_total", figure.name);
            // One line of help: a line break or backslash would end or bend it.
            let help = figure.help.replace(['\n', '\\'], " ");
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{member=\"{member}\"}} {}\n",
                figure.value
            );
        }
        let ownership = membership.ownership();
        let local = ownership.iter().filter(|o| o.local).count();
        let unowned = ownership.iter().filter(|o| o.owner.is_none()).count();
        let gauges = [
            (
                "wsherd_cluster_members",
                "Members of the cluster seen alive by this one, itself included.",
                membership.members().len(),
            ),
            (
                "wsherd_cluster_endpoints_local",
                "Endpoints this member runs.",
                local,
            ),
            (
                "wsherd_cluster_endpoints_unowned",
                "Endpoints of the cluster no member holds now.",
                unowned,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name}{{member=\"{member}\"}} {value}\n"
            );
        }
        let name = "wsherd_cluster_owner";
        let _ = write!(
            out,
            "# HELP {name} 1 for the member that owns the endpoint, as this member saw the leases.\n# TYPE {name} gauge\n"
        );
        for seen in &ownership {
            if let Some(owner) = &seen.owner {
                let _ = writeln!(
                    out,
                    "{name}{{endpoint=\"{}\",member=\"{}\"}} 1",
                    label_value(seen.endpoint.as_str()),
                    label_value(owner)
                );
            }
        }
    }
}

/// `text` as a Prometheus label value: backslash, quote and newline escaped.
fn label_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::label_value;

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(label_value("a\nb"), "a\\nb");
        assert_eq!(label_value("plain-name_1"), "plain-name_1");
    }
}
