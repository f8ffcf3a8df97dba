//! The store's behaviour, backend-independent, one file per area.

mod ingest;
mod outcomes;
mod ownership;
mod reporting;
mod resources;

pub use ingest::*;
pub use outcomes::*;
pub use ownership::*;
pub use reporting::*;
pub use resources::*;
