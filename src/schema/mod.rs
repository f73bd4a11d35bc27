//! What pathfinder-db creates, before any database is involved: tenant names,
//! the Tera templates rendered into statements, the shape a tenant's tables
//! must have, and the reference catalogs.

pub mod reference;
pub mod render;
pub mod shape;
pub mod tenant;
