//! The resolved configuration written back in the file's own keys and units (`wsherd check`),
//! as TOML that loads again: every default made explicit, secrets redacted.

use std::fmt::Write as _;
use std::time::Duration;

use wsherd_connection::{ConnectionConfig, InvalidUtf8Policy, SecretSlot, TlsClass};
use wsherd_protocol::{HeartbeatMode, KindRule, ReplyMatcher, redact_url};
use wsherd_supervisor::{Action, ActionTable, ConnectMode, EndpointSpec, Jitter, OverflowPolicy};

use super::{EndpointConfig, HerdConfig, ServerSettings, TokenSource};

/// What stands for a secret that is never shown (header values, on-open messages).
pub const REDACTED: &str = "<redacted>";

impl HerdConfig {
    /// This configuration as TOML in the reference's keys and units, defaults included, with
    /// URL credentials redacted (`***`) and header values and on-open messages replaced by
    /// [`REDACTED`]. Loading it again gives the same settings, secrets apart.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let governor = &self.settings.governor;
        let _ = writeln!(out, "[herd]");
        let _ = writeln!(out, "workers = {}", self.settings.workers);
        let _ = writeln!(
            out,
            "max_concurrent_handshakes = {}",
            governor.max_concurrent_handshakes
        );
        let _ = writeln!(
            out,
            "reconnects_per_second = {}",
            float(governor.reconnects_per_second)
        );
        if let Some(interval) = self.settings.metrics_interval {
            let _ = writeln!(out, "metrics_interval = {}", duration(interval));
        }
        let outage = &governor.outage;
        let _ = writeln!(out, "\n[herd.outage]");
        let _ = writeln!(out, "enabled = {}", outage.enabled);
        let _ = writeln!(out, "min_endpoints = {}", outage.min_endpoints);
        let _ = writeln!(out, "window = {}", duration(outage.window));
        let _ = writeln!(out, "probe_interval = {}", duration(outage.probe_interval));
        server_toml(&self.settings.server, &mut out);
        for (name, endpoint) in &self.endpoints {
            let _ = writeln!(out, "\n[endpoints.{name}]");
            endpoint_toml(endpoint, &mut out);
        }
        for (name, inbound) in &self.inbound {
            let _ = writeln!(out, "\n[inbound.{name}]");
            inbound_toml(inbound, &mut out);
        }
        if let Some(gateway) = &self.gateway {
            gateway_toml(gateway, &mut out);
        }
        if let Some(cluster) = &self.cluster {
            cluster_toml(cluster, &mut out);
        }
        out
    }
}

/// `[server]`, the token shown as where it comes from (`{ env }`, `{ file }`) or redacted.
fn server_toml(server: &ServerSettings, out: &mut String) {
    let _ = writeln!(out, "\n[server]");
    match server.listen {
        Some(listen) => {
            let _ = writeln!(out, "listen = {}", string(&listen.to_string()));
        }
        None => {
            let _ = writeln!(out, "# listen: not set, no server");
        }
    }
    if let Some(tls) = &server.tls {
        let _ = writeln!(
            out,
            "tls = {{ cert = {}, key = {} }}",
            string(&tls.cert.display().to_string()),
            string(&tls.key.display().to_string())
        );
    }
    if let Some(token) = &server.token {
        let _ = writeln!(out, "token = {}", token_shown(token));
    }
    let _ = writeln!(
        out,
        "allow_unauthenticated = {}",
        server.allow_unauthenticated
    );
}

/// A token as where it comes from (`{ env }`, `{ file }`), or redacted when it is written.
fn token_shown(token: &super::Token) -> String {
    match token.source() {
        TokenSource::Env(variable) => format!("{{ env = {} }}", string(variable)),
        TokenSource::File(path) => format!("{{ file = {} }}", string(&path.display().to_string())),
        TokenSource::Inline => string(REDACTED),
    }
}

/// `[inbound.<name>]`: its own keys and the shared ones that mean something for it.
/// `[gateway]`, its token shown as where it comes from or redacted.
fn gateway_toml(gateway: &super::GatewaySettings, out: &mut String) {
    let _ = writeln!(out, "\n[gateway]");
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key} = {value}");
    };
    line("path", string(&gateway.path));
    line("max_buffer", size(gateway.max_buffer));
    line(
        "overflow",
        string(match gateway.overflow {
            super::GatewayOverflow::DropOldest => "drop_oldest",
            super::GatewayOverflow::Disconnect => "disconnect",
        }),
    );
    line(
        "allow_send",
        array(gateway.allow_send.iter().map(|name| string(name.as_str()))),
    );
    if let Some(token) = &gateway.token {
        line("token", token_shown(token));
    }
    line(
        "allowed_origins",
        array(gateway.allowed_origins.iter().map(|origin| string(origin))),
    );
    line("max_sessions", gateway.max_sessions.to_string());
    line("max_topics", gateway.max_topics.to_string());
}

/// `[cluster]`: addresses without credentials, secrets as where they come from or redacted.
fn cluster_toml(cluster: &super::ClusterSettings, out: &mut String) {
    let _ = writeln!(out, "\n[cluster]");
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key} = {value}");
    };
    line(
        "nats",
        array(cluster.nats.iter().map(|url| string(&url.to_string()))),
    );
    match &cluster.member {
        Some(member) => line("member", string(member)),
        None => line("# member", string("<host name>-<process id>")),
    }
    line("lease", duration(cluster.lease));
    line("subject_prefix", string(&cluster.subject_prefix));
    line("on_cluster_loss", string(cluster.on_cluster_loss.as_str()));
    match &cluster.auth {
        super::NatsAuth::None => {}
        super::NatsAuth::Token(token) => line("token", token_shown(token)),
        super::NatsAuth::UserPassword { user, password } => {
            line("user", string(user));
            line("password", token_shown(password));
        }
        super::NatsAuth::Credentials(path) => {
            line("credentials", string(&path.display().to_string()));
        }
    }
    if let Some(tls) = &cluster.tls {
        let files = [("ca", &tls.ca), ("cert", &tls.cert), ("key", &tls.key)]
            .into_iter()
            .filter_map(|(key, path)| {
                path.as_ref()
                    .map(|p| format!("{key} = {}", string(&p.display().to_string())))
            })
            .collect::<Vec<_>>();
        if files.is_empty() {
            line("tls", "true".to_owned());
        } else {
            line("tls", format!("{{ {} }}", files.join(", ")));
        }
    }
}

fn inbound_toml(inbound: &super::InboundConfig, out: &mut String) {
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key} = {value}");
    };
    line("enabled", inbound.enabled.to_string());
    line("path", string(&inbound.path));
    line(
        "auth",
        match &inbound.auth {
            super::InboundAuth::None => string("none"),
            super::InboundAuth::Hook => string("hook"),
            super::InboundAuth::Token(token) => format!("{{ token = {} }}", token_shown(token)),
        },
    );
    line("max_sessions", inbound.max_sessions.to_string());
    line(
        "on_duplicate",
        string(match inbound.on_duplicate {
            super::OnDuplicate::Replace => "replace",
            super::OnDuplicate::Refuse => "refuse",
        }),
    );
    line("resume_window", duration(inbound.resume_window()));
    shared_toml(&inbound.spec, &mut line);
}

fn endpoint_toml(endpoint: &EndpointConfig, out: &mut String) {
    let spec = &endpoint.spec;
    let c = &spec.connection;
    let mut line = |key: &str, value: String| {
        let _ = writeln!(out, "{key} = {value}");
    };
    line("enabled", endpoint.enabled.to_string());
    line("required", endpoint.required.to_string());
    match spec.connect {
        ConnectMode::OnDemand { linger } => {
            line("connect", string("on_demand"));
            line("linger", duration(linger));
        }
        _ => line("connect", string("always")),
    }
    if let Some(lifetime) = spec.max_lifetime {
        line("max_lifetime", duration(lifetime));
    }
    // A value kept in a file is shown as the file it comes from: it loads back as that, and
    // a token in a URL's path is not shown at all.
    let file_of = |slot: &SecretSlot| {
        c.file_secrets
            .iter()
            .find(|secret| secret.slot == *slot)
            .map(|secret| {
                format!(
                    "{{ file = {} }}",
                    string(&secret.path.display().to_string())
                )
            })
    };
    line(
        "url",
        file_of(&SecretSlot::Url).unwrap_or_else(|| string(&redact_url(&c.url))),
    );
    if !c.headers.is_empty() {
        let headers: Vec<String> = c
            .headers
            .iter()
            .enumerate()
            .map(|(index, (name, _))| {
                let value = file_of(&SecretSlot::Header(index)).unwrap_or_else(|| string(REDACTED));
                format!("{} = {value}", string(name))
            })
            .collect();
        line("headers", format!("{{ {} }}", headers.join(", ")));
    }
    line(
        "subprotocols",
        array(c.subprotocols.iter().map(|p| string(p))),
    );
    dial_limits(c, &mut line);
    shared_toml(spec, &mut line);
    let b = &spec.backoff;
    line(
        "backoff",
        format!(
            "{{ initial = {}, max = {}, factor = {}, jitter = {}, reset_after = {}, max_attempts = {} }}",
            duration(b.initial),
            duration(b.max),
            float(b.factor),
            string(jitter(b.jitter)),
            duration(b.reset_after),
            b.max_attempts
        ),
    );
    line(
        "intensity",
        format!(
            "{{ max_restarts = {}, within = {} }}",
            spec.intensity.max_restarts,
            duration(spec.intensity.within)
        ),
    );
    actions(&spec.actions, &mut line);
    if let Some(tls) = &c.tls {
        let mut files = Vec::new();
        for (key, path) in [
            ("ca_file", &tls.ca_file),
            ("client_cert", &tls.client_cert),
            ("client_key", &tls.client_key),
        ] {
            if let Some(path) = path {
                files.push(format!("{key} = {}", string(&path.display().to_string())));
            }
        }
        line("tls", format!("{{ {} }}", files.join(", ")));
    }
}

/// The keys an inbound endpoint's sessions share with outbound endpoints.
fn shared_toml(spec: &EndpointSpec, line: &mut impl FnMut(&str, String)) {
    let c = &spec.connection;
    line("kind", string(&kind(&c.kind)));
    line("heartbeat", heartbeat(c));
    if let Some(idle) = c.heartbeat.idle_timeout {
        line("idle_timeout", duration(idle));
    }
    line("close_timeout", duration(c.close_timeout));
    line("max_stall", duration(c.max_stall));
    line("write_timeout", duration(c.write_timeout));
    line("max_frame_size", size(c.max_frame_size));
    line("max_message_size", size(c.max_message_size));
    line("write_buffer", size(c.write_buffer));
    line(
        "invalid_utf8",
        string(match c.invalid_utf8 {
            InvalidUtf8Policy::DeadLetter => "dead_letter",
            _ => "fail",
        }),
    );
    line(
        "decompress",
        string(c.decompress.map_or("none", |format| format.name())),
    );
    line(
        "on_open",
        array((0..spec.on_open.len()).map(|index| {
            spec.on_open_files
                .iter()
                .find(|(at, _)| *at == index)
                .map(|(_, path)| format!("{{ file = {} }}", string(&path.display().to_string())))
                .unwrap_or_else(|| string(REDACTED))
        })),
    );
    if let Some(live) = &spec.live_after {
        let matcher = match &live.matcher {
            ReplyMatcher::Kind(kind) => format!("kind = {}", string(kind)),
            ReplyMatcher::Text(text) => format!("text = {}", string(text)),
        };
        line(
            "live_after",
            format!("{{ {matcher}, timeout = {} }}", duration(live.timeout)),
        );
    }
    let q = &spec.queue;
    let mut ttl = q
        .ttl
        .map(|ttl| format!(", ttl = {}", duration(ttl)))
        .unwrap_or_default();
    if let Some(rate) = spec.send_rate {
        ttl.push_str(&format!(
            ", rate = {{ per_second = {}, burst = {} }}",
            rate.per_second, rate.burst
        ));
    }
    line(
        "outbound",
        format!(
            "{{ max_messages = {}, max_bytes = {}, overflow = {}{ttl} }}",
            q.max_messages,
            size(q.max_bytes),
            string(match q.overflow {
                OverflowPolicy::Reject => "reject",
                OverflowPolicy::DropOldest => "drop_oldest",
            })
        ),
    );
    let r = &spec.request;
    let reply_id = r
        .reply_id_field
        .as_ref()
        .map(|field| format!(", reply_id_field = {}", string(field)))
        .unwrap_or_default();
    line(
        "request",
        format!(
            "{{ id_field = {}{reply_id}, resend_on_reconnect = {}, route_replies = {}, max_in_flight = {} }}",
            string(&r.id_field),
            r.resend_on_reconnect,
            r.route_replies,
            r.max_in_flight
        ),
    );
    if let Some(q) = &c.sequence {
        let scope = q
            .scope
            .as_ref()
            .map(|scope| format!(", scope = {}", string(scope)))
            .unwrap_or_default();
        line(
            "sequence",
            format!(
                "{{ field = {}, kinds = {}{scope}, on_gap = {}, resync = {}, drop_duplicates = {}, across_reconnects = {}, event_interval = {}, max_scopes = {} }}",
                string(&q.field),
                array(q.kinds.iter().map(|k| string(k))),
                string(match q.on_gap {
                    wsherd_protocol::OnGap::Event => "event",
                    wsherd_protocol::OnGap::Reconnect => "reconnect",
                    wsherd_protocol::OnGap::Resync => "resync",
                }),
                // Resync messages may carry credentials, as on-open messages do.
                array(q.resync.iter().map(|_| string(REDACTED))),
                q.drop_duplicates,
                q.across_reconnects,
                duration(q.event_interval),
                q.max_scopes
            ),
        );
    }
}

/// The keys of dialing: timeouts, compression offered, proxy.
fn dial_limits(c: &ConnectionConfig, line: &mut impl FnMut(&str, String)) {
    line("handshake_timeout", duration(c.handshake_timeout));
    line("connect_timeout", duration(c.connect_timeout));
    match &c.compression {
        Some(offer) => {
            line("compression", string("deflate"));
            let mut parts = vec![format!(
                "no_context_takeover = {}",
                offer.no_context_takeover
            )];
            if let Some(bits) = offer.server_max_window_bits {
                parts.push(format!("server_max_window_bits = {bits}"));
            }
            if let Some(bits) = offer.client_max_window_bits {
                parts.push(format!("client_max_window_bits = {bits}"));
            }
            parts.push(format!(
                "min_compress_size = {}",
                size(offer.min_compress_size)
            ));
            line("deflate", format!("{{ {} }}", parts.join(", ")));
        }
        None => line("compression", string("off")),
    }
    // Credentials in the proxy URL are shown as `***`.
    line(
        "proxy",
        string(
            &c.proxy
                .as_deref()
                .map_or("none".to_owned(), ToString::to_string),
        ),
    );
}

fn heartbeat(c: &ConnectionConfig) -> String {
    let h = &c.heartbeat;
    let timing = format!(
        "interval = {}, timeout = {}",
        duration(h.interval),
        duration(h.timeout)
    );
    match &h.mode {
        HeartbeatMode::WsPing => format!("{{ mode = \"ws-ping\", {timing} }}"),
        HeartbeatMode::Off => "{ mode = \"off\" }".to_owned(),
        HeartbeatMode::App { payload, reply } => {
            let reply = match reply {
                ReplyMatcher::Kind(kind) => format!("reply_kind = {}", string(kind)),
                ReplyMatcher::Text(text) => format!("reply_text = {}", string(text)),
            };
            format!(
                "{{ mode = \"app\", payload = {}, {reply}, {timing} }}",
                string(payload)
            )
        }
    }
}

fn actions(table: &ActionTable, line: &mut impl FnMut(&str, String)) {
    let name = |action: Action| {
        string(match action {
            Action::ReconnectNow => "reconnect",
            Action::Backoff => "backoff",
            Action::Stop => "stop",
        })
    };
    // Maps in key order: the lines come out sorted.
    let codes: Vec<_> = table.on_close.iter().collect();
    if !codes.is_empty() {
        let codes: Vec<String> = codes
            .into_iter()
            .map(|(code, action)| format!("\"{code}\" = {}", name(*action)))
            .collect();
        line("on_close", format!("{{ {} }}", codes.join(", ")));
    }
    let statuses: Vec<_> = table.on_status.iter().collect();
    if !statuses.is_empty() {
        let statuses: Vec<String> = statuses
            .into_iter()
            .map(|(status, action)| format!("\"{status}\" = {}", name(*action)))
            .collect();
        line("on_status", format!("{{ {} }}", statuses.join(", ")));
    }
    let mut tls = Vec::new();
    for (key, class) in [
        ("certificate", TlsClass::Certificate),
        ("transient", TlsClass::Transient),
        ("files", TlsClass::Files),
    ] {
        if let Some(action) = table.on_tls.get(&class) {
            tls.push(format!("{key} = {}", name(*action)));
        }
    }
    if !tls.is_empty() {
        line("on_tls", format!("{{ {} }}", tls.join(", ")));
    }
}

fn kind(rule: &KindRule) -> String {
    match rule {
        KindRule::Path(path) if path.len() == 1 && !path[0].starts_with('/') => path[0].clone(),
        KindRule::Path(path) => path
            .iter()
            .map(|segment| format!("/{}", segment.replace('~', "~0").replace('/', "~1")))
            .collect(),
        // Only code can set one; a file cannot say it.
        KindRule::Custom(_) => "<custom>".to_owned(),
    }
}

fn jitter(jitter: Jitter) -> &'static str {
    match jitter {
        Jitter::Full => "full",
        Jitter::Equal => "equal",
        Jitter::None => "none",
    }
}

/// A duration in the largest unit that states it exactly (`"1m 30s"`, `"500ms"`, `"20s"`).
pub(crate) fn duration(value: Duration) -> String {
    let mut millis = value.as_millis();
    if millis == 0 {
        // Below a millisecond the file has no unit; seconds as a number are exact enough.
        return float(value.as_secs_f64());
    }
    let mut parts = Vec::new();
    for (unit, scale) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if millis >= scale {
            parts.push(format!("{}{unit}", millis / scale));
            millis %= scale;
        }
    }
    if millis > 0 {
        parts.push(format!("{millis}ms"));
    }
    string(&parts.join(" "))
}

/// A size in the largest binary unit that states it exactly (`"4MiB"`, `"64KiB"`, `"1000"`).
pub(crate) fn size(bytes: usize) -> String {
    for (unit, scale) in [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return string(&format!("{}{unit}", bytes / scale));
        }
    }
    // A number too large for TOML's integers goes as the string form the parser also takes.
    if i64::try_from(bytes).is_ok() {
        bytes.to_string()
    } else {
        string(&bytes.to_string())
    }
}

fn float(value: f64) -> String {
    if !value.is_finite() {
        return "0.0".to_owned();
    }
    // `Debug` always writes a point or an exponent, so TOML reads a float back.
    format!("{value:?}")
}

fn array(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(", "))
}

/// A TOML basic string.
fn string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_are_written_in_the_largest_exact_unit() {
        assert_eq!(duration(Duration::from_secs(90)), "\"1m 30s\"");
        assert_eq!(duration(Duration::from_millis(500)), "\"500ms\"");
        assert_eq!(duration(Duration::from_secs(20)), "\"20s\"");
        assert_eq!(duration(Duration::from_secs(7200)), "\"2h\"");
        assert_eq!(size(4 << 20), "\"4MiB\"");
        assert_eq!(size(1000), "1000");
        assert_eq!(size(usize::MAX), "\"18446744073709551615\"");
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }
}
