//! The baselines `connections` measures supervised connections against: raw awc actors and
//! tokio-tungstenite tasks, each pinging every [`HEARTBEAT`] and answering Pings, none
//! reconnecting.

use std::time::Instant;

use actix::prelude::*;
use futures_util::{SinkExt, StreamExt};

use super::{CONNECTIONS, HEARTBEAT, idle_cpu_percent, rss_bytes};

/// The hand-written alternative to a supervised connection: one actor per socket on awc's
/// own framing, pinging every [`HEARTBEAT`] and answering Pings, with no reconnect.
struct RawAwcConnection {
    sink: actix::io::SinkWrite<awc::ws::Message, RawAwcSink>,
}

type RawAwcSink = futures_util::stream::SplitSink<
    actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
    awc::ws::Message,
>;

impl Actor for RawAwcConnection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(HEARTBEAT, |act, _| {
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

/// Opens [`CONNECTIONS`] raw awc actors; memory, open time and idle CPU.
pub(super) fn raw_awc_actors(port: u16) -> Result<(f64, f64, f64), String> {
    let system = System::new();
    system.block_on(async {
        // awc caps a client at 100 connections unless told otherwise.
        let client = awc::Client::builder()
            .disable_timeout()
            .connector(awc::Connector::new().limit(0))
            .finish();
        let before = rss_bytes();
        let started = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Addr<RawAwcConnection>>(CONNECTIONS);
        for i in 0..CONNECTIONS {
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
                    }
                });
                let _ = tx.send(addr).await;
            });
        }
        drop(tx);
        let mut actors = Vec::with_capacity(CONNECTIONS);
        while let Some(addr) = rx.recv().await {
            actors.push(addr);
        }
        if actors.len() != CONNECTIONS {
            return Err(format!(
                "{} of {CONNECTIONS} raw awc connections opened",
                actors.len()
            ));
        }
        let open = started.elapsed();
        let per = rss_bytes().saturating_sub(before) as f64 / CONNECTIONS as f64;
        let idle = idle_cpu_percent().await;
        Ok((per, open.as_secs_f64(), idle))
    })
}

/// Opens [`CONNECTIONS`] tokio-tungstenite connections, one task each that reads (and so
/// answers Pings) and pings, with `read_buffer` bytes of read buffer (the default when
/// `None`); memory, open time and idle CPU.
pub(super) fn tokio_tungstenite(
    port: u16,
    read_buffer: Option<usize>,
) -> Result<(f64, f64, f64), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    Ok(runtime.block_on(async {
        let before = rss_bytes();
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(CONNECTIONS);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(CONNECTIONS);
        for i in 0..CONNECTIONS {
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
                // The same heartbeat as the others: a Ping every HEARTBEAT.
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
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
        for _ in 0..CONNECTIONS {
            if rx.recv().await.is_none() {
                break;
            }
        }
        let open = started.elapsed();
        let per = rss_bytes().saturating_sub(before) as f64 / CONNECTIONS as f64;
        let idle = idle_cpu_percent().await;
        for task in tasks {
            task.abort();
        }
        (per, open.as_secs_f64(), idle)
    }))
}
