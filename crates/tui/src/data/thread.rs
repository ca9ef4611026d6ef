//! The collector on a thread of its own: it drains the sampler's queue whatever the terminal
//! does, and answers the event loop's requests for views. It sleeps (`park`) until a request
//! comes (the handle unparks it) or the sampler's doorbell rings (the queue is a quarter full,
//! or sampling ended): at ordinary rates a wake-up costs more CPU than a sample, so it drains
//! when the view needs the counts (once a refresh) or the queue needs room, not on a clock.
//! When sampling ends it says so at once (`on_end`), so that the view need not poll for it.

use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Instant;

use strobe_aggregate::AggregatorSide;

use super::{Collector, Query, ViewData};

/// A request to the collector thread.
#[derive(Debug)]
enum Request {
    View {
        advance: bool,
        query: Query,
        reply: SyncSender<ViewData>,
    },
    Reset,
}

/// The UI thread's handle on a collector running on its own thread. Dropping it stops the
/// thread.
#[derive(Debug)]
pub struct CollectorHandle {
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

/// The collector thread went away (it only does so if it panicked).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the aggregator thread of strobe top stopped unexpectedly")]
pub struct CollectorGone;

/// Runs a [`Collector`] on its own thread: it drains the pipeline when asked for a view and
/// whenever the sampler's doorbell rings, so the sampler's queue never fills while the UI
/// thread waits on the terminal. `on_end` is called once, on that thread, as soon as it finds
/// that sampling has ended.
pub fn spawn(
    agg: AggregatorSide,
    on_end: impl FnOnce() + Send + 'static,
) -> std::io::Result<CollectorHandle> {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("strobe-top-aggregator".into())
        .spawn(move || {
            agg.wake_this_thread();
            collector_loop(Collector::new(agg), rx, on_end)
        })?;
    Ok(CollectorHandle {
        tx: Some(tx),
        thread: Some(thread),
    })
}

fn collector_loop(mut c: Collector, rx: Receiver<Request>, on_end: impl FnOnce()) {
    let mut on_end = Some(on_end);
    loop {
        if c.sampler_gone() {
            if let Some(f) = on_end.take() {
                f();
            }
        }
        match rx.try_recv() {
            Ok(Request::View {
                advance,
                query,
                reply,
            }) => {
                c.pump();
                let now = Instant::now();
                if advance {
                    c.advance(now);
                }
                // The UI may have given up waiting; nothing to do then.
                let _ = reply.send(c.view(&query, now));
            }
            Ok(Request::Reset) => {
                c.pump();
                c.reset(Instant::now());
            }
            Err(TryRecvError::Empty) => {
                c.pump();
                // The end of sampling rings the doorbell: say so before sleeping.
                if !(on_end.is_some() && c.sampler_gone()) {
                    std::thread::park();
                }
            }
            Err(TryRecvError::Disconnected) => return,
        }
    }
}

impl CollectorHandle {
    /// Sends `request` and wakes the collector thread for it.
    fn send(&self, request: Request) -> Result<(), CollectorGone> {
        self.tx
            .as_ref()
            .ok_or(CollectorGone)?
            .send(request)
            .map_err(|_| CollectorGone)?;
        if let Some(t) = &self.thread {
            t.thread().unpark();
        }
        Ok(())
    }

    /// The view for `query`; `advance` closes the interval first.
    pub fn view(&self, advance: bool, query: Query) -> Result<ViewData, CollectorGone> {
        let (reply, rx) = mpsc::sync_channel(1);
        self.send(Request::View {
            advance,
            query,
            reply,
        })?;
        rx.recv().map_err(|_| CollectorGone)
    }

    /// Forget the counts so far.
    pub fn reset(&self) -> Result<(), CollectorGone> {
        self.send(Request::Reset)
    }
}

impl Drop for CollectorHandle {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            // A panic in the collector was already reported by the panic hook.
            let _ = t.join();
        }
    }
}
