//! Serving: the HTTP server and routes, the Prometheus exposition and the
//! page `/`.

pub mod http;
pub mod live;
pub mod metrics;
pub mod page;
