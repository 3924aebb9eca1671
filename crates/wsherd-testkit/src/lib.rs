//! Programmable WebSocket servers on 127.0.0.1 for tests, examples and benchmarks.
//!
//! A [`TestServer`] runs a [`Script`] on every connection (or a [`Behaviour`] chosen per
//! connection index), and records what each client sent, so tests assert on the server's view.
//! Waits re-check on every change and never sleep a fixed time.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use wsherd_testkit::{Step, TestServer};
//!
//! let server = TestServer::start(vec![
//!     Step::stream(&["trade", "quote"], 1_000),
//!     Step::Echo(true),
//! ])?;
//! println!("connect to {}", server.url("/feed"));
//! let received = server.wait_for_received(0, 1, Duration::from_secs(10)).await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod browser;
mod external;
mod log;
mod nats;
mod proxy;
mod raw;
mod script;
mod server;
mod tls;
mod tunnel;
mod watch;

pub use browser::Browser;
pub use external::ExternalProxy;
pub use log::{ConnectionLog, Received};
pub use nats::NatsServer;
pub use proxy::{FaultProxy, ProxyMode};
pub use raw::{
    RawLog, RawServer, RawStep, accept_response, client_frames, deflated, frame, frame_with,
};
pub use script::{Behaviour, Script, Step, stream_message};
pub use server::{BehaviourFn, TestServer, TestServerBuilder};
pub use tls::TestCerts;
pub use tunnel::{TunnelBehaviour, TunnelProtocol, TunnelProxy, TunnelRequest};
pub use watch::{Recorded, Recorder, WaitTimeout, Watched};
