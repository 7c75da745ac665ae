//! What one node shares between its listeners and tasks: the parts `run`
//! (in the crate root) assembles, handed to the HTTP routes.

use crate::auth::{Signer, Verifier};
use crate::bus::Bus;
use crate::campaigns;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::session::SessionCtx;
use std::sync::Arc;

/// Everything one node shares between its listeners and tasks.
pub struct Node {
    pub config: Config,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub dispatcher: Arc<Dispatcher>,
    pub bus: Arc<Bus>,
    pub verifier: Arc<Verifier>,
    /// Present in dev mode only: mints tokens for `/dev/token`.
    pub dev_signer: Option<Signer>,
    pub session_ctx: Arc<SessionCtx>,
    pub campaigns: Arc<campaigns::Engine>,
}
