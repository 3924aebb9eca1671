//! What an idle endpoint costs in its two actors' task cells.
//!
//! Each actor lives in a tokio task cell: its `ContextFut` plus 104 bytes of tokio's own,
//! rounded up to 128 bytes (the cell is cache-line aligned). These bounds are the largest
//! futures that still fit the cells the bench's 8 KiB-per-connection figure was measured
//! with (`wsherd-bench connections`: 8.1 KB at 10,000); a field that pushes an actor over
//! costs every connection 128 bytes more. Box what is rarely set instead.

#![cfg(target_pointer_width = "64")]

use actix::Context;
use actix::dev::ContextFut;
use wsherd_connection::Connection;
use wsherd_supervisor::Supervisor;

/// tokio's header and trailer around a task's future (tokio 1.x, x86_64 and aarch64).
const TASK_OVERHEAD: usize = 104;

fn cell(future: usize) -> usize {
    (future + TASK_OVERHEAD).div_ceil(128) * 128
}

#[test]
fn a_supervisor_fits_a_1280_byte_task_cell() {
    let future = size_of::<ContextFut<Supervisor, Context<Supervisor>>>();
    assert!(
        cell(future) <= 1280,
        "the supervisor's future is {future} bytes: its task cell grew past 1,280"
    );
}

#[test]
fn a_connection_fits_a_1152_byte_task_cell() {
    let future = size_of::<ContextFut<Connection, Context<Connection>>>();
    assert!(
        cell(future) <= 1152,
        "the connection's future is {future} bytes: its task cell grew past 1,152"
    );
}
