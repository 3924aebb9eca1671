//! The baselines `connections` and `scaling` measure supervised connections against: raw awc
//! actors and tokio-tungstenite tasks, each pinging on the same heartbeat as wsherd's and
//! answering Pings, none reconnecting. Each opens `count` connections dealt round-robin over
//! the servers on `ports`, and returns bytes per connection, seconds until all were open, and
//! idle CPU (percent of a core), or why it could not open them all.

use std::time::{Duration, Instant};

use actix::prelude::*;
use futures_util::{SinkExt, StreamExt};

use super::{Idle, idle_cpu_percent, port_of, rss_bytes};

/// How long a baseline may take to open all its connections; past it, it could not hold them.
const OPEN_DEADLINE: Duration = Duration::from_secs(120);

/// The hand-written alternative to a supervised connection: one actor per socket on awc's
/// own framing, pinging every `heartbeat` and answering Pings, with no reconnect.
struct RawAwcConnection {
    sink: actix::io::SinkWrite<awc::ws::Message, RawAwcSink>,
    heartbeat: Duration,
}

type RawAwcSink = futures_util::stream::SplitSink<
    actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    awc::ws::Message,
>;

impl Actor for RawAwcConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.heartbeat, |act, _| {
            let _ = act.sink.write(awc::ws::Message::Ping(bytes::Bytes::new()));
        });
    }
}

impl actix::io::WriteHandler<awc::error::WsProtocolError> for RawAwcConnection {}

impl StreamHandler<Result<awc::ws::Frame, awc::error::WsProtocolError>> for RawAwcConnection {
    fn handle(
        &mut self,
        frame: Result<awc::ws::Frame, awc::error::WsProtocolError>,
        _: &mut Context<Self>,
    ) {
        if let Ok(awc::ws::Frame::Ping(payload)) = frame {
            let _ = self.sink.write(awc::ws::Message::Pong(payload));
        }
    }
}

/// Opens `count` raw awc actors; memory, open time and idle CPU.
pub(super) fn raw_awc_actors(
    count: usize,
    ports: &[u16],
    idle: Idle,
) -> Result<(f64, f64, f64), String> {
    let system = System::new();
    system.block_on(async {
        // awc caps a client at 100 connections unless told otherwise.
        let client = awc::Client::builder()
            .disable_timeout()
            .connector(awc::Connector::new().limit(0))
            .finish();
        let before = rss_bytes();
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Addr<RawAwcConnection>>(count.max(1));
        for i in 0..count {
            let port = port_of(i, ports);
            let request = client.ws(format!("ws://127.0.0.1:{port}/{i}"));
            let tx = tx.clone();
            actix_rt::spawn(async move {
                let Ok((_, framed)) = request.connect().await else {
                    return;
                };
                let addr = RawAwcConnection::create(|ctx| {
                    let (sink, stream) = framed.split();
                    ctx.add_stream(stream);
                    RawAwcConnection {
                        sink: actix::io::SinkWrite::new(sink, ctx),
                        heartbeat: idle.heartbeat,
                    }
                });
                let _ = tx.send(addr).await;
            });
        }
        drop(tx);
        let mut actors = Vec::with_capacity(count);
        let deadline = tokio::time::Instant::now() + OPEN_DEADLINE;
        while let Ok(Some(addr)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            actors.push(addr);
        }
        if actors.len() != count {
            return Err(format!(
                "{} of {count} raw awc connections opened",
                actors.len()
            ));
        }
        let open = started.elapsed();
        let per = rss_bytes().saturating_sub(before) as f64 / count as f64;
        let idle = idle_cpu_percent(idle).await;
        Ok((per, open.as_secs_f64(), idle))
    })
}

/// Opens `count` tokio-tungstenite connections, one task each that reads (and so answers Pings)
/// and pings, with `read_buffer` bytes of read buffer (the default when `None`); memory, open
/// time and idle CPU.
pub(super) fn tokio_tungstenite(
    count: usize,
    ports: &[u16],
    idle: Idle,
    read_buffer: Option<usize>,
) -> Result<(f64, f64, f64), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let heartbeat = idle.heartbeat;
    runtime.block_on(async {
        let before = rss_bytes();
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(count);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(count.max(1));
        for i in 0..count {
            let port = port_of(i, ports);
            let url = format!("ws://127.0.0.1:{port}/{i}");
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut config =
                    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
                if let Some(size) = read_buffer {
                    config = config.read_buffer_size(size);
                }
                let Ok((mut ws, _)) =
                    tokio_tungstenite::connect_async_with_config(url, Some(config), false).await
                else {
                    return;
                };
                let _ = tx.send(()).await;
                // Done with the count: the wait ends as soon as every task has either sent or
                // failed.
                drop(tx);
                // The same heartbeat as the others.
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
                loop {
                    let tick = std::pin::pin!(ticks.tick());
                    let ping_due = match futures_util::future::select(ws.next(), tick).await {
                        futures_util::future::Either::Left((Some(Ok(_)), _)) => false,
                        futures_util::future::Either::Left(_) => break,
                        futures_util::future::Either::Right(_) => true,
                    };
                    let ping = tokio_tungstenite::tungstenite::Message::Ping(Default::default());
                    if ping_due && ws.send(ping).await.is_err() {
                        break;
                    }
                }
            }));
        }
        // Only the tasks hold senders now: a task that failed to connect drops its own, so the
        // count below ends short instead of waiting for it forever.
        drop(tx);
        let mut opened = 0;
        let deadline = tokio::time::Instant::now() + OPEN_DEADLINE;
        while opened < count {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(())) => opened += 1,
                _ => break,
            }
        }
        if opened != count {
            for task in tasks {
                task.abort();
            }
            return Err(format!(
                "{opened} of {count} tokio-tungstenite connections opened"
            ));
        }
        let open = started.elapsed();
        let per = rss_bytes().saturating_sub(before) as f64 / count as f64;
        let idle = idle_cpu_percent(idle).await;
        for task in tasks {
            task.abort();
        }
        Ok((per, open.as_secs_f64(), idle))
    })
}
